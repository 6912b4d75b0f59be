"""The sweep runner: works through queued sweeps in a background thread of the service process.

Guarantees (SPEC §3-§5, issue 3 "Runner"):

- **Exactly one result row per point, whatever happens.** Each batch of outcomes that the
  dispatcher streams back is written in ONE transaction: the result rows are inserted with
  ``INSERT .. ON CONFLICT (point_id) DO NOTHING RETURNING point_id`` (unique point_id), and only the
  rows that were really inserted get their curves row and their point status. A point's result and
  its status therefore commit together or not at all.
- **Finished points are never recomputed.** Only points whose status is ``pending`` are handed to
  the dispatcher; they are flipped to ``running`` (attempts + 1) page by page just before that.
- **Resume on restart.** Before taking any work, the runner thread turns every ``running`` point
  back into ``pending`` (the process that ran them is gone) and then resumes sweeps whose status is
  queued or running.
- **Cancel.** ``cancel(sweep_id)`` makes the dispatcher's ``cancelled()`` callable return True, so
  it stops feeding and cancels in-flight tasks; points not finished go back to ``pending`` and the
  sweep ends ``cancelled``. Results that were already computed when the cancel came are kept.
- **Status.** queued -> running (``started_at`` set when the runner first takes it) -> ``done`` when
  no point is pending or running, or ``failed`` when *every* point of the sweep failed (then
  ``error`` says so and quotes the first message); a sweep with at least one done, diverged or
  cached point is ``done`` even if others failed (their messages are on the points' result rows).
  ``cancelled`` when cancel was requested. ``finished_at`` set on every terminal status.
- **Several sweeps.** Sweeps are taken oldest first. A sweep is fed to the dispatcher in runs of
  about ``slice_seconds`` of work (at the observed rate; ``min_run_points`` for the first run);
  when a run ends after the slice is used up and another sweep is waiting, the sweep yields and the
  least recently served sweep goes next (round robin), so one huge sweep does not starve small ones.
- **Memory.** Pending points are read from the database in pages (keyset on id) and at most one
  run's worth (<= ``max_run_points``) is handed to the dispatcher at a time, never a whole huge
  sweep as objects.
- **One active runner per database.** On Postgres the runner holds an advisory lock; a second
  service process on the same database stands by and takes over if the first dies (its points left
  running are then recovered). On SQLite (embedded) the single process is the runner.
- **Dedupe at run time.** Besides the submit-time dedupe of POST /sweeps, a pending point whose
  identity was finished by another sweep in the meantime (identical sweeps posted back to back) is
  reused as ``cached`` when its sweep's turn comes, unless the sweep asked to ``recompute``.
- **Failures of the machinery.** A point the dispatcher loses (not reported by a run that was not
  cancelled) is queued again; after ``max_attempts`` hand-overs (restarts included) it is recorded
  as failed so that a poison point cannot block its sweep forever. If the dispatcher itself raises,
  the sweep is retried after growing pauses, then (after ``max_crashes`` tries) failed with the
  error; the latest error is always on ``sweeps.error``.
"""
from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import text

from flowsweep.core.types import PointConfig

from . import store
from .db import session_scope
from .models import FINISHED_POINT_STATUSES, PARAM_FIELDS, utcnow

log = logging.getLogger("flowsweep.runner")

RUNNER_LOCK_KEY = 0x666C6F7773776570 & 0x7FFFFFFFFFFFFFFF  # "flowswep": pg advisory lock of the runner
_ACTIVE_SWEEP = ("queued", "running")


CURVES_FORMAT = "npz-v1"  # curves.format: see service.models.Curve


def encode_curves(curves) -> bytes:
    """One compact blob per point: an ``np.savez`` archive of the record-grid arrays."""
    buf = io.BytesIO()
    arrays = {
        "t": np.asarray(curves.t, dtype=np.float64),
        "error": np.asarray(curves.error, dtype=np.float64),
        "error_linear": np.asarray(curves.error_linear, dtype=np.float64),
        "singular_values": np.asarray(curves.singular_values, dtype=np.float64),
    }
    if curves.error_regularized_fit is not None:
        arrays["error_regularized_fit"] = np.asarray(curves.error_regularized_fit, dtype=np.float64)
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass
class _Progress:
    """In-memory completion-rate bookkeeping of one sweep, for eta_seconds."""

    remaining: int
    started: float = field(default_factory=time.monotonic)
    window: deque = field(default_factory=deque)  # (monotonic time, n finished) of recent batches

    WINDOW_SECONDS = 60.0

    def add(self, n: int) -> None:
        now = time.monotonic()
        self.remaining = max(0, self.remaining - n)
        self.window.append((now, n))
        while self.window and now - self.window[0][0] > self.WINDOW_SECONDS:
            self.window.popleft()

    def rate(self) -> float | None:
        """Points per second over the last WINDOW_SECONDS (or since the sweep started)."""
        if not self.window:
            return None
        now = time.monotonic()
        t0 = max(self.started, now - self.WINDOW_SECONDS)
        done = sum(n for t, n in self.window if t >= t0)
        elapsed = now - t0
        return done / elapsed if done and elapsed > 0 else None

    def eta(self) -> float | None:
        if self.remaining == 0:
            return 0.0
        rate = self.rate()
        return None if rate is None else self.remaining / rate


class Runner:
    """Background sweep runner. Interface used by the app's lifespan and the routes."""

    def __init__(self, session_factory, settings=None, dispatcher_factory=None, *,
                 page_size: int = 500, slice_seconds: float | None = None, poll_seconds: float = 1.0,
                 min_run_points: int = 1000, max_run_points: int = 20000, max_attempts: int = 5,
                 max_crashes: int = 5):
        self._session_factory = session_factory
        self._settings = settings
        self._dispatcher_factory = dispatcher_factory
        self.page_size = page_size
        self.slice_seconds = float(slice_seconds if slice_seconds is not None
                                   else getattr(settings, "runner_slice_seconds", None) or 30.0)
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.max_crashes = max_crashes
        self.min_run_points = min_run_points
        self.max_run_points = max_run_points
        self._dispatcher = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._progress: dict[int, _Progress] = {}
        self._last_served: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._leader_conn = None      # Postgres: the connection holding the runner's advisory lock
        self._recovered = False
        self.current_sweep_id: int | None = None
        # Counters for tests, logs and benchmarks (this process only).
        self.stats = {"inserted": 0, "duplicates": 0, "batches": 0, "write_seconds": 0.0}

    # ------------------------------------------------------------------ public interface
    def start(self) -> None:
        """Start the background thread. It first becomes the database's one active runner (see
        _ensure_leader), then recovers (points left running by a dead process -> pending), then
        works through queued/running sweeps."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="flowsweep-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, sweep_id: int) -> None:
        with self._lock:
            self._cancelled.add(int(sweep_id))
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("runner thread did not stop within %.1f s", timeout)
            else:
                self._release_leader()
            self._thread = None

    def eta_seconds(self, sweep_id: int) -> float | None:
        """Seconds until the sweep finishes at the completion rate observed over the last minute;
        None when it is not being run by this process or no point has finished yet."""
        with self._lock:
            p = self._progress.get(int(sweep_id))
            return None if p is None else p.eta()

    # ------------------------------------------------------------------ internals
    # The SQL is in service.store; here: transactions, threading, scheduling and the Postgres
    # advisory-lock leadership (a dedicated connection held across transactions).
    def _session(self):
        return session_scope(self._session_factory)

    def _get_dispatcher(self):
        if self._dispatcher is None:
            factory = self._dispatcher_factory
            if factory is None:
                from flowsweep.workers.dispatch import Dispatcher as factory
            self._dispatcher = factory()
        return self._dispatcher

    def _recover(self) -> None:
        """Points left 'running' by a dead process go back to 'pending' (or 'failed' when they
        keep killing the process: a poison point must not block the sweep forever)."""
        with self._session() as s:
            now = utcnow()
            poisoned = store.exhausted_running_points(s, self.max_attempts)
            if poisoned:
                store.write_failed(s, poisoned,
                                   f"interrupted {self.max_attempts} times (the service stopped "
                                   "while this point ran); given up", now)
            n = store.requeue_running(s)
        if n:
            log.info("recovery: %d running points queued again", n)

    def _ensure_leader(self) -> bool:
        """One active runner per database. On Postgres (where several API replicas may share a
        database) the runner holds a session-level advisory lock on a dedicated connection; the
        others stand by and take over when it is released, which Postgres does by itself when the
        holder's process dies. SQLite is embedded: one process, always the leader."""
        with self._session_factory() as s:
            engine = s.get_bind()
        if engine.dialect.name != "postgresql":
            return True
        if self._leader_conn is not None:
            try:
                self._leader_conn.exec_driver_sql("SELECT 1")
                self._leader_conn.commit()
                return True
            except Exception:
                log.warning("runner: lost the connection that held the runner lock")
                self._release_leader()
        conn = engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RUNNER_LOCK_KEY}).scalar()
            conn.commit()  # the lock is session-level: no transaction is kept open
        except Exception:
            conn.close()
            raise
        if got:
            self._leader_conn = conn
            log.info("runner: active (holds the runner lock of this database)")
            return True
        conn.close()
        return False

    def _release_leader(self) -> None:
        conn, self._leader_conn = self._leader_conn, None
        self._recovered = False
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RUNNER_LOCK_KEY})
            conn.commit()
        except Exception:
            pass
        finally:
            conn.close()

    def _loop(self) -> None:
        db_down = False
        standby_logged = False
        while not self._stop.is_set():
            try:
                if not self._ensure_leader():
                    if not standby_logged:
                        log.info("runner: another process runs this database's sweeps; standing by")
                        standby_logged = True
                    self._stop.wait(5 * self.poll_seconds)
                    continue
                if not self._recovered:
                    self._recover()
                    self._recovered = True
                sweep_id = self._next_sweep()
                db_down = False
            except Exception as exc:  # database unreachable for a moment: retry later
                if not db_down:
                    log.exception("runner: could not look for work")
                else:
                    log.warning("runner: database still unavailable: %s", str(exc).splitlines()[0])
                db_down = True
                sweep_id = None
            if sweep_id is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            try:
                self._run_sweep(sweep_id)
                self._failures.pop(sweep_id, None)
            except Exception as exc:
                log.exception("runner: sweep %s raised", sweep_id)
                self._after_crash(sweep_id, exc)
            finally:
                self.current_sweep_id = None

    def _next_sweep(self) -> int | None:
        """Oldest runnable sweep, least recently served first (round robin between slices)."""
        with self._session() as s:
            rows = store.active_sweeps(s)
        if not rows:
            return None
        with self._lock:
            cancelled = self._cancelled.copy()
        for sid, cancel_requested in rows:
            if cancel_requested or sid in cancelled:
                return sid  # settled at once (-> cancelled), not after other sweeps' turns
        return min((sid for sid, _ in rows), key=lambda i: (self._last_served.get(i, -math.inf), i))

    def _others_waiting(self, sweep_id: int) -> bool:
        with self._session() as s:
            return store.other_active_sweep_exists(s, sweep_id)

    def _is_cancelled(self, sweep_id: int) -> bool:
        with self._lock:
            return self._stop.is_set() or sweep_id in self._cancelled

    def _run_sweep(self, sweep_id: int) -> None:
        self.current_sweep_id = sweep_id
        self._last_served[sweep_id] = time.monotonic()
        with self._session() as s:
            sweep = store.get_sweep(s, sweep_id, for_update=True)
            if sweep is None or sweep.status not in _ACTIVE_SWEEP:
                return
            if sweep.cancel_requested:
                with self._lock:
                    self._cancelled.add(sweep_id)
            else:
                store.mark_running(sweep)
            remaining = store.count_unfinished(s, sweep_id)
        with self._lock:
            if sweep_id not in self._progress:
                self._progress[sweep_id] = _Progress(remaining=remaining)
            else:
                self._progress[sweep_id].remaining = remaining

        if not self._is_cancelled(sweep_id) and remaining:
            reused = self._reuse_finished(sweep_id)
            if reused:
                remaining -= reused
                with self._lock:
                    self._progress[sweep_id].remaining = remaining
        if not self._is_cancelled(sweep_id) and remaining:
            slice_end = time.monotonic() + self.slice_seconds
            dispatcher = self._get_dispatcher()
            while not self._is_cancelled(sweep_id):
                # The dispatcher groups all the points it is given before it starts, so a long
                # sweep is fed in runs of bounded size (about one time slice of work each): memory
                # stays bounded and other sweeps get their turn between runs.
                limit = self._run_size(sweep_id)
                fed = [0]
                write_s0 = self.stats["write_seconds"]
                stats = dispatcher.run(self._pending_points(sweep_id, limit, fed),
                                       on_results=lambda outcomes: self._write_batch(sweep_id, outcomes),
                                       cancelled=lambda: self._is_cancelled(sweep_id))
                sizes = getattr(stats, "task_sizes", None)
                if fed[0]:
                    secs = getattr(stats, "task_seconds", None)
                    log.info("sweep %s: dispatcher run of %d points: %s tasks (points per task %s; "
                             "core seconds %s), %.2f s, of which %.2f s writing results",
                             sweep_id, fed[0], getattr(stats, "n_tasks", "?"),
                             sizes if sizes and len(sizes) <= 64 else "...",
                             [round(t, 2) for _, t in secs] if secs and len(secs) <= 64 else "...",
                             getattr(stats, "wall_seconds", float("nan")),
                             self.stats["write_seconds"] - write_s0)
                self._requeue_unreported(sweep_id, lost=not self._is_cancelled(sweep_id))
                if fed[0] < limit:
                    break  # every pending point was fed
                if time.monotonic() > slice_end and self._others_waiting(sweep_id):
                    log.info("sweep %s: time slice over, yielding to other sweeps", sweep_id)
                    break
        self._last_served[sweep_id] = time.monotonic()
        self._settle(sweep_id)

    def _reuse_finished(self, sweep_id: int) -> int:
        """Dedupe at run time too: a pending point whose identity has been finished (done or
        diverged) by another sweep since this one was submitted (e.g. two identical sweeps posted
        back to back) is not computed again unless the sweep asked to `recompute`; it becomes
        cached, with a copy of the source's result row (SPEC §3). Returns how many were reused."""
        reused = 0
        with self._session() as s:
            spec = store.sweep_spec(s, sweep_id)
        if (spec or {}).get("recompute"):
            return 0
        while True:
            with self._session() as s:
                n = store.reuse_finished_page(s, sweep_id, self.page_size)
            if not n:
                break
            reused += n
        if reused:
            log.info("sweep %s: %d points reused from other sweeps' finished points", sweep_id, reused)
        return reused

    def _run_size(self, sweep_id: int) -> int:
        """Points per dispatcher run: ~slice_seconds of work at the observed rate."""
        with self._lock:
            p = self._progress.get(sweep_id)
            rate = p.rate() if p is not None else None
        n = self.min_run_points if not rate else int(rate * self.slice_seconds)
        return max(self.min_run_points, min(self.max_run_points, n))

    def _requeue_unreported(self, sweep_id: int, lost: bool) -> None:
        """Points still 'running' after a dispatcher run were not reported: back to 'pending'.
        After a run that was not cancelled they were lost; one lost max_attempts times is failed."""
        with self._session() as s:
            if lost:
                given_up = store.exhausted_running_points(s, self.max_attempts, sweep_id)
                if given_up:
                    store.write_failed(s, given_up, f"no result after {self.max_attempts} attempts",
                                       utcnow())
            n = store.requeue_running(s, sweep_id)
        if n and lost:
            log.warning("sweep %s: %d points were not reported by the dispatcher; queued again",
                        sweep_id, n)

    def _pending_points(self, sweep_id: int, limit: int, fed: list[int]
                        ) -> Iterator[tuple[int, PointConfig]]:
        """Stream up to `limit` pending points of the sweep, page by page, marking each page
        running (attempts + 1) as it is handed over; fed[0] counts them.

        Order: by `identity` (a sha256, i.e. a fixed pseudo-random permutation of the grid), keyset
        paginated on the (sweep_id, identity) unique index. Points cost different amounts along
        the axes (Fig. 1's init_scale 0.01 points cost ~35 % more than the 1.0 ones), and the
        dispatcher cuts contiguous chunks: fed in grid order, one CPU got the expensive corner and
        finished last (the sweep took ~17 % longer than an evenly strided split). A random order
        balances the chunks, and a partial or cancelled sweep holds a representative sample of
        its grid rather than its first rows."""
        last = ""
        while fed[0] < limit and not self._is_cancelled(sweep_id):
            with self._session() as s:
                rows = store.claim_pending_page(s, sweep_id, last, min(self.page_size, limit - fed[0]))
                if not rows:
                    return
            last = rows[-1][1]
            fed[0] += len(rows)
            for r in rows:
                yield r[0], PointConfig(**dict(zip(PARAM_FIELDS, r[2:])))

    def _write_batch(self, sweep_id: int, outcomes) -> None:
        """One transaction per batch: idempotent result inserts, their curves, point statuses."""
        if not outcomes:
            return
        t0 = time.perf_counter()
        now = utcnow()
        by_id = {}
        for o in outcomes:
            by_id.setdefault(int(o.point_id), o)  # a point reported twice in a batch: first wins
        rows, blobs = [], {}
        for pid, o in by_id.items():
            r = o.result
            status = r.status if r.status in FINISHED_POINT_STATUSES else "failed"
            rows.append(store.result_row(pid, sweep_id, status, r.metrics or {}, r.error,
                                         r.wall_seconds, o.worker, now))
            # Encoded before the transaction opens: SQLite's write lock is held for SQL only.
            blob = getattr(o, "curves_blob", None)
            if blob is None and r.curves is not None:
                blob = encode_curves(r.curves)
            if blob is not None:
                blobs[pid] = blob
        with self._session() as s:
            inserted = store.write_results_batch(s, rows, blobs, CURVES_FORMAT)
        dup = len(by_id) - len(inserted)
        self.stats["inserted"] += len(inserted)
        self.stats["duplicates"] += dup
        self.stats["batches"] += 1
        self.stats["write_seconds"] += time.perf_counter() - t0
        if dup:
            log.warning("sweep %s: %d outcomes already had a result row; kept the first", sweep_id, dup)
        log.info("sweep %s: batch written inserted=%d duplicates=%d", sweep_id, len(inserted), dup)
        with self._lock:
            p = self._progress.get(sweep_id)
            if p is not None:
                p.add(len(inserted))

    def _settle(self, sweep_id: int) -> None:
        """After a dispatch: unfinished points go back to pending; the sweep gets its terminal
        status when nothing is left (or it was cancelled)."""
        with self._lock:
            cancelled = sweep_id in self._cancelled
        with self._session() as s:
            store.requeue_running(s, sweep_id)
            sweep = store.get_sweep(s, sweep_id, for_update=True)
            if sweep is None:
                return
            if cancelled or sweep.cancel_requested:
                store.mark_cancelled(sweep)
                self._forget(sweep_id)
                return
            if self._stop.is_set():
                return  # stays queued/running: resumed by the next start()
            counts = store.point_status_counts(s, sweep_id)
            if counts.get("pending", 0) or counts.get("running", 0):
                return  # time slice over: the loop comes back to it
            total = sum(counts.values())
            n_failed = counts.get("failed", 0)
            if total and n_failed == total:
                first = store.first_failure(s, sweep_id)
                store.finish_sweep(sweep, "failed", f"all {total} points failed; first error: {first}")
            else:
                store.finish_sweep(sweep, "done", None)  # a runner error retried away is no longer news
        log.info("sweep %s finished: %s", sweep_id, counts)
        self._forget(sweep_id)

    def _forget(self, sweep_id: int) -> None:
        with self._lock:
            self._progress.pop(sweep_id, None)  # finished: the route reports eta 0 for done
            self._cancelled.discard(sweep_id)
        self._last_served.pop(sweep_id, None)

    def _after_crash(self, sweep_id: int, exc: Exception) -> None:
        """The dispatcher (or a write) raised: put the sweep's points back and retry a few times
        with a growing pause (2, 4, 8, 16 s: a transient Ray or database hiccup passes); after
        max_crashes attempts the sweep is failed with the error."""
        n = self._failures.get(sweep_id, 0) + 1
        self._failures[sweep_id] = n
        try:
            with self._session() as s:
                store.record_runner_error(s, sweep_id,
                                          f"runner error (attempt {n}): {type(exc).__name__}: {exc}",
                                          give_up=n >= self.max_crashes)
        except Exception:
            log.exception("runner: could not record the failure of sweep %s", sweep_id)
        if n >= self.max_crashes:
            self._failures.pop(sweep_id, None)
            self._forget(sweep_id)
        else:
            self._stop.wait(min(60.0, 2.0 ** n))
