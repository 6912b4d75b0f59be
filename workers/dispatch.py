"""Feeding sweep points to Ray in shape-grouped chunks and streaming the results back.

A chunk is a list of points with one `PointConfig.shape_key()`, run by one Ray task as one
vectorised core batch. Chunk sizes are adaptive: the first tasks of a shape are small probes; every
finished task adds (n_points, seconds) to a per-shape linear cost model t = a + b·n (a: per-batch
overhead, b: per-point cost), and later chunks are sized to carry `target_task_seconds` of work
(Ray costs ~1 ms per task). Near the end of a sweep, chunks shrink to a fraction of the work left per
CPU so that no CPU idles while another finishes a long last chunk.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from core import PointConfig, PointResult
from core.types import METRIC_FIELDS
from workers.runtime import cluster_cpus, init_ray
from workers.tasks import ChunkError, run_chunk

log = logging.getLogger(__name__)

_MIN_TASK_SECONDS = 0.05   # the smallest chunk worth a Ray task (~1 ms overhead -> <= 2 %)
_MAX_TASK_FACTOR = 4.0     # overhead-bound shapes may use tasks up to 4x target_task_seconds
_GROWTH_BITS = 2           # chunk sizes grow at most 4x over the largest measured one
_RESUBMITS = 2             # driver-side resubmissions of a chunk lost to a system error
_PROBE_POINTS = 2          # first chunk of a shape whose cost is still unknown


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


@dataclass
class _Chunk:
    key: tuple
    ids: list[int]
    cfgs: list[PointConfig]
    tries_left: int            # driver-side resubmissions left after a system error (on top of
                               # Ray's own max_retries for a dead worker process)


class _Cost:
    """What this shape's finished tasks cost: n-weighted seconds per point, and a least-squares fit
    of task seconds t = a + b·n (a: per-batch overhead, b: marginal per-point cost)."""

    __slots__ = ("k", "sn", "snn", "st", "snt", "max_n")

    def __init__(self) -> None:
        self.k = self.max_n = 0
        self.sn = self.snn = self.st = self.snt = 0.0

    def add(self, n: int, t: float) -> None:
        self.k += 1
        self.sn += n
        self.snn += n * n
        self.st += t
        self.snt += n * t
        self.max_n = max(self.max_n, n)

    @property
    def known(self) -> bool:
        return self.k > 0

    @property
    def per_point(self) -> float:
        """Seconds per point with the overhead amortised at the sizes run so far: an overestimate
        of the marginal cost, so chunks sized from it err on the short side."""
        return max(self.st / self.sn, 1e-9)

    def fit(self) -> tuple[float, float] | None:
        """(a, b) once the task sizes seen differ enough to fit them, else None."""
        var = self.k * self.snn - self.sn * self.sn
        if self.k < 2 or var <= 0.05 * self.snn * self.k:
            return None
        b = (self.k * self.snt - self.sn * self.st) / var
        a = (self.st - b * self.sn) / self.k
        return (a, b) if a > 0 and b > 0 else None


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
        max_in_flight = self.max_in_flight or 2 * ncpu
        remote = run_chunk.options(max_retries=self.max_retries)

        # Group by shape (building chunks is the only per-point Python loop).
        groups: dict[tuple, tuple[list[int], list[PointConfig]]] = {}
        for pid, cfg in points:
            ids, cfgs = groups.setdefault(cfg.shape_key(), ([], []))
            ids.append(pid)
            cfgs.append(cfg)
            stats.n_points += 1
        stats.n_shapes = len(groups)
        cursor = {key: 0 for key in groups}                 # next unsubmitted index per shape
        cost = {key: _Cost() for key in groups}
        probes_out = {key: 0 for key in groups}             # tasks in flight while cost unknown
        redo: deque[_Chunk] = deque()                       # resubmissions and split halves
        inflight: dict[ray.ObjectRef, tuple[_Chunk, int]] = {}

        def remaining(key) -> int:
            return len(groups[key][0]) - cursor[key]

        def work_left() -> float:
            """Estimated seconds of work not yet finished (unsubmitted + in flight); inf if unknown."""
            w = 0.0
            for key in groups:
                r = remaining(key)
                if r and not cost[key].known:
                    return math.inf
                if r:
                    w += cost[key].per_point * r
            for chunk, _ in inflight.values():
                if cost[chunk.key].known:
                    w += cost[chunk.key].per_point * len(chunk.ids)
            return w

        def next_chunk() -> _Chunk | None:
            if redo:
                return redo.popleft()
            open_keys = [k for k in groups if remaining(k)]
            if not open_keys:
                return None
            # Shapes of unknown cost first (a probe each), at most one probe per CPU at a time.
            unknown = [k for k in open_keys if not cost[k].known]
            if unknown:
                key = min(unknown, key=lambda k: probes_out[k])
                if probes_out[key] == 0 or sum(probes_out.values()) < ncpu:
                    # Probes grow 2, 8, 32, ... (distinct sizes: the a + b·n fit needs them) but never beyond a fair share of the shape.
                    n = _PROBE_POINTS << (_GROWTH_BITS * probes_out[key])
                    n = min(n, max(1, len(groups[key][0]) // (2 * ncpu)), remaining(key))
                    probes_out[key] += 1
                    return take(key, n)
                known_open = [k for k in open_keys if cost[k].known]
                if not known_open:
                    return None
                open_keys = known_open
            # Largest remaining work first.
            key = max(open_keys, key=lambda k: cost[k].per_point * remaining(k))
            c = cost[key]
            r = remaining(key)
            target = min(self.target_task_seconds,
                         max(_MIN_TASK_SECONDS, work_left() / (2 * ncpu)))
            n = target / c.per_point
            ab = c.fit()
            if ab:
                # Per-batch overhead a vs imbalance at the end: splitting r points into j chunks
                # costs j·a/P of overhead per CPU and up to one chunk (≈ b·r/j) of idle tail;
                # j = sqrt(b·r·P/a) minimises the sum. Bounded by P chunks and _MAX_TASK_FACTOR·T.
                a, b = ab
                j = max(ncpu, math.sqrt(b * r * ncpu / a))
                n = max(n, min(r / j, _MAX_TASK_FACTOR * self.target_task_seconds / b))
            n = min(n, c.max_n << _GROWTH_BITS)          # grow at most 4x per measured size
            return take(key, max(1, min(math.ceil(n), r)))

        def take(key, n: int) -> _Chunk:
            i = cursor[key]
            cursor[key] = i + n
            ids, cfgs = groups[key]
            return _Chunk(key, ids[i:i + n], cfgs[i:i + n], _RESUBMITS)

        def submit(chunk: _Chunk) -> None:
            ref = remote.remote(chunk.cfgs)
            inflight[ref] = (chunk, stats.n_tasks)
            stats.n_tasks += 1
            stats.task_sizes.append(len(chunk.ids))

        def fill() -> None:
            while len(inflight) < max_in_flight:
                chunk = next_chunk()
                if chunk is None:
                    return
                submit(chunk)

        def failed_outcomes(chunk: _Chunk, message: str, node: str, task: int) -> list[PointOutcome]:
            stats.n_failed_points += len(chunk.ids)
            return [PointOutcome(pid, PointResult(config=cfg, status="failed",
                                                  metrics=dict.fromkeys(METRIC_FIELDS),
                                                  error=message), node, task)
                    for pid, cfg in zip(chunk.ids, chunk.cfgs)]

        def split_or_fail(chunk: _Chunk, message: str, node: str, task: int) -> list[PointOutcome]:
            if len(chunk.ids) == 1:
                return failed_outcomes(chunk, message, node, task)
            stats.n_split += 1
            h = len(chunk.ids) // 2
            # Halves get one try each before splitting again: bisection finds the bad point.
            redo.appendleft(_Chunk(chunk.key, chunk.ids[h:], chunk.cfgs[h:], 0))
            redo.appendleft(_Chunk(chunk.key, chunk.ids[:h], chunk.cfgs[:h], 0))
            return []

        def collect(ref: ray.ObjectRef) -> list[PointOutcome]:
            chunk, task = inflight.pop(ref)
            if not cost[chunk.key].known and probes_out[chunk.key] > 0:
                probes_out[chunk.key] -= 1
            try:
                results, node, seconds = ray.get(ref)
            except RayTaskError as e:
                stats.n_failed_tasks += 1
                cause = e.cause
                if isinstance(cause, ChunkError):
                    message, node = cause.message, cause.node_id
                else:
                    message, node = f"{type(cause).__name__}: {cause}", ""
                log.warning("chunk of %d points raised: %s", len(chunk.ids), message)
                return split_or_fail(chunk, message, node, task)
            except TaskCancelledError:
                return []
            except Exception as e:  # dead worker or node, lost object, ...: a system error
                stats.n_failed_tasks += 1
                log.warning("chunk of %d points lost (%s); %d resubmissions left",
                            len(chunk.ids), type(e).__name__, chunk.tries_left)
                if chunk.tries_left > 0:
                    stats.n_retried += 1
                    chunk.tries_left -= 1
                    redo.appendleft(chunk)
                    return []
                return split_or_fail(chunk, f"{type(e).__name__}: {e}".splitlines()[0], "", task)
            cost[chunk.key].add(len(chunk.ids), seconds)
            stats.task_seconds.append((len(chunk.ids), round(seconds, 4)))
            stats.workers[node] = stats.workers.get(node, 0) + len(results)
            return [PointOutcome(pid, res, node, task) for pid, res in zip(chunk.ids, results)]

        try:
            while True:
                if cancelled():
                    stats.cancelled = True
                    break
                fill()
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.1)
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
