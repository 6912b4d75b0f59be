"""Helpers shared by the routers: id parameters, 404s, JSON-safe responses and result pages."""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import HTTPException, Path, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from flowsweep.jsonsafe import json_safe  # noqa: F401 (the routers' NaN -> null)

from .. import queries

# Ids are 32-bit integer columns: anything outside is simply not found, never a database error.
MAX_ID = 2**31 - 1
DbId = Annotated[int, Path(description="id (an integer)")]


def valid_id(ident: int) -> bool:
    return 1 <= ident <= MAX_ID

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def not_found(what: str, ident: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {ident} not found")


T = TypeVar("T")


def found_or_404(what: str, ident: int, lookup: Callable[[int], T | None]) -> T:
    """lookup(ident) for an id the database can hold; a 404 when out of range or not found."""
    found = lookup(ident) if valid_id(ident) else None
    if found is None:
        raise not_found(what, ident)
    return found


def result_page(session: Session, q: queries.ResultQuery, sweep_id: int | None, filename: str) -> Response:
    if q.format == "json":
        rows, count = queries.fetch_page(session, q, sweep_id)
        return JSONResponse({"data": rows, "count": count})
    rows = queries.fetch_rows(session, q, sweep_id)
    df = queries.rows_frame(rows)
    body = queries.to_csv(df) if q.format == "csv" else queries.to_parquet(df)
    return Response(body, media_type=MEDIA_TYPES[q.format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}.{q.format}"'})
