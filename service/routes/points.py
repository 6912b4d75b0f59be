from __future__ import annotations

import io
import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from sqlalchemy.orm import Session

from flowsweep.status import PointStatus

from .. import queries
from ..deps import ReadAuth, SessionDep, SettingsDep
from ..models import Point
from .common import DbId, found_or_404, json_response

router = APIRouter(prefix="/points", tags=["points"], dependencies=[ReadAuth])


def _get_point(session: Session, point_id: int) -> Point:
    """The point, or 404."""
    return found_or_404("point", point_id, lambda i: session.get(Point, i))


@router.get("/{point_id}")
def get_point(point_id: DbId, session: SessionDep) -> dict[str, Any]:
    """One result row (metrics null until the point has a result), plus the point's remaining
    parameters, `error` (for a failed point), `cached`, `source_point_id` and `attempts`."""
    return found_or_404("point", point_id, lambda i: queries.point_row(session, i))


@router.get("/{point_id}/curves", response_model=dict[str, Any])
def get_curves(point_id: DbId, session: SessionDep) -> Response:
    """The recorded trajectories on t = eta·i: `t`, `error`, `error_linear`, `singular_values`
    (one list per record time), `error_regularized_fit` (null unless λ₀ was fitted); non-finite
    values of a diverged run are null. A cached point serves its source's curves."""
    point = _get_point(session, point_id)
    curve = queries.curves_of(session, point)
    if curve is None:
        why = ": its run failed" if point.status == PointStatus.FAILED else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"point {point_id} has no curves (status {point.status}{why})")
    return json_response(queries.decode_curves(curve))


def _state_arrays(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict):
        state = {k: getattr(state, k) for k in ("Y", "U0", "V0", "A", "W0") if getattr(state, k, None) is not None}
    return {k: v for k, v in state.items() if v is not None}


# A float written as JSON (shortest repr, separator) takes up to ~24 bytes; in .npz, 8.
JSON_BYTES_PER_FLOAT = 24
STATE_FORMATS = ("json", "npz")


def state_elements(config: Any) -> int:
    """Floats in a point's initial state: Y (m×n), U0 (m×k), V0 (n×k; U0 again for symmetric), and for
    sigmoid A (N×d) and W0 (d×d)."""
    m, n, k = config.m, config.n, config.k
    count = m * n + (m + n) * k
    if config.model == "sigmoid":
        count += config.n_samples * m + m * n
    return count


@router.get(
    "/{point_id}/state",
    responses={
        200: {"content": {"application/x-npz": {}}, "description": "json: nested lists; npz: a NumPy .npz archive"}
    },
)
def get_state(
    point_id: DbId,
    session: SessionDep,
    settings: SettingsDep,
    format: Annotated[Literal[STATE_FORMATS], Query(description="json (nested lists) or npz")] = "json",  # type: ignore[valid-type]  # noqa: A002
):
    """The exact initial state of the point, recomputed by core from its parameters:
    `Y`, `U0`, `V0` (and `A`, `W0` for sigmoid) as nested lists, or as arrays of one `.npz` file
    (`format=npz`, about a third of the JSON's size and exact). Answers larger than
    FLOWSWEEP_MAX_ANSWER_BYTES are a 413 stating the size. Computed and encoded in a worker thread."""
    point = _get_point(session, point_id)
    config = point.config()
    per_float = JSON_BYTES_PER_FLOAT if format == "json" else 8
    size = state_elements(config) * per_float
    if size > settings.max_answer_bytes:
        hint = f"; format=npz would be about {state_elements(config) * 8:,} bytes" if format == "json" else ""
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the state of point {point_id} is about {size:,} bytes as {format}; the limit is "
            f"{settings.max_answer_bytes:,} (FLOWSWEEP_MAX_ANSWER_BYTES){hint}",
        )
    from flowsweep import core

    arrays = _state_arrays(core.initial_state(config))
    if format == "npz":
        buf = io.BytesIO()
        # numpy's stub lets **kwds fill savez's allow_pickle: bool, so mypy rejects a dict of arrays
        np.savez(buf, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})  # type: ignore[arg-type]
        return Response(
            buf.getvalue(),
            media_type="application/x-npz",
            headers={"Content-Disposition": f'attachment; filename="point-{point_id}-state.npz"'},
        )
    body = json.dumps({k: queries.json_array(v) for k, v in arrays.items()}, allow_nan=False).encode()
    return Response(body, media_type="application/json")
