"""Batched integrators of the two-layer models and the sigmoid one-layer baseline.

One entry point, `integrate(problem, method, ...)`, one method per module (as scipy's
integrate/_ivp): `gd_linear` (gradient descent of U V^T and U U^T), `gd_sigmoid` (gradient descent
of the sigmoid model and its baseline), `flow` (the exact flow, DOP853); `base` holds what they share.

All arrays carry the batch as their leading dimension. Factors are simulated in reduced
coordinates (U~ = U B, V~ = V B with B an orthonormal basis of the row space of [U0; V0]): the rows
of U(t), V(t) never leave that space under gd or the flow, so U V^T, ||Q(t) - Q0|| and the singular
values are unchanged while the cost no longer depends on k.
"""

from __future__ import annotations

from collections.abc import Callable

from ..types import FloatArray
from .base import DIVERGENCE_ERROR, FlowDiverged, Problem, Trajectory, record_grid, reduce_factors  # noqa: F401
from .flow import FLOW_ATOL, FLOW_RTOL, run_flow  # noqa: F401
from .gd_linear import FREEZE_ERROR, FREEZE_STEPS, run_gd_linear  # noqa: F401
from .gd_sigmoid import run_gd_sigmoid


def run_gd(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
    """Explicit Euler (the paper's gradient descent), all points of the batch at once.

    A point whose error becomes non-finite (or absurdly large) is frozen at zero and keeps the
    iteration where it happened; the others continue untouched. A linear-model point that has
    converged to machine precision (FREEZE_ERROR) stops being iterated; `iterations` says how
    many steps each point computed.
    """
    if p.model == "sigmoid":
        return run_gd_sigmoid(p, eta, steps, record_every, tol)
    return run_gd_linear(p, eta, steps, record_every, tol)


# (problem, eta, steps, record_every, tol) -> trajectory
Method = Callable[[Problem, float, int, int, float | FloatArray], Trajectory]
METHODS: dict[str, Method] = {"gd": run_gd, "flow": run_flow}


def integrate(
    p: Problem, method: str, eta: float, steps: int, record_every: int, tol: float | FloatArray
) -> Trajectory:
    """The trajectory of every point of `p` on the grid t = eta * i, i = 0, record_every, ... <= steps;
    `method` is a point's `integrator` ("gd" or "flow")."""
    try:
        runner = METHODS[method]
    except KeyError:
        raise ValueError(f"method: must be one of {sorted(METHODS)}, got {method!r}") from None
    return runner(p, eta, steps, record_every, tol)


__all__ = [
    "DIVERGENCE_ERROR",
    "FLOW_RTOL",
    "FREEZE_ERROR",
    "METHODS",
    "FlowDiverged",
    "Problem",
    "Trajectory",
    "integrate",
    "record_grid",
    "reduce_factors",
    "run_flow",
    "run_gd",
]
