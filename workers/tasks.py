"""The Ray remote task: one chunk of same-shape points through core's vectorised batch path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray

from flowsweep.status import FINISHED_POINT_STATUSES, PointStatus

if TYPE_CHECKING:
    from flowsweep.core.types import PointConfig, PointResult


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


def to_rows(results: list[PointResult]) -> ChunkRows:
    """core PointResults -> ChunkRows (curves encoded here, on the worker)."""
    from flowsweep.core.types import METRIC_FIELDS
    from flowsweep.jsonsafe import finite_or_none
    from flowsweep.workers.codec import CURVES_FORMAT, encode_curves

    return ChunkRows(
        statuses=[
            PointStatus(r.status) if r.status in FINISHED_POINT_STATUSES else PointStatus.FAILED for r in results
        ],
        errors=[r.error for r in results],
        wall_seconds=[float(r.wall_seconds) for r in results],
        metrics={f: [finite_or_none((r.metrics or {}).get(f)) for r in results] for f in METRIC_FIELDS},
        blobs=[None if r.curves is None else encode_curves(r.curves) for r in results],
        curves_format=CURVES_FORMAT,
    )


@ray.remote(num_cpus=1)
def run_chunk_rows(configs: list[PointConfig]) -> ChunkRowsResults:
    """As run_chunk, but the results come back as ChunkRows (columns, curves encoded here)."""
    from flowsweep.core import run_points

    node_id = ray.get_runtime_context().get_node_id()
    t0 = time.perf_counter()
    try:
        results = run_points(configs)
    except Exception as e:
        raise ChunkError(f"{type(e).__name__}: {e}", node_id) from None
    if len(results) != len(configs):
        raise ChunkError(f"core.run_points returned {len(results)} results for {len(configs)} points", node_id)
    rows = to_rows(results)
    return rows, node_id, time.perf_counter() - t0


@ray.remote(num_cpus=1)
def warm_up() -> tuple[str, int]:
    """Import core (numpy, scipy) in a worker so the first real chunk does not pay for it.
    Returns (node id, worker pid)."""
    import os

    from flowsweep import core  # noqa: F401

    return ray.get_runtime_context().get_node_id(), os.getpid()
