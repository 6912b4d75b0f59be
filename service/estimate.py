"""A rough cost estimate of a sweep before it is submitted (`POST /sweeps?dry_run=true`).

Per gd step a point does about 6·m·n·k flops (X = UVᵀ, E·V, Eᵀ·U; for sigmoid the N×d inputs add
6·N·d·k); batched numpy reaches ~5 GFLOP/s per core here (Fig. 1's point, m=5, n=10, k=50, 4000 steps:
~6 ms of CPU in the service). `flow` takes adaptive steps: counted as 3 gd steps per record step.
It is an order of magnitude, stated as such in the dashboard, not a budget.
"""

from __future__ import annotations

from typing import Any

from flowsweep.core.types import PointConfig

FLOPS_PER_SECOND = 5e9
SECONDS_PER_POINT = 2e-4  # per-point set-up: data, fits, metrics, writing the row
BYTES_PER_RECORD = 8 * 3  # t, error, error_linear (+ singular values, counted below)


def point_seconds(p: PointConfig) -> float:
    flops = 6.0 * p.m * p.n * p.k
    if p.model == "sigmoid":
        flops += 6.0 * p.n_samples * p.n * p.k
    steps = p.steps if p.integrator == "gd" else 3 * p.steps
    return SECONDS_PER_POINT + steps * flops / FLOPS_PER_SECOND


def estimate(points: list[PointConfig], n_new: int, cpus: int) -> dict[str, Any]:
    """CPU seconds of the points still to run (the first n_new of those not reused are counted at
    the average cost), the wall time on `cpus` CPUs, and the curve storage."""
    if not points:
        return {"cpu_seconds": 0.0, "wall_seconds": 0.0, "cpus": cpus, "curve_bytes": 0}
    per_point = sum(point_seconds(p) for p in points) / len(points)
    cpu = per_point * n_new
    records = sum(p.steps // p.record_every + 1 for p in points) / len(points)
    per_record = BYTES_PER_RECORD + 8 * min(points[0].m, points[0].n)
    return {
        "cpu_seconds": cpu,
        "wall_seconds": cpu / max(cpus, 1),
        "cpus": cpus,
        "curve_bytes": int(n_new * records * per_record),
    }
