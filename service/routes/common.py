"""Helpers shared by the routers: id parameters, 404s, JSON-safe responses and result pages."""
from __future__ import annotations

import math
from typing import Annotated, Any, Callable, Iterator, TypeVar

from fastapi import HTTPException, Path, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
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


def result_page(request: Request, session: Session, q: "queries.ResultQuery", sweep_id: int | None,
                filename: str) -> Response:
    """A JSON page, or the whole CSV/Parquet file streamed from its own read session (bounded memory:
    one chunk of rows at a time)."""
    if q.format == "json":
        rows, count = queries.fetch_page(session, q, sweep_id)
        return JSONResponse({"data": rows, "count": count})
    factory = request.app.state.read_session_factory

    def body() -> Iterator[bytes]:
        with factory() as s:
            yield from queries.stream_file(queries.iter_row_chunks(s, q, sweep_id), q.format)

    return StreamingResponse(body(), media_type=MEDIA_TYPES[q.format],
                             headers={"Content-Disposition": f'attachment; filename="{filename}.{q.format}"'})
