"""Engines, sessions and schema versioning for SQLite and Postgres.

SQLite (STACK-NOTES): WAL + busy_timeout set first on every connection, and writes open with
`BEGIN IMMEDIATE` so a read-then-write transaction never fails with SQLITE_BUSY_SNAPSHOT. Read-only
work can use `engine.execution_options(sqlite_deferred=True)` to open a plain deferred `BEGIN`, so
readers never wait for the runner's write lock (WAL readers see the last committed snapshot).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.functions import FunctionElement

SCHEMA_UPGRADE_HINT = "run `flowsweep db upgrade`"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 16 * 1024  # page cache per connection (PRAGMA cache_size; see make_engine)
# WAL pages after which a commit checkpoints (SQLite's default: 1000, ~4 MB, about one Fig. 1 sweep
# of 201 points with its curves): the checkpoint (copy + fsync of the database file, 10-40 ms) then
# lands in whichever commit crosses it - often a sweep's last result batch, in its critical path.
# The runner has the WAL checkpointed between sweeps instead (writer.ResultWriter.checkpoint_soon);
# this is the safety net (long sweeps, processes without a runner).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
# Bytes the WAL file is cut back to when it restarts after a complete checkpoint. SQLite keeps the
# file at its largest size otherwise: a checkpoint held off by a long read during a 100,000-point
# sweep would leave gigabytes on disk for good. Above the autocheckpoint's ~40 MB, so the usual
# cycle never truncates and re-extends the file (new blocks cost the kernel CPU on these machines).
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024


class SchemaError(RuntimeError):
    """The database schema is not the revision this code needs."""


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` URLs go through psycopg 3 (the driver flowsweep installs)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


# Enough pooled connections for every thread of the request pool (anyio's 40) plus the runner: a
# request never waits on the pool behind others (the default 5 + 10 made 50 clients queue for them).
POOL_SIZE, POOL_OVERFLOW = 10, 40


class FairLock:
    """A re-entrant lock taken in the order it was asked for (first come, first served), except
    that `background` requests (the result writer's batches) go after every other one waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._count = 0
        self._waiters: deque[tuple[object, bool]] = deque()  # (token, background), in arrival order

    def _next(self) -> object:
        return next((t for t, bg in self._waiters if not bg), self._waiters[0][0])

    def acquire(self, timeout: float = -1, background: bool = False) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._count += 1
                return True
            if self._owner is None and not self._waiters:
                self._owner, self._count = me, 1
                return True
            token = object()
            self._waiters.append((token, background))
            ok = self._cond.wait_for(
                lambda: self._owner is None and self._next() is token, None if timeout < 0 else timeout
            )
            self._waiters.remove((token, background))
            if ok:
                self._owner, self._count = me, 1
            else:
                self._cond.notify_all()  # (the next in line may be free to go)
            return ok

    def release(self, holder: int | None = None) -> None:
        """Release once, by the calling thread or on behalf of `holder` (a thread id that took it)."""
        with self._cond:
            if self._owner != (threading.get_ident() if holder is None else holder):
                raise RuntimeError("released by a thread that does not hold it")
            self._count -= 1
            if not self._count:
                self._owner = None
                self._cond.notify_all()

    def held(self) -> bool:
        """Whether the calling thread holds it."""
        return self._owner == threading.get_ident()


_WRITE_LOCKS: dict[str, FairLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()
_thread_writes = threading.local()


@contextmanager
def background_writes() -> Iterator[None]:
    """This thread's SQLite write transactions yield the file's write lock to every other writer of
    the process waiting for it (FairLock): the result writer's batches never delay a POST, a take-up,
    the runner's claims or a small sweep's results by more than the batch being committed."""
    _thread_writes.background = True
    try:
        yield
    finally:
        _thread_writes.background = False


def sqlite_write_lock(path: str) -> FairLock:
    """The process's write lock of one SQLite file: every write transaction of this process on it
    (any engine: the API's, the runner's) holds it from BEGIN IMMEDIATE to COMMIT/ROLLBACK, and the
    writers get it in turn. SQLite's busy handler instead polls in growing sleeps (up to 100 ms), so
    a POST, a take-up or the runner's claim waiting behind the result writer's back-to-back batches
    could wait for all of them. (Other processes on the file: busy_timeout, as before.)"""
    key = os.path.realpath(path)
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, FairLock())


class _LockingConnection(sqlite3.Connection):
    """A sqlite3 connection that releases the process's write lock (sqlite_write_lock), taken when
    its write transaction began, once the transaction has ended."""

    write_lock: FairLock | None = None
    write_lock_holder = 0  # the thread that began the transaction (and took the lock)

    def _release(self) -> None:
        # on behalf of the thread that began the transaction: one that ends in another thread (a
        # connection closed by the garbage collector, a pool reset) must not leave the lock held
        lock, self.write_lock = self.write_lock, None
        if lock is not None:
            lock.release(holder=self.write_lock_holder)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


def make_engine(
    url: str, *, sqlite_foreign_keys: bool = True, sqlite_wal_limit_bytes: int = SQLITE_WAL_LIMIT_BYTES, **kwargs
) -> Engine:
    url = normalize_url(url)
    if make_url(url).database not in (None, "", ":memory:") and "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        connect_args: dict = {"check_same_thread": False, "timeout": 30}
        write_lock = None
        if u.database not in (None, "", ":memory:") and not str(u.database).startswith("file:"):
            write_lock = sqlite_write_lock(str(u.database))
            connect_args["factory"] = _LockingConnection
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, connection_record):  # noqa: ANN001
            # pysqlite's own transaction handling off: SQLAlchemy's `begin` event below emits BEGIN.
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            # First, so the WAL switch itself waits on a lock. 30 s rather than STACK-NOTES' 5 s: one
            # POST /sweeps of 1e5 points holds the write lock for seconds (one transaction), and the
            # runner's batch writes must wait it out rather than fail.
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
            # 16 MB of page cache (SQLite's default: 2 MB): a sweep's claims and status flips
            # rewrite its points' rows and the 5 covering indexes that hold `status`; with the
            # default cache those pages are re-read from the OS for every flip (bench/service_stages.py:
            # 13.5 -> 9 us of CPU per point and flip at 20,000 points; 64 MB did no better). Grows
            # only as pages are used; per pooled connection, so RSS can grow by a few times that.
            cur.execute(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")
            cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
            cur.execute(f"PRAGMA journal_size_limit={int(sqlite_wal_limit_bytes)}")
            # Migrations turn this off: batch mode's DROP TABLE would otherwise cascade/violate FKs.
            cur.execute(f"PRAGMA foreign_keys={'ON' if sqlite_foreign_keys else 'OFF'}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            options = conn.get_execution_options()
            if options.get("isolation_level") == "AUTOCOMMIT":
                return  # each statement its own transaction: a BEGIN here would never be committed
            if options.get("sqlite_deferred"):
                conn.exec_driver_sql("BEGIN")
                return
            raw = conn.connection.dbapi_connection
            # (not acquired within the busy timeout: SQLite's own busy handling decides)
            if (
                write_lock is not None
                and isinstance(raw, _LockingConnection)
                and raw.write_lock is None
                and write_lock.acquire(
                    timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, background=getattr(_thread_writes, "background", False)
                )
            ):
                raw.write_lock, raw.write_lock_holder = write_lock, threading.get_ident()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                if isinstance(raw, _LockingConnection):
                    raw._release()
                raise

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def checkpoint(engine: Engine) -> tuple[int, int, int] | None:
    """A PASSIVE WAL checkpoint of a SQLite file (never waits for readers or writers; copies what
    it can): (busy, WAL pages, pages checkpointed). None on other databases."""
    if engine.dialect.name != "sqlite" or make_url(str(engine.url)).database in (None, "", ":memory:"):
        return None
    raw = engine.raw_connection()  # no BEGIN (isolation_level None): a checkpoint runs outside one
    try:
        row = raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # type: ignore[union-attr]
    finally:
        raw.close()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-only work: a plain deferred BEGIN on SQLite (never waits for a writer's
    lock); the same as make_session_factory on Postgres."""
    return make_session_factory(engine.execution_options(sqlite_deferred=True))


@contextmanager
def session_scope(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception (Optuna RDB storage style)."""
    session = session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class Unindexed(FunctionElement):
    """A column SQLite's planner may not search by its index (SQLite's unary +); elsewhere the
    column: where SQLite, which has no statistics here, would pick the wrong index."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(Unindexed)
def _unindexed_column(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(Unindexed, "sqlite")
def _unindexed_sqlite(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


class UnlessSqlite(FunctionElement):
    """`expr` on every database but SQLite, which gets `sqlite_expr` instead (the same value where
    both are defined): a guard only the other databases need, left out of SQLite's statements."""

    inherit_cache = True

    def __init__(self, expr: Any, sqlite_expr: Any) -> None:
        super().__init__(expr, sqlite_expr)
        self.type = expr.type


@compiles(UnlessSqlite)
def _unless_sqlite(element: UnlessSqlite, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses.clauses[0], **kw)


@compiles(UnlessSqlite, "sqlite")
def _unless_sqlite_sqlite(element: UnlessSqlite, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses.clauses[1], **kw)


# ---------------------------------------------------------------- Alembic


def migrations_dir() -> Path:
    from flowsweep import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str):
    """A programmatic Alembic config: works from any cwd and from an installed package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("migrations: no head revision (the versions folder is empty)")
    return head


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_empty(engine: Engine) -> bool:
    """No flowsweep table: a brand-new database (an empty `alembic_version` table may exist)."""
    names = set(inspect(engine).get_table_names())
    return not names & {"sweeps", "points", "results", "curves"} and current_revision(engine) is None


def check_schema(engine: Engine) -> str:
    """Return the current revision if it is the code's head, else raise SchemaError naming the fix."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        shown = current if current is not None else "<empty>"
        raise SchemaError(f"database schema is at {shown}, code needs {head}: {SCHEMA_UPGRADE_HINT}")
    return current
