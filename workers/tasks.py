"""The Ray remote task: one chunk of same-shape points through core's vectorised batch path."""
from __future__ import annotations

import time

import ray


class ChunkError(Exception):
    """core raised while running a chunk (it should not); carries the node id for the report."""

    def __init__(self, message: str, node_id: str):
        super().__init__(message)
        self.message = message
        self.node_id = node_id

    def __reduce__(self):  # keep both fields through pickling
        return (ChunkError, (self.message, self.node_id))


@ray.remote(num_cpus=1)
def run_chunk(configs: list) -> tuple[list, str, float]:
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
        raise ChunkError(f"core.run_points returned {len(results)} results for {len(configs)} points",
                         node_id)
    return results, node_id, seconds


@ray.remote(num_cpus=1)
def warm_up() -> tuple[str, int]:
    """Import core (numpy, scipy) in a worker so the first real chunk does not pay for it.
    Returns (node id, worker pid)."""
    import os

    from flowsweep import core  # noqa: F401

    return ray.get_runtime_context().get_node_id(), os.getpid()
