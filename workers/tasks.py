"""The Ray remote task: one chunk of same-shape points through core's vectorised batch path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from flowsweep.status import FINISHED_POINT_STATUSES, PointStatus

if TYPE_CHECKING:
    from flowsweep.core.types import PointConfig, PointResult, ResultColumns


class ChunkError(Exception):
    """core raised while running a chunk (it should not); carries the node id for the report."""

    def __init__(self, message: str, node_id: str):
        super().__init__(message)
        self.message = message
        self.node_id = node_id

    def __reduce__(self) -> tuple[type[ChunkError], tuple[str, str]]:  # keep both fields through pickling
        return (ChunkError, (self.message, self.node_id))


# What the chunk tasks return: (results in input order, Ray node id, seconds in core.run_points).
ChunkResults = tuple["list[PointResult]", str, float]
ChunkRowsResults = tuple["ChunkRows", str, float]


@ray.remote(num_cpus=1)
def run_chunk(configs: list[PointConfig]) -> ChunkResults:
    """Run `configs` (one shape group) as one core batch.

    Returns (results in input order, id of the Ray node that ran them, seconds spent in
    core.run_points); the seconds feed the planner's cost model of this shape.
    """
    from flowsweep.core import run_points  # imported on the worker: the driver never needs core to submit

    node_id = ray.get_runtime_context().get_node_id()
    t0 = time.perf_counter()
    try:
        results = run_points(configs)
    except Exception as e:  # an application error: the dispatcher splits the chunk to isolate it
        raise ChunkError(f"{type(e).__name__}: {e}", node_id) from None
    seconds = time.perf_counter() - t0
    if len(results) != len(configs):
        raise ChunkError(f"core.run_points returned {len(results)} results for {len(configs)} points", node_id)
    return results, node_id, seconds


@dataclass
class ChunkRows:
    """A chunk's results as columns, in input order, ready to become database rows: what the
    streaming scheduler's tasks return (cheap to ship and to turn into rows; the configs stay with
    the caller, which knows them). Metrics that do not apply or are non-finite are None."""

    statuses: list[PointStatus]  # one of FINISHED_POINT_STATUSES
    errors: list[str | None]
    wall_seconds: list[float]
    metrics: dict[str, list[float | int | None]]  # METRIC_FIELDS name -> one value per point
    blobs: list[bytes | None]  # curves, encoded by workers.codec
    curves_format: str

    def __len__(self) -> int:
        return len(self.statuses)


def _finite(values: list[Any]) -> list[Any]:
    """jsonsafe.finite_or_none of each value; None and finite floats (nearly all) pass inline, a
    column of None (a metric that does not apply to the chunk's shape) at once."""
    from flowsweep.jsonsafe import finite_or_none

    if values.count(None) == len(values):
        return list(values)
    return [v if v is None or (v.__class__ is float and v - v == 0.0) else finite_or_none(v) for v in values]


def _finished(status: str) -> PointStatus:
    return PointStatus(status) if status in FINISHED_POINT_STATUSES else PointStatus.FAILED


def to_rows(results: list[PointResult]) -> ChunkRows:
    """core PointResults -> ChunkRows (curves encoded here, on the worker)."""
    from flowsweep.core.types import METRIC_FIELDS
    from flowsweep.workers.codec import CURVES_FORMAT, encode_curves

    metrics = [r.metrics or {} for r in results]
    return ChunkRows(
        statuses=[_finished(r.status) for r in results],
        errors=[r.error for r in results],
        wall_seconds=[float(r.wall_seconds) for r in results],
        metrics={f: _finite([m.get(f) for m in metrics]) for f in METRIC_FIELDS},
        blobs=[None if r.curves is None else encode_curves(r.curves) for r in results],
        curves_format=CURVES_FORMAT,
    )


def columns_to_rows(cols: ResultColumns) -> ChunkRows:
    """core's results as columns (core.types.ResultColumns, from core.run_points_columns) ->
    ChunkRows: the same rows as to_rows of its PointResults, each block of curves encoded at once
    (workers.codec.encode_curve_rows) rather than point by point."""
    from flowsweep.core.types import METRIC_FIELDS
    from flowsweep.workers.codec import CURVES_FORMAT, encode_curve_rows

    n = len(cols.status)
    blobs: list[bytes | None] = [None] * n
    for block, points in zip(cols.blocks, cols.block_points):
        encoded = encode_curve_rows(
            block.t,
            block.error,
            block.error_linear,
            block.singular_values,
            block.n_records,
            block.error_regularized_fit,
            block.has_fit,
        )
        for i, blob in zip(points.tolist(), encoded):
            blobs[i] = blob
    none: list[Any] = [None] * n
    finished = {st: _finished(st) for st in set(cols.status)}  # a few distinct statuses
    return ChunkRows(
        statuses=[finished[st] for st in cols.status],
        errors=list(cols.error),
        wall_seconds=[float(w) for w in cols.wall_seconds],
        metrics={f: _finite(list(cols.metrics.get(f, none))) for f in METRIC_FIELDS},
        blobs=blobs,
        curves_format=CURVES_FORMAT,
    )


@ray.remote(num_cpus=1)
def run_chunk_rows(configs: list[PointConfig]) -> ChunkRowsResults:
    """As run_chunk, but the results come back as ChunkRows (columns, curves encoded here), from
    core's columnar entry point (run_points_columns: no object per point)."""
    from flowsweep import core

    node_id = ray.get_runtime_context().get_node_id()
    t0 = time.perf_counter()
    try:
        out = core.run_points_columns(configs)
    except Exception as e:
        raise ChunkError(f"{type(e).__name__}: {e}", node_id) from None
    rows = columns_to_rows(out)
    if len(rows) != len(configs):
        raise ChunkError(f"core.run_points returned {len(rows)} results for {len(configs)} points", node_id)
    return rows, node_id, time.perf_counter() - t0


@ray.remote(num_cpus=1)
def warm_up() -> tuple[str, int]:
    """Import core (numpy, scipy) and load its compiled kernels in a worker (core.warm_up), so the
    first real chunk does not pay for them. Returns (node id, worker pid)."""
    import os

    from flowsweep import core

    core.warm_up()
    return ray.get_runtime_context().get_node_id(), os.getpid()


def _rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class ExpressWorker:
    """The express lane of workers.dispatch.TaskStream: one warm process that holds no CPU of Ray's
    (num_cpus=0), so a short chunk of a sweep that just joined runs at once while other sweeps'
    chunks hold every CPU (the machine is oversubscribed by one process for that chunk's seconds).
    A sync actor runs one call at a time. Restarted (and warmed again) if its process or node dies;
    the call that was running then fails and its chunk goes back to the ordinary lane."""

    def __init__(self, fn: Any) -> None:
        from flowsweep import core

        self._fn = fn  # the chunk function of the ordinary lane (run_chunk_rows, or a test's)
        core.warm_up()

    @ray.method(max_task_retries=-1)  # asked while it restarts: answered once it is up again
    def ready(self) -> tuple[str, int, int]:
        """(node id, pid, resident bytes) once warm."""
        import os

        return ray.get_runtime_context().get_node_id(), os.getpid(), _rss_bytes()

    def run(self, configs: list[PointConfig]) -> Any:
        return self._fn(configs)
