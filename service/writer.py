"""The result writer: a thread that writes the dispatcher's outcomes in batched transactions, so
the database never stalls the CPUs (the scheduler hands outcomes over and goes on submitting).

Exactly one result row per point: each batch is one transaction (store.write_results_batch) that
keeps the points still running under this runner (the owner guard), leaves out those that have a
result row already and inserts the rest; only the rows really inserted get their curves row and
their point status, so a point's result and its status commit together or not at all, and a point
reported twice keeps its first row. Rows are tuples and every statement is set-wise (one
executemany, or one statement over arrays): no per-row objects or round trips.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from itertools import repeat

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from flowsweep.core.types import METRIC_FIELDS
from flowsweep.status import FINISHED_POINT_STATUSES, PointStatus
from flowsweep.workers.codec import CURVES_FORMAT, encode_curves
from flowsweep.workers.dispatch import ChunkOutcome, PointOutcome

from . import store
from .db import background_writes, checkpoint, session_scope
from .models import utcnow

log = logging.getLogger("flowsweep.runner")

_CHECKPOINT = object()  # queued by checkpoint_soon(): a WAL checkpoint on the writer's thread
MAX_BATCH = 500  # outcomes per transaction, at most (the process's other writers wait for one: db.FairLock)
# A sweep's finished points as reported by workers.dispatch.TaskStream: columns, or one per point.
Outcomes = ChunkOutcome | list[PointOutcome]


def database_unavailable(exc: BaseException) -> bool:
    """The database could not take the write at this moment (connection lost or refused, SQLite
    locked, pool exhausted): the same batch may go through later. Anything else (a value the database
    refuses, a constraint) fails again on every retry."""
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError) or bool(
        getattr(exc, "connection_invalidated", False)
    )


def build_rows(
    sweep_id: int, outcomes: Outcomes, now: dt.datetime | None = None
) -> tuple[list[tuple], dict[int, bytes]]:
    """Result rows (tuples in store.RESULT_COLUMNS order, created at `now`) and curves blobs of a
    batch, built before the transaction opens (SQLite's write lock is held for SQL only). A point
    reported twice in a batch: the first wins. `outcomes`: a ChunkOutcome (columns, curves encoded
    by the worker) or PointOutcomes."""
    now = now or utcnow()
    rows: list[tuple]
    blobs: dict[int, bytes]
    if isinstance(outcomes, ChunkOutcome):
        cols = outcomes.rows
        ids = outcomes.point_ids
        n = len(ids)
        none = [None] * n
        metrics = [cols.metrics.get(name, none) for name in METRIC_FIELDS]
        # the worker sends finite values or None (workers.tasks.to_rows), statuses as PointStatus
        rows = list(
            zip(
                ids,
                repeat(sweep_id, n),
                [str(st) for st in cols.statuses],
                cols.errors,
                cols.wall_seconds,
                repeat(outcomes.worker, n),
                *metrics,
                repeat(now, n),
            )
        )
        blobs = {pid: b for pid, b in zip(ids, cols.blobs) if b is not None}
        if len(set(ids)) != n:
            rows = store.first_per_point(rows)
            blobs = {pid: b for pid, b in store.first_per_point(list(zip(ids, cols.blobs))) if b is not None}
        return rows, blobs
    rows, blobs, done = [], {}, set()
    for o in outcomes:
        pid = int(o.point_id)
        if pid in done:
            continue
        done.add(pid)
        r = o.result
        status = r.status if r.status in FINISHED_POINT_STATUSES else PointStatus.FAILED
        rows.append(store.result_row(pid, sweep_id, status, r.metrics or {}, r.error, r.wall_seconds, o.worker, now))
        if r.curves is not None:
            blobs[pid] = encode_curves(r.curves)
    return rows, blobs


class ResultWriter:
    """`put(sweep_id, outcomes)` queues; a thread commits; `flush()` waits for what was queued.
    `on_written(sweep_id, n_inserted)` is called after each commit (progress bookkeeping)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        on_written: Callable[[int, int], None] = lambda s, n: None,
        max_batch: int = MAX_BATCH,
        owner: str | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._on_written = on_written
        self.max_batch = max_batch
        self.owner = owner
        # None: stop the thread; _CHECKPOINT: checkpoint the WAL
        self._q: queue.Queue[tuple[int, Outcomes] | object | None] = queue.Queue()
        self._cond = threading.Condition()
        self._queued = 0
        self._written = 0
        self._thread: threading.Thread | None = None
        self._hold_until = 0.0  # time.monotonic() before which no batch starts (hold)
        self._released = threading.Event()  # set by release(): a held batch starts at once
        self._dirty = False  # committed since the last WAL checkpoint (checkpoint_soon)
        self._checkpoint_queued = False
        self.checkpointed = threading.Event()  # set after each checkpoint (tests wait for it)
        self.stats = {"inserted": 0, "duplicates": 0, "batches": 0, "write_seconds": 0.0, "checkpoint_seconds": 0.0}

    # ---------------------------------------------------------------- interface
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="flowsweep-writer", daemon=True)
            self._thread.start()

    def put(self, sweep_id: int, outcomes: Outcomes) -> None:
        if not outcomes:
            return
        with self._cond:
            self._queued += 1
        self._q.put((sweep_id, outcomes))

    def hold(self, seconds: float) -> None:
        """Start no batch for up to `seconds` from now (or until `release`): the runner's next
        transactions (a sweep's take-up, a small sweep's only results) then find SQLite's write
        lock free instead of waiting for a batch being committed. Nothing is lost: the queue waits."""
        self._released.clear()
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def release(self) -> None:
        self._hold_until = 0.0
        self._released.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed; False on timeout."""
        self.release()
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._written >= target, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
            self._thread = None

    def checkpoint_soon(self) -> None:
        """SQLite: checkpoint the WAL on the writer's thread (db.checkpoint), if anything was written
        since the last one. The runner asks when it has no sweep left: with SQLite's own automatic
        checkpoints (every 1000 WAL pages, about one Fig. 1 sweep of 201 points with its curves) the
        copy and fsync of the database file (10-40 ms) landed in whichever commit crossed the
        threshold, often a sweep's last result batch or the next POST; now in neither
        (db.SQLITE_WAL_AUTOCHECKPOINT_PAGES is the safety net for long sweeps)."""
        if self._dirty and not self._checkpoint_queued and self._thread is not None:
            self._checkpoint_queued = True
            self._q.put(_CHECKPOINT)

    def write_now(self, sweep_id: int, outcomes: Outcomes) -> set[int]:
        """Write one sweep's outcomes in this thread, in one transaction; the inserted point ids."""
        return self._write([(sweep_id, outcomes)]).get(sweep_id, set())

    # ---------------------------------------------------------------- thread
    def _loop(self) -> None:
        with background_writes():  # its batches go after any other write of this process (db.FairLock)
            self._batches()

    def _batches(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            while (wait := self._hold_until - time.monotonic()) > 0:
                self._released.wait(wait)
            if item is _CHECKPOINT:
                self._checkpoint()
                continue
            assert isinstance(item, tuple)
            batch, n = [item], len(item[1])
            stop_after = False
            while n < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop_after = True
                    break
                if nxt is _CHECKPOINT:  # not idle any more: asked again when it is
                    self._checkpoint_queued = False
                    continue
                assert isinstance(nxt, tuple)
                batch.append(nxt)
                n += len(nxt[1])
            pause = 0.5
            while True:
                try:
                    self._write(batch)
                    break
                except Exception as exc:
                    if not database_unavailable(exc):  # not a row of it could be stored (see _commit_or_split)
                        log.exception("result writer: batch of %d outcomes dropped", n)
                        break
                    log.warning(  # database unavailable for a moment: keep the batch, retry
                        "result writer: batch of %d outcomes not written (%s); retrying in %.1f s",
                        n,
                        str(exc).splitlines()[0],
                        pause,
                    )
                    time.sleep(pause)
                    pause = min(10.0, 2 * pause)
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()
            if stop_after:
                return

    def _checkpoint(self) -> None:
        self._dirty = self._checkpoint_queued = False
        bind = self._session_factory.kw.get("bind")
        if not isinstance(bind, Engine):
            return
        t0 = time.perf_counter()
        try:
            checkpoint(bind)
        except Exception as exc:  # (the next commit past the autocheckpoint threshold does it then)
            log.warning("result writer: WAL checkpoint failed: %s", str(exc).splitlines()[0])
        self.stats["checkpoint_seconds"] += time.perf_counter() - t0
        self.checkpointed.set()

    def _write(self, batch: list[tuple[int, Outcomes]]) -> dict[int, set[int]]:
        t0 = time.perf_counter()
        rows: list[tuple] = []
        blobs: dict[int, bytes] = {}
        per_sweep: dict[int, set[int]] = {}
        now = utcnow()
        for sweep_id, outcomes in batch:
            r, b = build_rows(sweep_id, outcomes, now)
            rows += r
            for pid, blob in b.items():  # a point reported twice: the first report's curves, as its row
                blobs.setdefault(pid, blob)
            per_sweep.setdefault(sweep_id, set()).update(row[0] for row in r)
        inserted = self._commit_or_split(rows, blobs)
        self._dirty = True
        dup = len(rows) - len(inserted)
        self.stats["inserted"] += len(inserted)
        self.stats["duplicates"] += dup
        self.stats["batches"] += 1
        self.stats["write_seconds"] += time.perf_counter() - t0
        if dup:
            log.warning("%d outcomes already had a result row; kept the first", dup)
        out = {sid: ids & inserted for sid, ids in per_sweep.items()}
        for sid, ids in out.items():
            self._on_written(sid, len(ids))
        return out

    def _commit(self, rows: list[tuple], blobs: dict[int, bytes]) -> set[int]:
        with session_scope(self._session_factory) as s:
            return store.write_results_batch(s, rows, blobs, CURVES_FORMAT, owner=self.owner)

    def _commit_or_split(self, rows: list[tuple], blobs: dict[int, bytes], failure: bool = False) -> set[int]:
        """Commit the rows; the inserted point ids. A batch the database refuses whatever the moment
        (e.g. a value it cannot store) goes in halves, recursively, so one bad row neither blocks
        the writer nor holds back the others; a row refused alone is stored as its point's failure,
        with the reason (results are not lost silently, and the sweep can finish). An unavailable
        database raises (the caller keeps the batch for a retry)."""
        try:
            return self._commit(rows, blobs)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(rows) > 1:
                half = len(rows) // 2
                return {
                    pid
                    for part in (rows[:half], rows[half:])
                    for pid in self._commit_or_split(part, {r[0]: blobs[r[0]] for r in part if r[0] in blobs})
                }
            row = rows[0]
            if failure:  # (the failure row written in place of a refused result)
                log.exception("result writer: point %s's failure refused too; it stays running", row[0])
                return set()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("result writer: point %s's result refused by the database (%s); stored as failed", row[0], reason)
            failed = store.result_row(
                row[0], row[1], PointStatus.FAILED, {}, f"result not stored: {reason}", row[4], row[5], row[-1]
            )
            return self._commit_or_split([failed], {}, failure=True)
