"""Helpers shared by the routers: id parameters, 404s, JSON-safe responses and result pages."""
from __future__ import annotations

import math
from typing import Annotated, Any, Callable, TypeVar

from fastapi import HTTPException, Path, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

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


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None anywhere in a JSON-able structure (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def result_page(session: Session, q: "queries.ResultQuery", sweep_id: int | None, filename: str) -> Response:
    if q.format == "json":
        rows, count = queries.fetch_page(session, q, sweep_id)
        return JSONResponse({"data": rows, "count": count})
    rows = queries.fetch_rows(session, q, sweep_id)
    df = queries.rows_frame(rows)
    body = queries.to_csv(df) if q.format == "csv" else queries.to_parquet(df)
    return Response(body, media_type=MEDIA_TYPES[q.format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}.{q.format}"'})
