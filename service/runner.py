"""The sweep runner: works through queued sweeps in a background thread of the service process.

This module wires the parts together and owns the thread; each part has its own module:

- service.leadership - the runner lease: one active runner per database, taken over by a standby
  within the lease's ttl when the runner's process dies;
- service.scheduling - the streaming scheduling loop (chunks in flight, fair share, cancel);
- service.writer     - the result writer thread (batched, idempotent transactions);
- service.progress   - completion rate and ETA (`eta_seconds`), display status;
- workers.codec      - the curves codec (encoded on the workers, decoded here).

Guarantees (SPEC §3-§5):

- **Exactly one result row per point, whatever happens** (service.writer): a point's result and
  its status commit together or not at all, and a point reported twice keeps its first row.
- **Finished points are never recomputed.** Only pending points are submitted; they are flipped
  to running, with this runner as `owner`, right after their chunk is submitted (a point another
  runner took in between is computed for nothing and never written).
- **Resume on restart / takeover.** When this process takes the lease it turns every running point
  back into pending (their runner is gone: its lease expired) - a point that was started
  `max_attempts` times by runners that died is failed instead (a poison point must not block its
  sweep forever; `attempts` counts chunks that started on a CPU, so a point that never ran is never
  failed that way) - then resumes sweeps whose status is queued or running.
- **Cancel** (from any replica: `cancel_requested` is read from the database every
  `poll_seconds`): `cancelling` is shown at once, no new chunk of the sweep is submitted, its
  in-flight chunks are cancelled, results already computed are kept, unfinished points go back to
  pending and the sweep ends `cancelled`.
- **Status.** queued -> running (`started_at` set when the runner takes it up) -> `done` when no
  point is left, or `failed` when *every* point failed (then `error` says so and quotes the first
  message). `finished_at` is set on every terminal status.
- **Its own connection pool**: the runner and its writer use their own engine (when settings
  give a database URL), so API reads under load cannot starve their writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from flowsweep.workers.codec import CURVES_FORMAT, encode_curves  # noqa: F401  (their home before the split)

from . import store
from .db import make_engine, make_session_factory, session_scope
from .leadership import Leadership
from .models import utcnow
from .progress import ProgressBook
from .scheduling import Scheduler, SweepSetupError
from .writer import Outcomes, ResultWriter

if TYPE_CHECKING:
    from flowsweep.workers.dispatch import TaskStream

    from .settings import Settings

log = logging.getLogger("flowsweep.runner")

IDLE_POLL_SECONDS = 0.5  # idle: look for sweeps submitted through another replica this often


class Runner:
    """Background sweep runner. Interface used by the app's lifespan and the routes."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings | None = None,
        stream_factory: Callable[[], TaskStream] | None = None,
        *,
        page_size: int = 1000,
        poll_seconds: float = 0.25,
        max_attempts: int = 5,
        max_crashes: int = 5,
        lease_ttl: float | None = None,
        task_timeout: float | None = None,
    ) -> None:
        self._engine = None
        url = getattr(settings, "database_url", None)
        if url:
            # Its own pool: API requests under load cannot take the connections its writes need.
            self._engine = make_engine(url) if url.startswith("sqlite") else make_engine(url, pool_size=4)
            session_factory = make_session_factory(self._engine)
        self._session_factory = session_factory
        self.max_attempts = max_attempts
        self.max_crashes = max_crashes
        timeout = task_timeout if task_timeout is not None else getattr(settings, "task_timeout_seconds", None)
        if stream_factory is None:

            def stream_factory():
                from flowsweep.workers.dispatch import TaskStream

                return TaskStream(task_timeout=timeout)

        ttl = lease_ttl if lease_ttl is not None else getattr(settings, "runner_lease_seconds", None)
        self.leadership = Leadership(session_factory, ttl=ttl) if ttl else Leadership(session_factory)
        self.progress = ProgressBook()
        self.writer = ResultWriter(session_factory, self.progress.add, owner=self.leadership.owner)
        self.scheduler = Scheduler(
            session_factory,
            stream_factory,
            self.writer,
            self.progress,
            page_size=page_size,
            poll_seconds=poll_seconds,
            owner=self.leadership.owner,
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovered = False
        self._failures: dict[int, int] = {}

    @property
    def owner(self) -> str:
        return self.leadership.owner

    @property
    def stats(self) -> dict[str, float]:
        """Counters of the result writer (this process only)."""
        return self.writer.stats

    # ------------------------------------------------------------------ public interface
    def start(self) -> None:
        """Start the background thread: it takes the runner lease (or stands by), recovers the
        points a dead runner left running, then works through queued/running sweeps."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.writer.start()
        self._thread = threading.Thread(target=self._loop, name="flowsweep-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self.scheduler.poke()
        self._wake.set()

    def cancel(self, sweep_id: int) -> None:
        """Fast path for a cancel made through this process (others reach it via the database)."""
        self.scheduler.request_cancel(sweep_id)
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("runner thread did not stop within %.1f s", timeout)
            self._thread = None
        self.writer.stop()
        if self._engine is not None:
            self._engine.dispose()

    def eta_seconds(self, sweep_id: int) -> float | None:
        """Seconds until the sweep finishes at the completion rate observed over the last minute;
        None when it is not being run by this process or no point has finished yet."""
        return self.progress.eta(int(sweep_id))

    # ------------------------------------------------------------------ internals
    def _write_batch(self, sweep_id: int, outcomes: Outcomes) -> set[int]:
        """Write outcomes at once in this thread (one transaction); the inserted point ids."""
        return self.writer.write_now(sweep_id, outcomes)

    def _recover(self) -> None:
        """Points left 'running' by a dead runner go back to 'pending' (or 'failed' when runs of
        them keep killing the service: a poison point must not block the sweep forever)."""
        with session_scope(self._session_factory) as s:
            poisoned = store.exhausted_running_points(s, self.max_attempts)
            if poisoned:
                store.write_failed(
                    s,
                    poisoned,
                    f"interrupted {self.max_attempts} times (the service stopped while this point ran); given up",
                    utcnow(),
                )
            n = store.requeue_running(s)
        if n:
            log.info("recovery: %d running points queued again", n)

    def _loop(self) -> None:
        errors = 0
        standby_logged = False
        try:
            while not self._stop.is_set():
                try:
                    if self.leadership.due() and not self.leadership.ensure():
                        if self.scheduler.busy():
                            log.warning("runner: lost the runner lease; stopping its chunks")
                            self.scheduler.shutdown()
                        self._recovered = False
                        if not standby_logged:
                            log.info("runner: another process holds the runner lease; standing by")
                            standby_logged = True
                        self._stop.wait(self.leadership.ttl / 4)
                        continue
                    standby_logged = False
                    if not self._recovered:
                        self._recover()
                        self._recovered = True
                        self._warm_stream()
                    self.scheduler.step()
                    errors = 0
                except SweepSetupError as exc:
                    self._sweep_failed(exc.sweep_id, exc.cause)
                    continue
                except Exception as exc:  # database or Ray unavailable for a moment: retry later
                    errors += 1
                    if errors == 1:
                        log.exception("runner: step failed")
                    else:
                        log.warning("runner: still failing (%d): %s", errors, str(exc).splitlines()[0])
                    if not self.leadership.held() and self.scheduler.busy():
                        self.scheduler.shutdown()  # the lease may be gone: stop computing
                    self._stop.wait(min(10.0, 0.5 * 2 ** min(errors, 5)))
                    continue
                if not self.scheduler.busy():
                    self.writer.checkpoint_soon()  # between sweeps, not in one's commits
                    self._wake.wait(IDLE_POLL_SECONDS)
                    self._wake.clear()
        finally:
            try:
                self.scheduler.shutdown()
            except Exception:
                log.exception("runner: shutdown could not put its points back (recovered at next start)")
            self.leadership.release()

    def _warm_stream(self) -> None:
        """Create the task stream now, so its express lane (workers.dispatch.TaskStream) is warm
        before a sweep comes; if Ray is not reachable yet, the first sweep's step tries again."""
        import ray

        if not ray.is_initialized():  # (a stream's express actor would start a local Ray here)
            return
        try:
            _ = self.scheduler.stream
        except Exception as exc:
            log.info("runner: task stream not created yet (%s)", str(exc).splitlines()[0] if str(exc) else exc)

    def _sweep_failed(self, sweep_id: int, exc: BaseException) -> None:
        """A sweep could not be taken up: the error on sweeps.error; retried a few times with a
        growing pause (a transient hiccup passes), then failed."""
        n = self._failures.get(sweep_id, 0) + 1
        self._failures[sweep_id] = n
        log.error("runner: sweep %s could not be taken up (attempt %d): %s", sweep_id, n, exc)
        try:
            self.scheduler.fail_sweep(
                sweep_id, f"runner error (attempt {n}): {type(exc).__name__}: {exc}", give_up=n >= self.max_crashes
            )
        except Exception:
            log.exception("runner: could not record the failure of sweep %s", sweep_id)
        if n >= self.max_crashes:
            self._failures.pop(sweep_id, None)
        else:
            self._stop.wait(min(60.0, 2.0**n))
