"""Result-row queries (SPEC §4): filters, ranges, order, pagination, json/csv/parquet, summaries.

A result row is a point's parameters joined with its `results` row (one per finished point); the
fields are exactly `schemas.RESULT_FIELDS`. Every query parameter is validated by `ResultQuery`
(unknown parameters, unknown `order_by` fields and non-finite numbers are 422s naming the parameter).
"""
from __future__ import annotations

import io
import math
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from flowsweep.core.types import INITS, INTEGRATORS, METRIC_FIELDS, MODELS

from .models import PARAM_FIELDS, Curve, Point, Result
from .schemas import RESULT_FIELDS

RESULT_STATUSES = ("done", "failed", "diverged")
FORMATS = ("json", "csv", "parquet")
DEFAULT_JSON_LIMIT = 1000
MAX_JSON_LIMIT = 100_000

# Parameters a result row can be filtered on: every PointConfig field, plus the ids.
_INT_PARAMS = ("m", "n", "k", "seed", "steps", "record_every", "data_seed", "n_samples")
_FLOAT_PARAMS = ("init_scale", "lambda0", "eta", "tol")
# Integer columns are 32-bit (SQLAlchemy binds them as INTEGER): larger values are a 422, not a DB error.
Int32 = Annotated[int, Field(ge=-2**31, le=2**31 - 1)]
_PARAM_TYPES: dict[str, Any] = {
    "sweep_id": Int32, "point_id": Int32,
    "model": Literal[MODELS], "init": Literal[INITS], "integrator": Literal[INTEGRATORS],  # type: ignore
    **{p: Int32 for p in _INT_PARAMS}, **{p: float for p in _FLOAT_PARAMS}, "fit_lambda0": bool,
}
NUMERIC_PARAMS = ("sweep_id", "point_id") + _INT_PARAMS + _FLOAT_PARAMS
GROUP_KEYS = tuple(PARAM_FIELDS) + ("status", "sweep_id")
NUMERIC_METRICS = tuple(METRIC_FIELDS) + ("wall_seconds",)
DEFAULT_SUMMARY_BY = ("init_scale", "k", "lambda0")


def _column(name: str):
    """The SQL column behind a result field or filter parameter. Parameters, ids and the status are
    read from `points` (a finished point's status is its result's: the runner writes both in one
    transaction), so filters and counts need no join; metrics come from `results`."""
    if name == "point_id":
        return Point.id
    if name in ("wall_seconds", "worker") or name in METRIC_FIELDS:
        return getattr(Result, name)
    return getattr(Point, name)


ROW_COLUMNS = [_column(f).label(f) for f in RESULT_FIELDS]
ORDERABLE = tuple(dict.fromkeys(RESULT_FIELDS + tuple(PARAM_FIELDS)))


def _split_commas(v: Any) -> Any:
    """`?k=50,100` and `?k=50&k=100` both mean k in (50, 100)."""
    if isinstance(v, str):
        v = [v]
    if isinstance(v, list):
        out: list = []
        for item in v:
            if isinstance(item, str):
                out.extend(item.split(","))
            else:
                out.append(item)
        return out
    return v


class _QueryBase(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    status: list[Literal[RESULT_STATUSES]] | None = Field(  # type: ignore[valid-type]
        None, description="result status: done, failed, diverged")
    order_by: str | None = Field(None, description="result fields, comma separated; '-' in front for "
                                                   "descending (e.g. '-speedup,seed')")
    limit: int | None = Field(None, ge=1, le=2**31 - 1, description=f"page size (json: default {DEFAULT_JSON_LIMIT}, "
                                                       f"max {MAX_JSON_LIMIT}; csv/parquet: all rows)")
    offset: int = Field(0, ge=0, le=2**31 - 1)
    format: Literal[FORMATS] = "json"  # type: ignore[valid-type]

    @field_validator("order_by")
    @classmethod
    def _check_order(cls, v: str | None) -> str | None:
        if v is None:
            return v
        for key in v.split(","):
            name = key.strip().removeprefix("-")
            if name not in ORDERABLE:
                raise PydanticCustomError("value_error", "unknown field '{field}'; order by one of: {fields}",
                                          {"field": name, "fields": ", ".join(ORDERABLE)})
        return v

    def filters(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"status", "order_by", "limit", "offset", "format",
                                                          "by"}).items() if v is not None}


def _make_query_model() -> type[_QueryBase]:
    fields: dict[str, Any] = {}
    for name, typ in _PARAM_TYPES.items():
        fields[name] = (list[typ] | None, Field(None, description=f"{name} equals (repeat or comma-separate "  # type: ignore
                                                                   "for several values)"))
        if name in NUMERIC_PARAMS:
            fields[f"{name}_min"] = (typ | None, Field(None, description=f"{name} >= this"))
            fields[f"{name}_max"] = (typ | None, Field(None, description=f"{name} <= this"))
    validators = {"split_commas": field_validator(*_PARAM_TYPES, "status", mode="before")(
        lambda cls, v: _split_commas(v))}
    return create_model("ResultQuery", __base__=_QueryBase, __validators__=validators, **fields)


ResultQuery = _make_query_model()


class SummaryQuery(ResultQuery):  # type: ignore[misc, valid-type]
    by: str | None = Field(None, description="group keys, comma separated (default "
                                             f"{','.join(DEFAULT_SUMMARY_BY)})")

    @field_validator("by")
    @classmethod
    def _check_by(cls, v: str | None) -> str | None:
        if v is None:
            return v
        keys = [k.strip() for k in v.split(",")]
        for k in keys:
            if k not in GROUP_KEYS:
                raise PydanticCustomError("value_error", "unknown key '{key}'; group by any of: {keys}",
                                          {"key": k, "keys": ", ".join(GROUP_KEYS)})
        if len(set(keys)) != len(keys):
            raise PydanticCustomError("value_error", "a key appears twice")
        return ",".join(keys)

    def group_keys(self) -> list[str]:
        return self.by.split(",") if self.by else list(DEFAULT_SUMMARY_BY)


# ----------------------------------------------------------------------------- building queries

def _where(q: ResultQuery, sweep_id: int | None) -> list:
    """SQL conditions of a query, all on `points`."""
    conds: list = []
    if sweep_id is not None:
        conds.append(Point.sweep_id == sweep_id)
    # Only finished points have a result row.
    conds.append(Point.status.in_(q.status or RESULT_STATUSES))
    for key, value in q.filters().items():
        if key.endswith("_min") or key.endswith("_max"):
            col = _column(key[:-4])
            conds.append(col >= value if key.endswith("_min") else col <= value)
        else:
            col = _column(key)
            conds.append(col == value[0] if len(value) == 1 else col.in_(value))
    return conds


def _order_columns(q: ResultQuery) -> list:
    cols = [_column(key.strip().removeprefix("-")) for key in (q.order_by or "").split(",") if key.strip()]
    return cols + [Point.id]


def _order(q: ResultQuery) -> list:
    out = []
    if q.order_by:
        for key in q.order_by.split(","):
            key = key.strip()
            col = _column(key.removeprefix("-"))
            # Nulls (metrics that do not apply) last either way, identically on SQLite and Postgres.
            out.append((col.desc() if key.startswith("-") else col.asc()).nulls_last())
    out.append(Point.id.asc())  # a total order: stable pages
    return out


def _joined(stmt: Select) -> Select:
    return stmt.select_from(Point).join(Result, Result.point_id == Point.id)


def count_rows(session: Session, q: ResultQuery, sweep_id: int | None = None) -> int:
    """Matching result rows, counted on `points` alone (an index-only scan with the covering indexes)."""
    conds = _where(q, sweep_id)
    return int(session.connection().execute(select(func.count()).select_from(Point).where(*conds)).scalar_one())


def _limit(q: ResultQuery) -> int | None:
    if q.format == "json":
        return min(q.limit or DEFAULT_JSON_LIMIT, MAX_JSON_LIMIT)
    return q.limit


def fetch_rows(session: Session, q: ResultQuery, sweep_id: int | None = None) -> list[dict]:
    return fetch_page(session, q, sweep_id, with_count=False)[0]


def fetch_page(session: Session, q: ResultQuery, sweep_id: int | None = None,
               with_count: bool = True) -> tuple[list[dict], int | None]:
    """One page of result rows and, with_count, the number of all matching rows.

    Two statements: the page (a top-N of point ids from `points`, then the join to `results` for
    those rows only) and the count (an index-only scan of `points`). A `count(*) OVER ()` on the page
    query was measured slower for large matches: it defeats the top-N sort."""
    conds = _where(q, sweep_id)
    order = _order(q)
    limit = _limit(q)
    if all(c.table is Point.__table__ for c in _order_columns(q)):
        # Ordered by parameters: pick the page's point ids from `points` alone (an index-only scan
        # and a top-N sort of integers), then join only those rows to `results` for their metrics.
        page = select(Point.id).where(*conds).order_by(*order).offset(q.offset)
        if limit is not None:
            page = page.limit(limit)
        page_ids = page.subquery()
        stmt = _joined(select(*ROW_COLUMNS)).join(page_ids, page_ids.c.id == Point.id).order_by(*order)
    else:
        stmt = _joined(select(*ROW_COLUMNS)).where(*conds).order_by(*order).offset(q.offset)
        if limit is not None:
            stmt = stmt.limit(limit)
    result = session.connection().execute(stmt)  # Core rows: no ORM overhead on the hot path
    rows = clean_rows(list(result.keys()), result.fetchall())
    count = None
    if with_count:
        count = len(rows) if q.offset == 0 and (limit is None or len(rows) < limit) \
            else count_rows(session, q, sweep_id)
    return rows, count


def clean_rows(keys: list[str], rows) -> list[dict]:  # noqa: ANN001
    """Rows as dicts, JSON-safe: non-finite floats (never stored, but never trusted) become None."""
    out = [dict(zip(keys, r)) for r in rows]
    for d in out:
        for k, v in d.items():
            if v.__class__ is float and not math.isfinite(v):
                d[k] = None
    return out


def clean_row(mapping) -> dict:  # noqa: ANN001
    return clean_rows(list(mapping.keys()), [tuple(mapping.values())])[0]


# ----------------------------------------------------------------------------- frames and files

_INT_FIELDS = {"point_id", "sweep_id", "m", "n", "k", "seed", "steps", "diverged_at", "record_every",
               "data_seed", "n_samples"}
_FLOAT_FIELDS = set(_FLOAT_PARAMS) | set(NUMERIC_METRICS) - {"diverged_at"}


def rows_frame(rows: list[dict], columns: tuple[str, ...] = RESULT_FIELDS) -> pd.DataFrame:
    """Typed frame: floats as float64 (null -> NaN), ints as nullable Int64, text as str."""
    df = pd.DataFrame.from_records(rows, columns=list(columns))
    for c in df.columns:
        if c in _FLOAT_FIELDS:
            df[c] = df[c].astype("float64")
        elif c in _INT_FIELDS:
            df[c] = df[c].astype("Int64")
        elif c == "fit_lambda0":
            df[c] = df[c].astype("boolean")
        else:
            df[c] = df[c].astype("str")  # pandas 3: missing stays missing
    return df


def to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def to_parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


# ----------------------------------------------------------------------------- summary

def summary(session: Session, q: SummaryQuery, sweep_id: int | None = None) -> list[dict]:
    """One row per group: the keys, `count` (rows in the group) and, for every numeric metric,
    <metric>_mean, _std (ddof 1), _sem (std / sqrt(non-null count)), _min, _max over the group;
    null where a statistic is undefined (no value, or one value for std/sem)."""
    keys = q.group_keys()
    conds = _where(q, sweep_id)
    cols = [_column(k).label(k) for k in keys] + [_column(m).label(m) for m in NUMERIC_METRICS]
    data = session.execute(_joined(select(*cols)).where(*conds)).all()
    df = pd.DataFrame.from_records(data, columns=keys + list(NUMERIC_METRICS))
    if df.empty:
        return []
    metrics = list(NUMERIC_METRICS)
    df[metrics] = df[metrics].astype("float64")
    g = df.groupby(keys, sort=True, dropna=False)
    size = g.size()
    mean, std, mn, mx, n = (g[metrics].mean(), g[metrics].std(ddof=1), g[metrics].min(), g[metrics].max(),
                            g[metrics].count())
    sem = std / np.sqrt(n.where(n > 0))
    out = pd.DataFrame(index=size.index)
    out["count"] = size
    for m in metrics:
        out[f"{m}_mean"] = mean[m]
        out[f"{m}_std"] = std[m]
        out[f"{m}_sem"] = sem[m]
        out[f"{m}_min"] = mn[m]
        out[f"{m}_max"] = mx[m]
    out = out.reset_index()
    records = out.astype(object).where(out.notna(), None).to_dict(orient="records")
    return [_json_scalar_row(r) for r in records]


def _json_scalar_row(r: dict) -> dict:
    out = {}
    for k, v in r.items():
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating, float)):
            v = float(v) if math.isfinite(v) else None
        elif isinstance(v, np.bool_):
            v = bool(v)
        out[k] = v
    return out


# ----------------------------------------------------------------------------- points

POINT_EXTRA_FIELDS = ("error", "cached", "source_point_id", "record_every", "tol", "data_seed", "fit_lambda0",
                      "n_samples", "attempts")


def point_row(session: Session, point_id: int) -> dict | None:
    """A point as a result row (status from the point, metrics null until it has a result), plus the
    remaining PointConfig fields, `error`, `cached`, `source_point_id` and `attempts`."""
    cols = [Point.id.label("point_id"), Point.sweep_id.label("sweep_id"), Point.status.label("status")]
    cols += [_column(f).label(f) for f in RESULT_FIELDS if f not in ("point_id", "sweep_id", "status")]
    cols += [Result.error.label("error")] + [getattr(Point, f).label(f) for f in POINT_EXTRA_FIELDS[1:]]
    stmt = select(*cols).select_from(Point).outerjoin(Result, Result.point_id == Point.id).where(
        Point.id == point_id)
    r = session.execute(stmt).first()
    return None if r is None else clean_row(r._mapping)


def curves_of(session: Session, point: Point) -> Curve | None:
    """A point's curves row; a cached point reads its source's."""
    own = session.get(Curve, point.id)
    if own is not None or point.source_point_id is None:
        return own
    return session.get(Curve, point.source_point_id)


def decode_curves(curve: Curve) -> dict:
    """The blob (workers.codec) -> SPEC §4's curves object, non-finite values (a diverged run) as null."""
    from flowsweep.workers.codec import decode_curves as decode

    return {name: None if a is None else _json_array(a) for name, a in decode(curve.blob, curve.format).items()}


def _json_array(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    if np.all(np.isfinite(a)):
        return a.tolist()
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def json_array(a: Any) -> Any:
    return _json_array(np.asarray(a))
