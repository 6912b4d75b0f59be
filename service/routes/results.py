from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from .. import queries
from ..deps import ReadAuth, SessionDep
from .common import result_page

router = APIRouter(tags=["results"], dependencies=[ReadAuth])

FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
        "description": "`{data: [row...], count}` for json; a file for csv/parquet",
    }
}


@router.get("/results", responses=FILE_RESPONSES)
def list_results(request: Request, session: SessionDep, q: Annotated[queries.ResultQuery, Query()]):
    """Result rows across sweeps: equality filters on every parameter (repeat or comma-separate for
    several values), `<param>_min`/`<param>_max` ranges on numeric ones, `status`, `order_by`,
    `limit`/`offset` or keyset `after=<point_id>`, `format=json|csv|parquet`
    (files streamed). `count` is the number of matching rows."""
    return result_page(request, session, q, None, "results")
