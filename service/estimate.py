"""The cost of a sweep before it is submitted (`POST /sweeps?dry_run=true`, the dashboard's submit
page): core.cost's per-point estimates, the same ones the service's budget holds sweeps to, summed
over the points still to run. They are on the high side by design (core/cost.py)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from flowsweep.core.cost import point_cost
from flowsweep.core.types import PointConfig

BYTES_PER_RECORD = 8 * 3  # t, error, error_linear (+ singular values, counted below)


def estimate(points: list[PointConfig], n_new: int, cpus: int) -> dict[str, Any]:
    """CPU seconds of the points still to run (n_new of them, at the sweep's mean cost per point),
    the wall time on `cpus` CPUs, the peak memory of one point and the curve storage."""
    if not points:
        return {"cpu_seconds": 0.0, "wall_seconds": 0.0, "cpus": cpus, "peak_bytes_per_point": 0, "curve_bytes": 0}
    # the seed changes no cost: one estimate per distinct configuration
    counts = Counter(dataclasses.replace(p, seed=0) for p in points)
    costs = {c: point_cost(c) for c in counts}
    per_point = sum(costs[c].cpu_seconds * n for c, n in counts.items()) / len(points)
    cpu = per_point * n_new
    records = sum(p.steps // p.record_every + 1 for p in points) / len(points)
    per_record = BYTES_PER_RECORD + 8 * min(points[0].m, points[0].n)
    return {
        "cpu_seconds": cpu,
        "wall_seconds": cpu / max(cpus, 1),
        "cpus": cpus,
        "peak_bytes_per_point": int(max(c.peak_bytes for c in costs.values())),
        "curve_bytes": int(n_new * records * per_record),
    }
