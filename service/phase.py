"""Table 2 as a phase diagram over (σ, λ₀) (`GET /sweeps/{id}/phase`): the cells that
`service.plots.phase_figure` draws, computed by `service.aggregate.phase_cells` on the server.

σ = σ_min(Y): data_scale · min(y_singular_values) where the point fixes Y's spectrum, else the smallest
singular value of the point's own Y (recomputed by core from its parameters, as GET /points/{id}/state).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from . import queries
from .aggregate import phase_boundary, phase_cells
from .models import Point

METRIC = "rate_fit"
REFERENCE = 1.0  # the one-layer model's rate (eq. (4): e(t) ∝ e^{−t})


def sigma_min(point: Point) -> tuple[float, str]:
    """(σ_min(Y), where it came from: "spectrum" or "Y")."""
    if point.y_singular_values:
        return point.data_scale * min(point.y_singular_values), "spectrum"
    from flowsweep import core

    Y = np.asarray(core.initial_state(point.config())["Y"], dtype=float)
    return float(np.linalg.svd(Y, compute_uv=False).min()), "Y"


def _data_key(point: Point) -> tuple[Any, ...]:
    """What determines a point's Y (SPEC §2): its shape, data draw, spectrum and scale."""
    draw = point.seed if point.data_seed is None else ("data", point.data_seed)
    sv = None if point.y_singular_values is None else tuple(point.y_singular_values)
    return (point.model, point.m, point.n, point.n_samples, draw, sv, point.data_scale)


def sweep_phase(session: Session, sweep_id: int) -> dict[str, Any]:
    """{"metric", "reference", "sigma_source", "cells": [{"sigma_min", "lambda0", "median", "n",
    "points", "above"}], "boundary": {"sigma_min", "lambda0"}} over the sweep's done points."""
    rows = queries.done_points_with_metric(session, sweep_id, METRIC)
    sigmas, sources = [], set()
    seen: dict[tuple[Any, ...], tuple[float, str]] = {}  # points that draw the same Y (e.g. a data_seed)
    for point, _ in rows:
        key = _data_key(point)
        if key not in seen:
            seen[key] = sigma_min(point)
        s, src = seen[key]
        sigmas.append(s)
        sources.add(src)
    cells = phase_cells(sigmas, [p.lambda0 for p, _ in rows], [v for _, v in rows], REFERENCE)
    ss, bound = phase_boundary(max((c["sigma_min"] for c in cells), default=0.5) * 1.05)
    return {
        "metric": METRIC,
        "reference": REFERENCE,
        "sigma_source": "+".join(sorted(sources)) or None,
        "cells": [
            {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in c.items()} for c in cells
        ],
        "boundary": {"sigma_min": ss.tolist(), "lambda0": bound.tolist()},
    }
