from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from flowsweep.status import PointStatus

from .. import queries
from ..deps import ReadAuth, SessionDep
from ..models import Point
from .common import DbId, found_or_404, json_safe

router = APIRouter(prefix="/points", tags=["points"], dependencies=[ReadAuth])


def _get_point(session: Session, point_id: int) -> Point:
    """The point, or 404."""
    return found_or_404("point", point_id, lambda i: session.get(Point, i))


@router.get("/{point_id}")
def get_point(point_id: DbId, session: SessionDep) -> dict[str, Any]:
    """One result row (metrics null until the point has a result), plus the point's remaining
    parameters, `error` (for a failed point), `cached`, `source_point_id` and `attempts`."""
    return found_or_404("point", point_id, lambda i: queries.point_row(session, i))


@router.get("/{point_id}/curves")
def get_curves(point_id: DbId, session: SessionDep) -> dict[str, Any]:
    """The recorded trajectories on t = eta·i: `t`, `error`, `error_linear`, `singular_values`
    (one list per record time), `error_regularized_fit` (null unless λ₀ was fitted); non-finite
    values of a diverged run are null. A cached point serves its source's curves."""
    point = _get_point(session, point_id)
    curve = queries.curves_of(session, point)
    if curve is None:
        why = ": its run failed" if point.status == PointStatus.FAILED else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"point {point_id} has no curves (status {point.status}{why})")
    return queries.decode_curves(curve)


def _state_arrays(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict):
        state = {k: getattr(state, k) for k in ("Y", "U0", "V0", "A", "W0") if getattr(state, k, None) is not None}
    return {k: queries.json_array(v) for k, v in state.items() if v is not None}


@router.get("/{point_id}/state")
async def get_state(point_id: DbId, session: SessionDep) -> dict[str, Any]:
    """The exact initial state of the point, recomputed by core from its parameters:
    `Y`, `U0`, `V0` (and `A`, `W0` for sigmoid) as nested lists."""
    point = _get_point(session, point_id)
    config = point.config()

    def compute() -> dict[str, Any]:
        from flowsweep import core

        return _state_arrays(core.initial_state(config))

    return json_safe(await run_in_threadpool(compute))
