"""Feeding sweep points to Ray in shape-grouped chunks and streaming the results back.

`Dispatcher.run` groups the points by `PointConfig.shape_key()`; each Ray task runs one chunk of a
group as one vectorised core batch. How big each chunk is, and when it is submitted, is decided by
`workers.planner.Planner` (an even first split, a per-shape cost model t = a + b·n, steady
chunks, a water-filled final round so all CPUs finish together); the per-shape cost models live on the Dispatcher, so later runs
(the service feeds long sweeps in several runs) start with known costs. Finished tasks are collected with
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
from dataclasses import dataclass, field
from typing import Callable, Iterable

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from flowsweep.core import PointConfig, PointResult
from flowsweep.core.types import METRIC_FIELDS
from flowsweep.workers.planner import Chunk, Cost, Planner, Task
from flowsweep.workers.runtime import cluster_cpus, init_ray
from flowsweep.workers.tasks import ChunkError, run_chunk

log = logging.getLogger(__name__)

_MAX_COST_MODELS = 256     # shapes whose cost model a Dispatcher remembers across runs
_WAIT_SECONDS = 0.1        # ray.wait timeout: how often cancelled() is polled


@dataclass
class PointOutcome:
    point_id: int
    result: PointResult    # from core; arrays in result.curves are read-only (object store)
    worker: str            # the Ray node id (hex) that ran it ("" if unknown)
    task: int = -1         # serial number of the Ray task (chunk) that produced it, within one run


@dataclass
class DispatchStats:
    n_points: int = 0          # points given
    n_reported: int = 0        # points passed to on_results
    n_shapes: int = 0          # distinct shape keys
    n_tasks: int = 0           # Ray tasks submitted, resubmissions included
    n_retried: int = 0         # chunks resubmitted after a system error (dead worker, lost object)
    n_split: int = 0           # chunks split in two after errors, to isolate a bad point
    n_failed_tasks: int = 0    # task attempts that ended in an error
    n_failed_points: int = 0   # points reported "failed" by the dispatcher (core raised on them)
    cancelled: bool = False
    wall_seconds: float = 0.0
    task_sizes: list[int] = field(default_factory=list)  # points per submitted task, in order
    task_seconds: list[tuple[int, float]] = field(default_factory=list)  # (points, core seconds) done
    workers: dict[str, int] = field(default_factory=dict)  # node id -> points it ran


def _make_room(costs: OrderedDict, keys, limit: int) -> None:
    """Mark `keys` (a run's shapes) most recently used and evict the least recently used other
    shapes until the cache holds at most `limit` models once the run has added its new ones. The
    run's own models are never evicted (they size its chunks), even if they alone exceed `limit`."""
    for key in keys:
        if key in costs:
            costs.move_to_end(key)
    excess = len(costs) + sum(1 for k in keys if k not in costs) - limit
    for key in [k for k in costs if k not in keys][:max(0, excess)]:
        del costs[key]


class Dispatcher:
    """Runs points on Ray; see the module docstring. One `run` at a time per instance."""

    def __init__(self, *, max_in_flight: int | None = None, target_task_seconds: float = 0.5,
                 max_retries: int = 3):
        if target_task_seconds <= 0:
            raise ValueError("target_task_seconds must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_in_flight = max_in_flight
        self.target_task_seconds = float(target_task_seconds)
        self.max_retries = int(max_retries)
        self._costs: OrderedDict[tuple, Cost] = OrderedDict()  # shape key -> cost model

    def run(self, points: Iterable[tuple[int, PointConfig]],
            on_results: Callable[[list[PointOutcome]], None],
            cancelled: Callable[[], bool] = lambda: False) -> DispatchStats:
        """Run every point; report each exactly once through `on_results` (called in this thread,
        one call per batch of finished tasks). If `cancelled()` turns true, in-flight tasks are
        cancelled and this returns promptly; unreported points stay unreported."""
        t_start = time.perf_counter()
        init_ray()
        stats = DispatchStats()
        ncpu = cluster_cpus()
        remote = run_chunk.options(max_retries=self.max_retries)

        # Group by shape (building chunks is the only per-point Python loop).
        groups: dict[tuple, tuple[list[int], list[PointConfig]]] = {}
        for pid, cfg in points:
            ids, cfgs = groups.setdefault(cfg.shape_key(), ([], []))
            ids.append(pid)
            cfgs.append(cfg)
        stats.n_points = sum(len(ids) for ids, _ in groups.values())
        stats.n_shapes = len(groups)
        _make_room(self._costs, groups, _MAX_COST_MODELS)
        plan = Planner(groups, ncpu, self.max_in_flight or 2 * ncpu, self.target_task_seconds,
                       self._costs)
        inflight: dict[ray.ObjectRef, Task] = {}

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
            return [PointOutcome(pid, PointResult(config=cfg, status="failed",
                                                  metrics=dict.fromkeys(METRIC_FIELDS),
                                                  error=message), node, serial)
                    for pid, cfg in zip(chunk.ids, chunk.cfgs)]

        def split_or_fail(chunk: Chunk, message: str, node: str, serial: int) -> list[PointOutcome]:
            if len(chunk.ids) == 1:
                return failed_outcomes(chunk, message, node, serial)
            stats.n_split += 1
            h = len(chunk.ids) // 2
            # Halves get one try each before splitting again: bisection finds the bad point.
            plan.redo.appendleft(Chunk(chunk.key, chunk.ids[h:], chunk.cfgs[h:], tries_left=0))
            plan.redo.appendleft(Chunk(chunk.key, chunk.ids[:h], chunk.cfgs[:h], tries_left=0))
            return []

        def collect(ref: ray.ObjectRef) -> list[PointOutcome]:
            task = inflight.pop(ref)
            chunk = task.chunk
            try:
                results, node, seconds = ray.get(ref)
            except Exception as e:
                plan.finished(task, time.perf_counter(), None)
                if isinstance(e, TaskCancelledError):
                    return []
                stats.n_failed_tasks += 1
                cause = e.cause if isinstance(e, RayTaskError) else None
                if isinstance(cause, ChunkError):
                    # core raised on this chunk: bisect down to the point(s) that make it raise
                    log.warning("chunk of %d points raised: %s", len(chunk.ids), cause.message)
                    return split_or_fail(chunk, cause.message, cause.node_id, task.serial)
                # A dead worker or node, a lost object (system errors), or the task failing outside
                # core (e.g. core not importable on a node): resubmit a bounded number of times.
                message = (f"{type(cause).__name__}: {cause}" if cause is not None
                           else f"{type(e).__name__}: {e}").splitlines()[0]
                log.warning("chunk of %d points lost (%s); %d resubmissions left",
                            len(chunk.ids), message, chunk.tries_left)
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
            for ref in inflight:
                ray.cancel(ref, force=False)
            inflight.clear()
            stats.wall_seconds = time.perf_counter() - t_start
        return stats
