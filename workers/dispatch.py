"""Feeding sweep points to Ray in shape-grouped chunks and streaming the results back.

Two entry points: `TaskStream` (the service's streaming scheduler submits chunks one at a time, as
CPUs free up, and collects them as they finish; no barrier) and `Dispatcher.run` (a whole list of
points in one call, planned by workers.planner.Planner; for batch use and benchmarks).

`Dispatcher.run` groups the points by `PointConfig.shape_key()`; each Ray task runs one chunk of a
group as one vectorised core batch. How big each chunk is, and when it is submitted, is decided by
`workers.planner.Planner` (an even first split, a per-shape cost model t = a + b·n, steady
chunks, a water-filled final round so all CPUs finish together); the per-shape cost models live on
the Dispatcher, so later runs (the service feeds long sweeps in several runs) start with known
costs. Finished tasks are collected with
`ray.wait` and handed to `on_results` in batches, in the caller's thread, after the freed CPUs have
been given new work.

Failures: Ray re-runs a task whose worker process died (`max_retries`); a chunk still lost (worker
or node death, lost object) is resubmitted by the dispatcher (planner.RESUBMITS times), then split
in halves (a point that kills its worker is isolated); a chunk whose core call raises is split in
halves at once, down to the single point, which is reported as status "failed" with the message;
a task failing outside core (e.g. core not importable) is resubmitted, then its points are failed.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray import ObjectRef
from ray.exceptions import RayTaskError, TaskCancelledError

from flowsweep.core import PointConfig, PointResult
from flowsweep.core.types import METRIC_FIELDS, ShapeKey
from flowsweep.status import PointStatus
from flowsweep.workers.planner import Chunk, Cost, Planner, Task
from flowsweep.workers.runtime import cluster_cpus, init_ray
from flowsweep.workers.tasks import (
    ChunkError,
    ChunkResults,
    ChunkRows,
    ChunkRowsResults,
    ExpressWorker,
    run_chunk,
    run_chunk_rows,
)

if TYPE_CHECKING:
    from ray._private.worker import RemoteFunction0  # the type of a one-argument @ray.remote function

log = logging.getLogger(__name__)

_MAX_COST_MODELS = 256  # shapes whose cost model a Dispatcher remembers across runs
_WAIT_SECONDS = 0.1  # ray.wait timeout: how often cancelled() is polled
_ALL = object()  # TaskStream.in_flight(): every tag
CANCEL_GRACE_SECONDS = 5.0  # a cancelled task still running after this: its worker is killed
CANCEL_MARGIN_SECONDS = 0.5  # a running task expected to end sooner is not cancelled (see cancel)
_EXPRESS_TRIES = 5  # the express lane is given up after this many failed ready() calls in a row


def _cancel(refs: list[ray.ObjectRef[Any]], force: bool = False) -> None:
    """ray.cancel of the tasks that have not finished. Ray 2.60's driver aborts ("Tried to complete
    task that was not pending") when a task is cancelled while its finished reply is being
    processed, so a task whose result is already there is never cancelled (and TaskStream leaves
    alone a running task expected to finish soon: see TaskStream.cancel)."""
    if not refs:
        return
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    for ref in pending:
        ray.cancel(ref, force=force)


@dataclass
class PointOutcome:
    point_id: int
    result: PointResult  # from core; arrays in result.curves are read-only (object store)
    worker: str  # the Ray node id (hex) that ran it ("" if unknown)
    task: int = -1  # serial number of the Ray task (chunk) that produced it, within one run


@dataclass
class DispatchStats:
    n_points: int = 0  # points given
    n_reported: int = 0  # points passed to on_results
    n_shapes: int = 0  # distinct shape keys
    n_tasks: int = 0  # Ray tasks submitted, resubmissions included
    n_retried: int = 0  # chunks resubmitted after a system error (dead worker, lost object)
    n_split: int = 0  # chunks split in two after errors, to isolate a bad point
    n_failed_tasks: int = 0  # task attempts that ended in an error
    n_failed_points: int = 0  # points reported "failed" by the dispatcher (core raised on them)
    cancelled: bool = False
    wall_seconds: float = 0.0
    task_sizes: list[int] = field(default_factory=list)  # points per submitted task, in order
    task_seconds: list[tuple[int, float]] = field(default_factory=list)  # (points, core seconds) done
    workers: dict[str, int] = field(default_factory=dict)  # node id -> points it ran


@dataclass(frozen=True)
class TaskFailure:
    """Why a chunk's task ended without results (see classify_failure)."""

    message: str  # one line, for the failed points' error
    core_raised: bool  # core raised on the chunk: bisect to the point(s) that make it raise
    node: str = ""  # the node that ran it, when known
    cause: BaseException | None = None  # the task's own exception (None: a system error of Ray)


def classify_failure(e: BaseException) -> TaskFailure | None:
    """The failure of a chunk's `ray.get`; None when the task was cancelled (nothing to report)."""
    if isinstance(e, TaskCancelledError):
        return None
    cause = e.cause if isinstance(e, RayTaskError) else None
    if isinstance(cause, ChunkError):
        return TaskFailure(cause.message, True, cause.node_id, cause)
    message = (f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(e).__name__}: {e}").splitlines()[0]
    return TaskFailure(message, False, "", cause)


def _make_room(costs: OrderedDict[ShapeKey, Cost], keys: Iterable[ShapeKey], limit: int) -> None:
    """Mark `keys` (a run's shapes) most recently used and evict the least recently used other
    shapes until the cache holds at most `limit` models once the run has added its new ones. The
    run's own models are never evicted (they size its chunks), even if they alone exceed `limit`."""
    for key in keys:
        if key in costs:
            costs.move_to_end(key)
    excess = len(costs) + sum(1 for k in keys if k not in costs) - limit
    for key in [k for k in costs if k not in keys][: max(0, excess)]:
        del costs[key]


class Dispatcher:
    """Runs points on Ray; see the module docstring. One `run` at a time per instance."""

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        target_task_seconds: float = 0.5,
        max_retries: int = 3,
        remote: RemoteFunction0[ChunkResults, list[PointConfig]] | None = None,
    ) -> None:
        if target_task_seconds <= 0:
            raise ValueError("target_task_seconds must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_in_flight = max_in_flight
        self.target_task_seconds = float(target_task_seconds)
        self.max_retries = int(max_retries)
        self._remote = remote or run_chunk  # the Ray remote function run per chunk (tests gate it)
        self._costs: OrderedDict[ShapeKey, Cost] = OrderedDict()  # shape key -> cost model

    def run(
        self,
        points: Iterable[tuple[int, PointConfig]],
        on_results: Callable[[list[PointOutcome]], None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> DispatchStats:
        """Run every point; report each exactly once through `on_results` (called in this thread,
        one call per batch of finished tasks). If `cancelled()` turns true, in-flight tasks are
        cancelled and this returns promptly; unreported points stay unreported."""
        t_start = time.perf_counter()
        init_ray()
        stats = DispatchStats()
        ncpu = cluster_cpus()
        remote = self._remote.options(max_retries=self.max_retries)

        # Group by shape (building chunks is the only per-point Python loop).
        groups: dict[ShapeKey, tuple[list[int], list[PointConfig]]] = {}
        for pid, cfg in points:
            ids, cfgs = groups.setdefault(cfg.shape_key(), ([], []))
            ids.append(pid)
            cfgs.append(cfg)
        stats.n_points = sum(len(ids) for ids, _ in groups.values())
        stats.n_shapes = len(groups)
        _make_room(self._costs, groups, _MAX_COST_MODELS)
        plan = Planner(groups, ncpu, self.max_in_flight or 2 * ncpu, self.target_task_seconds, self._costs)
        inflight: dict[ObjectRef[ChunkResults], Task] = {}

        def fill() -> None:
            while True:
                now = time.perf_counter()
                chunk = plan.next_chunk(now)
                if chunk is None:
                    return
                ref = remote.remote(chunk.cfgs)
                task = Task(chunk, stats.n_tasks, now)
                plan.submitted(task, now)
                inflight[ref] = task
                stats.n_tasks += 1
                stats.task_sizes.append(len(chunk.ids))

        def failed_outcomes(chunk: Chunk, message: str, node: str, serial: int) -> list[PointOutcome]:
            stats.n_failed_points += len(chunk.ids)
            return [
                PointOutcome(
                    pid,
                    PointResult(
                        config=cfg, status=PointStatus.FAILED, metrics=dict.fromkeys(METRIC_FIELDS), error=message
                    ),
                    node,
                    serial,
                )
                for pid, cfg in zip(chunk.ids, chunk.cfgs)
            ]

        def split_or_fail(chunk: Chunk, message: str, node: str, serial: int) -> list[PointOutcome]:
            if len(chunk.ids) == 1:
                return failed_outcomes(chunk, message, node, serial)
            stats.n_split += 1
            h = len(chunk.ids) // 2
            # Halves get one try each before splitting again: bisection finds the bad point.
            plan.redo.appendleft(Chunk(chunk.key, chunk.ids[h:], chunk.cfgs[h:], tries_left=0))
            plan.redo.appendleft(Chunk(chunk.key, chunk.ids[:h], chunk.cfgs[:h], tries_left=0))
            return []

        def collect(ref: ObjectRef[ChunkResults]) -> list[PointOutcome]:
            task = inflight.pop(ref)
            chunk = task.chunk
            try:
                results, node, seconds = ray.get(ref)
            except Exception as e:
                plan.finished(task, time.perf_counter(), None)
                failure = classify_failure(e)
                if failure is None:
                    return []
                stats.n_failed_tasks += 1
                if failure.core_raised:
                    # core raised on this chunk: bisect down to the point(s) that make it raise
                    log.warning("chunk of %d points raised: %s", len(chunk.ids), failure.message)
                    return split_or_fail(chunk, failure.message, failure.node, task.serial)
                # A dead worker or node, a lost object (system errors), or the task failing outside
                # core (e.g. core not importable on a node): resubmit a bounded number of times.
                message = failure.message
                cause = failure.cause
                log.warning(
                    "chunk of %d points lost (%s); %d resubmissions left", len(chunk.ids), message, chunk.tries_left
                )
                if chunk.tries_left > 0:
                    stats.n_retried += 1
                    chunk.tries_left -= 1
                    plan.redo.appendleft(chunk)
                    return []
                if cause is not None:  # not point-specific: splitting cannot help
                    return failed_outcomes(chunk, message, "", task.serial)
                # a point that kills its worker every time: bisection isolates it
                return split_or_fail(chunk, message, "", task.serial)
            plan.finished(task, time.perf_counter(), [(len(chunk.ids), seconds)])
            stats.task_seconds.append((len(chunk.ids), round(seconds, 4)))
            stats.workers[node] = stats.workers.get(node, 0) + len(results)
            return [PointOutcome(pid, res, node, task.serial) for pid, res in zip(chunk.ids, results)]

        try:
            while True:
                if cancelled():
                    stats.cancelled = True
                    break
                fill()
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_WAIT_SECONDS)
                if not ready:
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                outcomes: list[PointOutcome] = []
                for ref in ready:
                    outcomes.extend(collect(ref))
                if cancelled():
                    stats.cancelled = True
                    break
                fill()  # keep the CPUs busy while the caller writes this batch
                if outcomes:
                    stats.n_reported += len(outcomes)
                    on_results(outcomes)
        finally:
            _cancel(list(inflight))
            inflight.clear()
            stats.wall_seconds = time.perf_counter() - t_start
        return stats


# ============================================================================ streaming


@dataclass
class ChunkOutcome:
    """A finished chunk's results as columns (workers.tasks.ChunkRows) with the caller's point ids:
    the streaming path's outcomes (cheaper to ship and to store than one PointOutcome per point)."""

    point_ids: list[int]
    rows: ChunkRows
    worker: str  # the Ray node id (hex) that ran it

    def __len__(self) -> int:
        return len(self.point_ids)


@dataclass
class Done:
    """A chunk of `tag` (the caller's label, e.g. a sweep id) that left the cluster."""

    tag: Any
    chunk: Chunk
    outcomes: list[PointOutcome] | ChunkOutcome  # empty when split or resubmitted (reported later)
    seconds: float  # CPU seconds the task held a worker (core time; elapsed if failed)
    sample: tuple[int, float] | None  # (points, core seconds) for the shape's cost model


@dataclass
class _Flight:
    tag: Any
    chunk: Chunk
    serial: int
    submitted: float
    started: float | None = None  # estimated: tasks start FIFO as CPUs free up
    cancelled: bool = False
    cancelled_at: float | None = None
    expected: float | None = None  # the caller's estimate of its seconds (None: unknown)
    express: bool = False  # on the express lane (holds no CPU slot; never cancelled: it is short)

    def about_to_finish(self, now: float) -> bool:
        """Running and expected to finish within CANCEL_MARGIN_SECONDS (or in its second half);
        not once it has run twice its estimate (it may be stuck)."""
        if self.started is None or self.expected is None:
            return False
        left = self.expected - (now - self.started)
        return -self.expected < left < max(CANCEL_MARGIN_SECONDS, self.expected / 2)


class TaskStream:
    """Chunks in flight on Ray for a streaming scheduler (service.scheduling): the caller submits
    chunks one at a time, labelled with a tag, and collects them with `wait` as they finish; no
    barrier anywhere. Failures are handled here as in `Dispatcher.run` (resubmission, bisection down
    to the bad point, which is reported failed), and a task running longer than `task_timeout`
    seconds is cancelled (its worker killed) and bisected: a single point that times out is
    reported failed with a message saying so.

    `remote` is the Ray remote function run per chunk (tests pass one that blocks until released).
    `clock` gives the times used for the timeout (tests pass a logical one).

    **Express lane** (`express`, on by default): one warm process (workers.tasks.ExpressWorker, an
    actor holding 0 CPUs, started and warmed in the background here) that runs a chunk submitted
    with `express=True` at once, beside the chunks holding the CPUs. The caller bounds it (the
    scheduler sends only a short chunk of a sweep that has none on a CPU while others hold them
    all); here, one chunk at a time (`express_free`). Its chunks hold no slot (`in_flight()`), are
    never cancelled (short: they finish and are kept), and when the actor dies (its node lost)
    the chunk is resubmitted on the ordinary lane."""

    def __init__(
        self,
        *,
        max_retries: int = 3,
        task_timeout: float | None = None,
        remote: RemoteFunction0[Any, list[PointConfig]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        express: bool = True,
    ) -> None:
        init_ray()
        base = remote or run_chunk_rows
        # returns ChunkRowsResults (run_chunk_rows) or ChunkResults (run_chunk)
        self._remote: RemoteFunction0[Any, list[PointConfig]] = base.options(max_retries=max_retries)
        self._express: Any = None  # the ExpressWorker actor handle
        self._express_ready: ObjectRef[Any] | None = None  # its ready() call: done once it is warm
        self._express_busy: ObjectRef[Any] | None = None  # its last chunk
        self.express_info: tuple[str, int, int] | None = None  # (node, pid, RSS bytes) once warm
        self._express_failures = 0  # ready() calls that failed in a row
        if express:
            self._express = ExpressWorker.remote(base._function)  # type: ignore[attr-defined,union-attr]  # (untyped in Ray)
            self._express_ready = self._express.ready.remote()
        self.task_timeout = task_timeout
        self._clock = clock
        self._inflight: dict[ObjectRef[ChunkResults | ChunkRowsResults], _Flight] = {}
        self._serial = 0
        self._cpus = cluster_cpus()
        self._cpus_checked = clock()
        self._timed_out: list[Done] = []  # single points failed by the timeout, not reported yet
        self._started: list[tuple[Any, Chunk]] = []  # (tag, chunk) started since take_started()

    def cpus(self) -> int:
        """CPUs of the cluster (re-read every 10 s: nodes may join or leave)."""
        now = self._clock()
        if now - self._cpus_checked > 10.0:
            self._cpus, self._cpus_checked = cluster_cpus(), now
        return self._cpus

    def in_flight(self, tag: Any = _ALL, express: bool = True) -> int:
        """Tasks in flight of `tag` (counting its express chunk unless `express` is False), or in
        all the CPU slots (no express chunk); cancelled ones count in the total until they are
        gone, since their workers may still be busy."""
        if tag is _ALL:  # a cancelled task that never started holds no CPU
            return sum(
                1 for f in self._inflight.values() if not f.express and (not f.cancelled or f.started is not None)
            )
        return sum(
            1 for f in self._inflight.values() if f.tag == tag and not f.cancelled and (express or not f.express)
        )

    def running(self, tag: Any = _ALL) -> int:
        """Tasks holding a CPU now (estimated, as `take_started`), of `tag` or of any."""
        return sum(
            1
            for f in self._inflight.values()
            if f.started is not None and not f.express and (tag is _ALL or (f.tag == tag and not f.cancelled))
        )

    def express_free(self) -> bool:
        """Whether the express lane can take a chunk now: warm, and none of its chunks running."""
        if self._express_ready is None:
            return False
        if self._express_busy is not None:
            if any(f.express for f in self._inflight.values()):
                return False
            done, _ = ray.wait([self._express_busy], timeout=0, fetch_local=False)
            if not done:
                return False
            self._express_busy = None
        if self.express_info is None:
            done, _ = ray.wait([self._express_ready], timeout=0)
            if not done:
                return False
            try:
                self.express_info = ray.get(self._express_ready)
            except Exception as e:
                self._express_failures += 1
                if self._express_failures < _EXPRESS_TRIES:
                    self._express_ready = self._express.ready.remote()
                    return False
                # it cannot start (e.g. core not importable where it runs): no express lane
                log.warning("express lane unavailable: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
                self._express_ready = None
                return False
            self._express_failures = 0
            node, pid, rss = self.express_info
            log.info("express lane: warm (pid %d on node %s, %.0f MB resident)", pid, node[:8], rss / 2**20)
        return True

    def submit(self, chunk: Chunk, tag: Any, expected: float | None = None, express: bool = False) -> None:
        """Run `chunk` as one task labelled `tag`; `expected`: its estimated seconds, if known;
        `express`: on the express lane (the caller checked `express_free`), started at once."""
        now = self._clock()
        flight = _Flight(tag, chunk, self._serial, now, expected=expected or None, express=express)
        if express:
            ref = self._express_busy = self._express.run.remote(chunk.cfgs)
        else:
            ref = self._remote.remote(chunk.cfgs)
        self._serial += 1
        if express or self.running() < self._cpus:
            flight.started = now
            self._started.append((tag, chunk))
        self._inflight[ref] = flight

    def take_started(self) -> list[tuple[Any, Chunk]]:
        """(tag, chunk) of the tasks that started on a CPU since the last call (estimated: Ray
        starts a task when a CPU frees up, in submission order)."""
        out, self._started = self._started, []
        return out

    def cancel(self, tag: Any) -> int:
        """Cancel the tag's tasks in flight; their points are never reported. Returns how many.

        A running task expected to finish soon (Flight.about_to_finish) is left to finish instead:
        a cancel that races its finished reply aborts Ray 2.60's driver (the whole service), and
        its results, computed anyway, are kept. It still counts in in_flight(tag)."""
        now = self._clock()
        refs = [
            ref
            for ref, f in self._inflight.items()
            if f.tag == tag and not f.cancelled and not f.express and not f.about_to_finish(now)
        ]
        for ref in refs:
            f = self._inflight[ref]
            f.cancelled, f.cancelled_at = True, now
        _cancel(refs)
        return len(refs)

    def preempt(self, which: Callable[[Any], bool]) -> list[tuple[Any, Chunk]]:
        """Cancel the tasks queued behind busy CPUs (not started, by the FIFO estimate) whose tag
        satisfies `which`, so that work submitted next starts first; returns their (tag, chunk)
        for the caller to submit again later. Their points are never reported by these tasks."""
        out: list[tuple[Any, Chunk]] = []
        refs = []
        for ref, f in self._inflight.items():
            if f.started is None and not f.cancelled and not f.express and which(f.tag):
                f.cancelled, f.cancelled_at = True, self._clock()
                refs.append(ref)
                out.append((f.tag, f.chunk))
        _cancel(refs)
        return out

    def close(self) -> None:
        now = self._clock()
        # (see cancel; a chunk on the express lane is left to finish, as there)
        _cancel([ref for ref, f in self._inflight.items() if not f.express and not f.about_to_finish(now)])
        self._inflight.clear()
        # the express lane's process goes with it: no actor handle or reference of this stream may
        # outlive the Ray session it belongs to (dropped after a ray.shutdown, they took the
        # process down with them); the lane is off for this stream from now on
        express, self._express = self._express, None
        self._express_ready = self._express_busy = None
        self.express_info = None
        if express is not None:
            try:
                ray.kill(express, no_restart=True)
            except Exception:  # Ray already shut down: nothing left to kill
                pass

    def wait(self, timeout: float) -> list[Done]:
        """Chunks finished within `timeout` seconds (all that are ready once one is)."""
        self._check_timeouts()
        out, self._timed_out = self._timed_out, []
        if not self._inflight:
            return out
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=0 if out else timeout)
        if not ready:
            return out
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            done = self._collect(ref)
            if done is not None:
                out.append(done)
        return out

    def _freed(self, now: float) -> None:
        for f in self._inflight.values():  # the oldest queued task takes the CPU that just freed
            if f.started is None and not f.express:
                f.started = now
                if not f.cancelled:
                    self._started.append((f.tag, f.chunk))
                break

    def _check_timeouts(self) -> None:
        now = self._clock()
        for ref, f in list(self._inflight.items()):
            if f.cancelled and f.cancelled_at is not None and now - f.cancelled_at > CANCEL_GRACE_SECONDS:
                # Ray can lose a polite cancel that races with the task's start: the worker is
                # killed instead (its CPU must not stay taken by a chunk nobody waits for).
                log.warning(
                    "a cancelled chunk of %d points still runs after %.0f s; killing its worker",
                    len(f.chunk.ids),
                    CANCEL_GRACE_SECONDS,
                )
                _cancel([ref], force=True)
                f.cancelled_at = None
        if not self.task_timeout:
            return
        for ref, f in list(self._inflight.items()):
            if f.started is not None and not f.cancelled and now - f.started > self.task_timeout:
                log.warning(
                    "chunk of %d points ran over the %.0f s task timeout; cancelled",
                    len(f.chunk.ids),
                    self.task_timeout,
                )
                if f.express:  # an actor's task cannot be force-cancelled: its process is restarted
                    self._restart_express()
                else:
                    _cancel([ref], force=True)  # kills the worker: core may be stuck in C
                del self._inflight[ref]
                if not f.express:
                    self._freed(now)
                message = f"TaskTimeout: no result within the task timeout of {self.task_timeout:g} s"
                if len(f.chunk.ids) == 1:
                    self._timed_out.append(Done(f.tag, f.chunk, _failed(f.chunk, message, ""), now - f.started, None))
                else:
                    self._split(f.tag, f.chunk)

    def _split(self, tag: Any, chunk: Chunk) -> None:
        h = len(chunk.ids) // 2
        for part in (
            Chunk(chunk.key, chunk.ids[:h], chunk.cfgs[:h], tries_left=0),
            Chunk(chunk.key, chunk.ids[h:], chunk.cfgs[h:], tries_left=0),
        ):
            self.submit(part, tag)

    def _restart_express(self) -> None:
        """Kill the express actor (Ray restarts it, warm again before it takes a chunk)."""
        ray.kill(self._express, no_restart=False)
        self._express_ready = self._express.ready.remote()
        self._express_busy = None
        self.express_info = None

    def _collect(self, ref: ObjectRef[ChunkResults | ChunkRowsResults]) -> Done | None:
        f = self._inflight.pop(ref)
        now = self._clock()
        if f.express:
            self._express_busy = None
        else:
            self._freed(now)
        elapsed = now - (f.started if f.started is not None else f.submitted)
        try:
            results, node, seconds = ray.get(ref)
        except Exception as e:
            failure = classify_failure(e)
            if failure is None or f.cancelled:
                return None
            chunk = f.chunk
            if f.express and not failure.core_raised:
                # the express actor died (its node lost?): the chunk on the ordinary lane, once
                # more; the lane is used again when the restarted actor is warm
                log.warning("express lane lost a chunk of %d points (%s); resubmitted", len(chunk.ids), failure.message)
                self._express_ready, self.express_info = self._express.ready.remote(), None
                self.submit(chunk, f.tag)
                return Done(f.tag, chunk, [], elapsed, None)
            if not failure.core_raised and chunk.tries_left > 0:
                log.warning(
                    "chunk of %d points lost (%s); %d resubmissions left",
                    len(chunk.ids),
                    failure.message,
                    chunk.tries_left,
                )
                chunk.tries_left -= 1
                self.submit(chunk, f.tag)
                return Done(f.tag, chunk, [], elapsed, None)
            if len(chunk.ids) > 1 and (failure.core_raised or failure.cause is None):
                log.warning("chunk of %d points failed (%s); split", len(chunk.ids), failure.message)
                self._split(f.tag, chunk)
                return Done(f.tag, chunk, [], elapsed, None)
            return Done(f.tag, chunk, _failed(chunk, failure.message, failure.node), elapsed, None)
        # (also when f.cancelled: computed before the cancel reached the worker, so kept)
        outcomes: list[PointOutcome] | ChunkOutcome
        if isinstance(results, ChunkRows):
            outcomes = ChunkOutcome(list(f.chunk.ids), results, node)
        else:
            outcomes = [PointOutcome(pid, res, node, f.serial) for pid, res in zip(f.chunk.ids, results)]
        return Done(f.tag, f.chunk, outcomes, seconds, (len(f.chunk.ids), seconds))


def _failed(chunk: Chunk, message: str, node: str) -> list[PointOutcome]:
    return [
        PointOutcome(
            pid,
            PointResult(config=cfg, status=PointStatus.FAILED, metrics=dict.fromkeys(METRIC_FIELDS), error=message),
            node,
        )
        for pid, cfg in zip(chunk.ids, chunk.cfgs)
    ]
