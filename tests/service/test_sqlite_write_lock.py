"""The process's SQLite write lock (service.db.sqlite_write_lock): write transactions of any engine
on one file take it in turn, first come first served, so a POST or the runner's claim is not starved
by the result writer's back-to-back batches. Ordering is checked with events, not timings."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from flowsweep.service.db import (
    FairLock,
    make_engine,
    make_read_session_factory,
    make_session_factory,
    session_scope,
    sqlite_write_lock,
)


def _wait_for(predicate) -> None:
    """Poll until the other threads reached a state (no timing asserted: only a hang guard)."""
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, "the other threads never got there"
        time.sleep(0.001)


def test_fair_lock_serves_waiters_in_order_even_against_a_quick_re_acquire():
    lock = FairLock()
    order: list[str] = []
    lock.acquire()

    def take(name: str) -> None:
        lock.acquire()
        order.append(name)
        lock.release()

    b = threading.Thread(target=take, args=("b",))
    b.start()
    _wait_for(lambda: len(lock._waiters) == 1)
    c = threading.Thread(target=take, args=("c",))
    c.start()
    _wait_for(lambda: len(lock._waiters) == 2)
    lock.release()
    take("a")  # the releasing thread asks again at once (the result writer's next batch): after b, c
    b.join()
    c.join()
    assert order == ["b", "c", "a"]


def test_background_requests_go_after_every_other_waiting_one():
    """The result writer's batches (background) yield to a POST or the runner's claim that asks
    later: those wait for the transaction being committed, not for the writer's backlog."""
    lock = FairLock()
    order: list[str] = []
    lock.acquire()

    def take(name: str, background: bool) -> None:
        lock.acquire(background=background)
        order.append(name)
        lock.release()

    threads = []
    for i, (name, bg) in enumerate((("writer-1", True), ("writer-2", True), ("post", False), ("claim", False))):
        threads.append(threading.Thread(target=take, args=(name, bg)))
        threads[-1].start()
        _wait_for(lambda n=i + 1: len(lock._waiters) == n)
    lock.release()
    for t in threads:
        t.join()
    assert order == ["post", "claim", "writer-1", "writer-2"]


def test_the_result_writers_transactions_are_background_ones(tmp_path):
    from flowsweep.service.writer import ResultWriter

    url = f"sqlite:///{tmp_path / 'bg.db'}"
    engine = make_engine(url)
    try:
        lock = sqlite_write_lock(str(tmp_path / "bg.db"))
        seen: list[bool] = []
        acquire = lock.acquire

        def spy(timeout: float = -1, background: bool = False) -> bool:
            seen.append(background)
            return acquire(timeout, background)

        lock.acquire = spy  # type: ignore[method-assign]
        writer = ResultWriter(make_session_factory(engine))
        with session_scope(make_session_factory(engine)) as s:  # this thread: not background
            s.execute(sa.text("CREATE TABLE t (x INTEGER)"))

        def write(batch):  # the writer thread's transaction (its rows are not the point here)
            with session_scope(make_session_factory(engine)) as s:
                s.execute(sa.text("INSERT INTO t VALUES (1)"))
            return {}

        writer._write = write
        writer.start()
        writer.put(1, [object()])
        assert writer.flush(30)
        writer.stop()
        assert seen == [False, True]
    finally:
        engine.dispose()


def test_fair_lock_is_reentrant_and_only_its_holder_releases_it():
    lock = FairLock()
    assert lock.acquire() and lock.acquire()
    lock.release()
    assert lock.held()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as e:
            errors.append(e)
        errors.append(lock.acquire(timeout=0))  # held elsewhere: not taken

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(errors[0], RuntimeError) and errors[1] is False
    lock.release()
    assert not lock.held()


def test_a_write_transaction_ended_by_another_thread_frees_the_files_lock(tmp_path):
    """A transaction begun in one thread and ended in another (a session closed by the garbage
    collector or a pool reset elsewhere) releases the lock its connection took: it is not left held
    by the first thread, where every later writer would wait out the busy timeout."""
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    engine = make_engine(url)
    try:
        lock = sqlite_write_lock(str(tmp_path / "lock.db"))
        session = make_session_factory(engine)()
        session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        assert lock.held()
        ended = threading.Thread(target=session.rollback)
        ended.start()
        ended.join()
        assert not lock.held()
        taken: list[bool] = []
        other = threading.Thread(target=lambda: taken.append(lock.acquire(timeout=0)))
        other.start()
        other.join()
        assert taken == [True]
        session.close()
    finally:
        engine.dispose()


def test_write_transactions_hold_the_files_lock_and_reads_do_not(tmp_path):
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    engines = [make_engine(url), make_engine(url)]  # e.g. the API's and the runner's
    try:
        lock = sqlite_write_lock(str(tmp_path / "lock.db"))
        assert sqlite_write_lock(str(tmp_path / "." / "lock.db")) is lock  # one per file
        write, other = (make_session_factory(e) for e in engines)
        with session_scope(write) as s:
            s.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            assert lock.held()
        assert not lock.held()
        with pytest.raises(ValueError), session_scope(write) as s:
            s.execute(sa.text("INSERT INTO t VALUES (1)"))
            raise ValueError
        assert not lock.held()  # released by the rollback
        with session_scope(make_read_session_factory(engines[0])) as s:
            assert s.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0
            assert not lock.held()

        # a write through the other engine waits for the lock, then commits after the first one
        order: list[str] = []
        started = threading.Event()

        def second() -> None:
            started.set()
            with session_scope(other) as s:
                s.execute(sa.text("INSERT INTO t VALUES (2)"))
                order.append("second")

        with session_scope(write) as s:
            s.execute(sa.text("INSERT INTO t VALUES (1)"))
            t = threading.Thread(target=second)
            t.start()
            started.wait()
            _wait_for(lambda: len(lock._waiters) == 1)
            order.append("first")
        t.join()
        assert order == ["first", "second"]
        with session_scope(other) as s:
            assert s.execute(sa.text("SELECT x FROM t ORDER BY rowid")).scalars().all() == [1, 2]
    finally:
        for e in engines:
            e.dispose()
