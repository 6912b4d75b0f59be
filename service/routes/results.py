from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from .. import queries
from ..deps import ReadAuth, SessionDep
from .common import result_page

router = APIRouter(tags=["results"], dependencies=[ReadAuth])

FILE_RESPONSES = {200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                        "description": "`{data: [row...], count}` for json; a file for csv/parquet"}}


@router.get("/results", responses=FILE_RESPONSES)
def list_results(session: SessionDep, q: Annotated[queries.ResultQuery, Query()]):
    """Result rows across sweeps: equality filters on every parameter (repeat or comma-separate for
    several values), `<param>_min`/`<param>_max` ranges on numeric ones, `status`, `order_by`,
    `limit`/`offset`, `format=json|csv|parquet`. `count` is the number of matching rows."""
    return result_page(session, q, None, "results")
