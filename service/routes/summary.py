from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from .. import queries
from ..deps import ReadAuth, SessionDep
from .common import summary_response

router = APIRouter(tags=["results"], dependencies=[ReadAuth])


@router.get("/summary")
def summary_across_sweeps(session: SessionDep, q: Annotated[queries.SummaryQuery, Query()]):
    """A summary across sweeps: one row per group of `by` keys (e.g. `by=sweep_id,lambda0`) over the
    result rows that match the filters (e.g. `tag=table2`), with `count` and <metric>_mean/_std/_sem/
    _min/_max; the same statistics as GET /sweeps/{id}/summary."""
    try:
        rows = queries.summary(session, q, None)
    except queries.TooManyGroups as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    return summary_response(rows, q)
