"""Result-row queries (SPEC §4): filters, ranges, order, pagination, json/csv/parquet, summaries.

A result row is a point's parameters joined with its `results` row (one per finished point); the
fields are exactly `schemas.RESULT_FIELDS`. Every query parameter is validated by `ResultQuery`
(unknown parameters, unknown `order_by` fields and non-finite numbers are 422s naming the parameter).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Double, Select, and_, case, cast, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Label

from flowsweep.core.types import FLOAT_PARAMS, INITS, INT_PARAMS, INTEGRATORS, METRIC_FIELDS, MODELS
from flowsweep.jsonsafe import finite_or_none, frame_records, json_safe
from flowsweep.status import FINISHED_POINT_STATUSES, PointStatus

# SQLite keeps no statistics here (the service never runs ANALYZE), so for `steps=4000&seed=7` it
# takes the single-column index on `steps` - every row of a sweep - over the covering index on `seed`
# (bench/query_latency.py at 1M rows: 232 ms against 16 ms): such columns are _Unindexed. ANALYZE
# would not help: its per-index averages make `m=6` (no row) look like every row, and that query
# would scan the table.
from .db import Unindexed as _Unindexed
from .models import (
    CELL_PARAMS,
    CELL_STATS,
    COVERING_INDEXES,
    LIST_PARAM_FIELDS,
    PARAM_FIELDS,
    SUMMARY_METRICS,
    Curve,
    Point,
    Result,
    SummaryCell,
    SweepTag,
)
from .schemas import NAME_PATTERN, RESULT_FIELDS
from .summary_cells import sql_per, sql_square

RESULT_STATUSES = tuple(s.value for s in FINISHED_POINT_STATUSES)  # a result row's status
FORMATS = ("json", "csv", "parquet")
DEFAULT_JSON_LIMIT = 1000
MAX_JSON_LIMIT = 100_000

# Parameters a result row can be filtered on: every PointConfig field, plus the ids.
_INT_PARAMS = INT_PARAMS
_FLOAT_PARAMS = FLOAT_PARAMS
# Integer columns are 32-bit (SQLAlchemy binds them as INTEGER): larger values are a 422, not a DB error.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
_PARAM_TYPES: dict[str, Any] = {
    "sweep_id": Int32,
    "point_id": Int32,
    "model": Literal[MODELS],
    "init": Literal[INITS],
    "integrator": Literal[INTEGRATORS],
    **{p: Int32 for p in _INT_PARAMS},
    **{p: float for p in _FLOAT_PARAMS},
    "fit_lambda0": bool,
}
NUMERIC_PARAMS = ("sweep_id", "point_id") + _INT_PARAMS + _FLOAT_PARAMS
_SCALAR_PARAMS = tuple(f for f in PARAM_FIELDS if f not in LIST_PARAM_FIELDS)
GROUP_KEYS = _SCALAR_PARAMS + ("status", "sweep_id")
NUMERIC_METRICS = SUMMARY_METRICS
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
ORDERABLE = tuple(dict.fromkeys(RESULT_FIELDS + _SCALAR_PARAMS))


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


ORDER_KEYS = tuple(f"{sign}{f}" for f in ORDERABLE for sign in ("", "-"))


class _FilterBase(BaseModel):
    """Filters shared by result pages and summaries: `status` and the parameter filters."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    status: list[Literal[RESULT_STATUSES]] | None = Field(  # type: ignore[valid-type]
        None, description="result status: done, failed, diverged"
    )
    tag: list[Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]] | None = Field(
        None, description="rows of sweeps carrying any of these tags (repeat or comma-separate)"
    )

    _split_tags = field_validator("tag", mode="before")(classmethod(lambda cls, v: _split_commas(v)))

    def filters(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.model_dump(
                exclude={"status", "order_by", "limit", "offset", "format", "by", "after", "tag"}
            ).items()
            if v is not None
        }


class _QueryBase(_FilterBase):
    # A list of result fields ('-' in front: descending): an enum in the OpenAPI document, so
    # anything the document allows is accepted and anything else is a 422.
    order_by: list[Literal[ORDER_KEYS]] | None = Field(  # type: ignore[valid-type]
        None, description="result fields (repeat or comma-separate); '-' in front for descending (e.g. '-speedup,seed')"
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description=f"page size (json: default {DEFAULT_JSON_LIMIT}, max {MAX_JSON_LIMIT}; csv/parquet: all rows)",
    )
    offset: int = Field(0, ge=0, le=2**31 - 1)
    after: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="only rows with point_id > after: keyset paging when the rows are in "
        "point_id order (no order_by), stable while rows are added",
    )
    format: Literal[FORMATS] = "json"  # type: ignore[valid-type]

    @field_validator("order_by", mode="before")
    @classmethod
    def _split_order(cls, v: Any) -> Any:
        return [x.strip() if isinstance(x, str) else x for x in _split_commas(v)] if v is not None else v

    def order_keys(self) -> list[str]:
        return list(self.order_by or [])


def _filter_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, typ in _PARAM_TYPES.items():
        # a field type built at run time for pydantic's create_model: no static type to check
        fields[name] = (
            list[typ] | None,  # type: ignore[valid-type]
            Field(None, description=f"{name} equals (repeat or comma-separate for several values)"),
        )
        if name in NUMERIC_PARAMS:
            fields[f"{name}_min"] = (typ | None, Field(None, description=f"{name} >= this"))
            fields[f"{name}_max"] = (typ | None, Field(None, description=f"{name} <= this"))
    return fields


def _make_query_model(name: str, base: type[BaseModel]) -> Any:
    validators = {
        "split_commas": field_validator(*_PARAM_TYPES, "status", mode="before")(lambda cls, v: _split_commas(v))
    }
    return create_model(name, __base__=base, __validators__=validators, **_filter_fields())


if TYPE_CHECKING:
    # What the type checker sees of the generated models: their base (the generated per-parameter
    # filter fields are read through `filters()`).
    class ResultQuery(_QueryBase):
        pass
else:
    ResultQuery = _make_query_model("ResultQuery", _QueryBase)


class _SummaryBase(_FilterBase):
    # No order_by/limit/offset/format: a summary is ordered by its keys and is JSON (unknown -> 422).
    by: list[Literal[GROUP_KEYS]] | None = Field(  # type: ignore[valid-type]
        None,
        json_schema_extra={"uniqueItems": True},
        description=f"group keys (repeat or comma-separate; default {','.join(DEFAULT_SUMMARY_BY)})",
    )

    @field_validator("by", mode="before")
    @classmethod
    def _split_by(cls, v: Any) -> Any:
        return [x.strip() if isinstance(x, str) else x for x in _split_commas(v)] if v is not None else v

    @field_validator("by")
    @classmethod
    def _unique_by(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise PydanticCustomError("value_error", "a key appears twice")
        return v

    def group_keys(self) -> list[str]:
        return list(self.by) if self.by else list(DEFAULT_SUMMARY_BY)


if TYPE_CHECKING:

    class SummaryQuery(_SummaryBase):
        pass
else:
    SummaryQuery = _make_query_model("SummaryQuery", _SummaryBase)


# ----------------------------------------------------------------------------- building queries


# The columns a covering index of `points` leads with (the sweep and its axes).
_COVERED = frozenset(cols[0] for cols in COVERING_INDEXES.values())


def _where(q: _FilterBase, sweep_id: int | None, column=_column) -> list:  # noqa: ANN001
    """SQL conditions of a query, all on `points` (or on the table of `column(name)`).

    Where the sweep or an axis is constrained, its covering index answers: the other parameters of
    `points` are then tested on its rows rather than searched by their own indexes (_Unindexed)."""
    filters = q.filters()
    covered = (
        sweep_id is not None
        or bool(q.tag)
        or any(key.removesuffix("_min").removesuffix("_max") in _COVERED for key in filters)
    )

    def filtered(name: str):  # noqa: ANN202
        col = column(name)
        on_points = getattr(col, "table", None) is Point.__table__
        return _Unindexed(col) if covered and on_points and name not in _COVERED and name != "point_id" else col

    conds: list = []
    if sweep_id is not None:
        conds.append(column("sweep_id") == sweep_id)
    after = getattr(q, "after", None)
    if after is not None:
        conds.append(column("point_id") > after)
    # Only finished points have a result row.
    conds.append(column("status").in_(q.status or RESULT_STATUSES))
    if q.tag:
        conds.append(column("sweep_id").in_(select(SweepTag.sweep_id).where(SweepTag.tag.in_(q.tag))))
    for key, value in filters.items():
        if key.endswith("_min") or key.endswith("_max"):
            col = filtered(key[:-4])
            conds.append(col >= value if key.endswith("_min") else col <= value)
        else:
            col = filtered(key)
            conds.append(col == value[0] if len(value) == 1 else col.in_(value))
    return conds


def _order_columns(q: ResultQuery) -> list:
    cols = [_column(key.removeprefix("-")) for key in q.order_keys()]
    return cols + [Point.id]


def _order(q: ResultQuery) -> list:
    out = []
    for key in q.order_keys():
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


def _statement(q: ResultQuery, sweep_id: int | None, limit: int | None) -> Select:
    """The rows of a query in its order (offset and limit applied)."""
    conds = _where(q, sweep_id)
    order = _order(q)
    if all(c.table is Point.__table__ for c in _order_columns(q)):
        # Ordered by parameters: pick the page's point ids from `points` alone (an index-only scan
        # and a top-N sort of integers), then join only those rows to `results` for their metrics.
        page = select(Point.id).where(*conds).order_by(*order).offset(q.offset)
        if limit is not None:
            page = page.limit(limit)
        page_ids = page.subquery()
        return _joined(select(*ROW_COLUMNS)).join(page_ids, page_ids.c.id == Point.id).order_by(*order)
    stmt = _joined(select(*ROW_COLUMNS)).where(*conds).order_by(*order).offset(q.offset)
    return stmt if limit is None else stmt.limit(limit)


def fetch_page(
    session: Session, q: ResultQuery, sweep_id: int | None = None, with_count: bool = True
) -> tuple[list[dict], int | None]:
    """One page of result rows and, with_count, the number of all matching rows.

    Two statements: the page (a top-N of point ids from `points`, then the join to `results` for
    those rows only) and the count (an index-only scan of `points`). A `count(*) OVER ()` on the page
    query was measured slower for large matches: it defeats the top-N sort."""
    limit = _limit(q)
    result = session.connection().execute(_statement(q, sweep_id, limit))  # Core rows: no ORM overhead
    rows = clean_rows(list(result.keys()), result.fetchall())
    count = None
    if with_count:
        count = (
            len(rows) if q.offset == 0 and (limit is None or len(rows) < limit) else count_rows(session, q, sweep_id)
        )
    return rows, count


EXPORT_CHUNK_ROWS = 5_000


def iter_row_chunks(
    session: Session, q: ResultQuery, sweep_id: int | None = None, chunk_rows: int = EXPORT_CHUNK_ROWS
) -> Iterator[list[dict]]:
    """Every matching row in the query's order, `chunk_rows` at a time, from one statement in one
    transaction (a consistent snapshot); a server-side cursor on Postgres, so memory stays bounded
    by the chunk whatever the number of rows."""
    conn = session.connection().execution_options(stream_results=True, yield_per=chunk_rows)
    result = conn.execute(_statement(q, sweep_id, _limit(q)))
    keys = list(result.keys())
    for part in result.partitions(chunk_rows):
        yield clean_rows(keys, part)


def clean_rows(keys: list[str], rows) -> list[dict]:  # noqa: ANN001
    """Rows as dicts, JSON-safe: non-finite floats (never stored, but never trusted) become None."""
    return [{k: finite_or_none(v) for k, v in zip(keys, r)} for r in rows]


def clean_row(mapping) -> dict:  # noqa: ANN001
    return clean_rows(list(mapping.keys()), [tuple(mapping.values())])[0]


# ----------------------------------------------------------------------------- frames and files

_INT_FIELDS = {"point_id", "sweep_id", "diverged_at", *INT_PARAMS}
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


class _Drain(io.RawIOBase):
    """A write-only sink whose bytes are taken out as they come (ParquetWriter writes row groups to
    it; the response streams them), so nothing accumulates."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # noqa: ANN001
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def stream_file(chunks: Iterable[list[dict]], fmt: str) -> Iterator[bytes]:
    """CSV (header row first) or Parquet (one row group per chunk) of row chunks, produced as they
    are read: memory is bounded by one chunk."""
    if fmt == "csv":
        header = True
        for rows in chunks:
            yield rows_frame(rows).to_csv(index=False, header=header).encode()
            header = False
        if header:  # no rows: the header alone
            yield rows_frame([]).to_csv(index=False).encode()
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(rows_frame([]), preserve_index=False)
    sink = _Drain()
    writer = pq.ParquetWriter(sink, schema)
    try:
        for rows in chunks:
            writer.write_table(pa.Table.from_pandas(rows_frame(rows), schema=schema, preserve_index=False))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


# ----------------------------------------------------------------------------- summary

MAX_SUMMARY_GROUPS = 100_000
SUMMARY_STATS = ("mean", "std", "sem", "min", "max", "count")
# What summary_cells can answer: group keys and filters on a cell's own columns (every group key but
# the seed); `seed` or `point_id` in `by` or a filter reads the result rows instead.
CELL_KEYS = ("sweep_id", "status", *CELL_PARAMS)
SummarySource = Literal["auto", "cells", "rows"]
SUMMARY_WORK_MEM = "128MB"  # Postgres' sort memory for a summary from cells


class TooManyGroups(ValueError):
    """A summary would have more than MAX_SUMMARY_GROUPS rows (the route answers 413)."""


def _cell_column(name: str):
    return SummaryCell.__table__.c[name]


def cells_answer(q: SummaryQuery) -> bool:
    """Whether summary_cells holds what `q` needs: its keys and filters are all cell columns."""
    names = set(q.group_keys()) | {k.removesuffix("_min").removesuffix("_max") for k in q.filters()}
    return names <= set(CELL_KEYS)


def _key_join(a, b, keys: Iterable[str], nullable: set[str]):  # noqa: ANN001
    # Plain equalities (a hash join on Postgres; IS NOT DISTINCT FROM made it a nested loop, 60 s);
    # the nullable keys (data_seed, depth: >= 0) compare through a -1 sentinel.
    return and_(
        *[func.coalesce(a.c[k], -1) == func.coalesce(b.c[k], -1) if k in nullable else a.c[k] == b.c[k] for k in keys]
    )


def row_stats(keys: Iterable[str], conds: Iterable) -> Select:
    """Per group of `keys` over the result rows matching `conds`: the keys,
    the number of rows, then per metric of NUMERIC_METRICS (n, c, S1, S2, min, max): n non-null
    values, c their mean, S1 = sum(x - c), S2 = sum((x - c)^2).

    SQLite has no stddev and Postgres' stddev_samp lost 6 digits on values 1e8 + O(1e-3) (the test):
    a first pass takes each group's mean c, a second the sums shifted by it (the corrected two-pass
    algorithm: S1 is ~0, so var = (S2 - S1^2/n)/(n - 1) cancels nothing whatever the mean's size)."""
    names = list(keys)
    metrics = list(NUMERIC_METRICS)
    # Driven from `results` (a scan) with one primary-key lookup into `points` per row: measured
    # ~6x faster on SQLite than the planner's default of index lookups from `points`.
    base = (
        select(*[_column(k).label(k) for k in names], *[_column(m).label(f"m{i}") for i, m in enumerate(metrics)])
        .select_from(Result)
        .join(Point, Point.id == Result.point_id)
        .where(*conds)
        .subquery("r")
    )
    kc = [base.c[k] for k in names]
    g = (
        select(*kc, *[func.avg(base.c[f"m{i}"]).label(f"c{i}") for i in range(len(metrics))])
        .group_by(*kc)
        .subquery("g")
    )
    cols: list = [*kc, func.count().label("n")]
    for i in range(len(metrics)):
        x, c = base.c[f"m{i}"], g.c[f"c{i}"]
        d = x - c
        cols += [func.count(x), func.max(c), func.sum(d), func.sum(sql_square(d)), func.min(x), func.max(x)]
    nullable = {k for k in names if _column(k).nullable}
    return select(*cols).select_from(base.join(g, _key_join(base, g, names, nullable))).group_by(*kc)


def cell_stats(keys: Iterable[str], conds: Iterable) -> Select:
    """row_stats' columns for the groups of `keys` (cell columns), merged from the summary_cells rows
    matching `conds`: a group's c is the count-weighted mean of its cells' shifts, and with
    d = (shift - c) + resid/n (the cell mean's offset from c), S1 = sum(n d) and
    S2 = sum(m2 + n d^2): Chan et al.'s pairwise merge of the cells' (n, mean, M2), shifted by c as
    row_stats is (sum((x - c)^2) over a cell is m2 + n d^2)."""
    names = list(keys)
    metrics = list(NUMERIC_METRICS)
    t = SummaryCell.__table__
    cells = select(*[t.c[k] for k in names], t.c.n_rows, *[t.c[f"{m}_{s}"] for m in metrics for s in CELL_STATS])
    base = cells.where(*conds).subquery("c")
    kc = [base.c[k] for k in names]
    shift = [
        sql_per(
            func.sum(base.c[f"{m}_n"] * base.c[f"{m}_shift"]),
            func.nullif(cast(func.sum(base.c[f"{m}_n"]), Double), 0),
        ).label(f"c{i}")
        for i, m in enumerate(metrics)
    ]
    g = select(*kc, *shift).group_by(*kc).subquery("g")
    cols: list = [*kc, func.sum(base.c.n_rows).label("n")]
    for i, m in enumerate(metrics):
        n, c = base.c[f"{m}_n"], g.c[f"c{i}"]
        has = n > 0  # a cell without values has no shift/resid/m2 (and n would divide by zero)
        d = (base.c[f"{m}_shift"] - c) + sql_per(base.c[f"{m}_resid"], cast(n, Double))
        cols += [
            func.sum(n),
            func.max(c),
            func.sum(case((has, n * (base.c[f"{m}_shift"] - c) + base.c[f"{m}_resid"]))),
            func.sum(case((has, base.c[f"{m}_m2"] + n * sql_square(d)))),
            func.min(base.c[f"{m}_min"]),
            func.max(base.c[f"{m}_max"]),
        ]
    nullable = {k for k in names if t.c[k].nullable}
    # LEFT JOIN (every cell has its group): SQLite then loops over the cells and looks each group up
    # in an index it builds on g; a plain JOIN it ran as a scan of every cell per group (40 s at
    # 30,000 cells and 1,000 groups). A window over the group instead: 1.5 s at 6,000 cells.
    on = _key_join(base, g, names, nullable)
    return select(*cols).select_from(base.join(g, on, isouter=True)).group_by(*kc)


def summary(
    session: Session,
    q: SummaryQuery,
    sweep_id: int | None = None,
    *,
    where: Iterable = (),
    max_groups: int = MAX_SUMMARY_GROUPS,
    source: SummarySource = "auto",
) -> list[dict]:
    """One row per group of `q.group_keys()`, in key order (nulls last): the keys, `count` (rows in
    the group) and, for every numeric metric, <metric>_mean, _std (ddof 1), _sem (std / sqrt of the
    non-null count), _min, _max and _count (non-null values); null where a statistic is undefined
    (no value, or one value for std/sem).

    Computed by the database, memory bounded by the number of groups: from summary_cells (a few
    rows per combination of parameters, whatever the seeds) when they hold the keys and filters
    (`cells_answer`), else (`seed`/`point_id` keys or filters, or extra `where` conditions on
    points/results) from the result rows. `source` forces one ("cells" needs cells_answer).
    Raises TooManyGroups beyond `max_groups`."""
    keys = q.group_keys()
    use_cells = source == "cells" or (source == "auto" and not where and cells_answer(q))
    if use_cells:
        stmt = cell_stats(keys, _where(q, sweep_id, _cell_column))
        if session.get_bind().dialect.name == "postgresql":
            # The cells' sort by group (~1.3 kB a cell) fits in memory: with the default 4 MB it went
            # to disk ("external merge", 30 MB at 30,000 cells). This transaction only.
            session.execute(text(f"SET LOCAL work_mem = '{SUMMARY_WORK_MEM}'"))
    else:
        stmt = row_stats(keys, _where(q, sweep_id) + list(where))
    kc = list(stmt.selected_columns)[: len(keys)]
    stmt = stmt.order_by(*[k.asc().nulls_last() for k in kc]).limit(max_groups + 1)
    data = session.connection().execute(stmt).all()
    if len(data) > max_groups:
        raise TooManyGroups(f"by: more than {max_groups} groups; group by fewer keys or filter the rows")
    return [_summary_row(keys, r) for r in data]


def _summary_row(keys: list[str], r: Sequence[Any]) -> dict[str, Any]:
    """A summary row from row_stats'/cell_stats' columns."""
    width = 6
    row: dict[str, Any] = dict(zip(keys, r[: len(keys)]))
    row["count"] = int(r[len(keys)])
    vals = r[len(keys) + 1 :]
    for i, m in enumerate(NUMERIC_METRICS):
        v = vals[i * width : (i + 1) * width]
        n = int(v[0] or 0)
        c, s1, s2, lo, hi = v[1:]
        mean = None if n == 0 else float(c) + float(s1) / n
        std = None if n < 2 else math.sqrt(max(float(s2) - float(s1) * float(s1) / n, 0.0) / (n - 1))
        row[f"{m}_mean"] = mean
        row[f"{m}_std"] = std
        row[f"{m}_sem"] = None if std is None else std / math.sqrt(n)
        row[f"{m}_min"] = None if lo is None else float(lo)
        row[f"{m}_max"] = None if hi is None else float(hi)
        row[f"{m}_count"] = n
    return {k: finite_or_none(v) for k, v in row.items()}


def summary_pandas(session: Session, q: SummaryQuery, sweep_id: int | None = None) -> list[dict]:
    """The former in-process summary (every row loaded into pandas): the tests' and the benchmark's
    independent reference for `summary`."""
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
    mean, std, mn, mx, n = (
        g[metrics].mean(),
        g[metrics].std(ddof=1),
        g[metrics].min(),
        g[metrics].max(),
        g[metrics].count(),
    )
    sem = std / np.sqrt(n.where(n > 0))
    columns: dict[str, pd.Series] = {"count": size}
    for m in metrics:
        columns.update(
            {
                f"{m}_mean": mean[m],
                f"{m}_std": std[m],
                f"{m}_sem": sem[m],
                f"{m}_min": mn[m],
                f"{m}_max": mx[m],
                f"{m}_count": n[m],
            }
        )
    out = pd.DataFrame(columns, index=size.index).reset_index()  # one frame at once (not column by column)
    return frame_records(out)


# ----------------------------------------------------------------------------- points

POINT_EXTRA_FIELDS = (
    "error",
    "cached",
    "source_point_id",
    "record_every",
    "tol",
    "data_seed",
    "fit_lambda0",
    "n_samples",
    "y_singular_values",
    "attempts",
)


def point_row(session: Session, point_id: int) -> dict | None:
    """A point as a result row (status from the point, metrics null until it has a result), plus the
    remaining PointConfig fields, `error`, `cached`, `source_point_id` and `attempts`."""
    cols: list[Label[Any]] = [
        Point.id.label("point_id"),
        Point.sweep_id.label("sweep_id"),
        Point.status.label("status"),
    ]
    cols += [_column(f).label(f) for f in RESULT_FIELDS if f not in ("point_id", "sweep_id", "status")]
    cols += [Result.error.label("error")] + [getattr(Point, f).label(f) for f in POINT_EXTRA_FIELDS[1:]]
    stmt = select(*cols).select_from(Point).outerjoin(Result, Result.point_id == Point.id).where(Point.id == point_id)
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

    return {name: None if a is None else json_array(a) for name, a in decode(curve.blob, curve.format).items()}


def json_array(a: Any) -> Any:
    """A float array as nested lists, non-finite values as null."""
    return json_safe(np.asarray(a, dtype=np.float64))


# ----------------------------------------------------------------------------- aggregated curves and phase

_BLOB_CHUNK = 500  # point ids per IN (...) of a blob read


def done_point_rows(session: Session, sweep_id: int, metrics: Iterable[str]) -> list[dict[str, Any]]:
    """The sweep's done points as dicts: point_id, source_point_id, every parameter and `metrics`,
    in seed order (GET /sweeps/{id}/curves groups them)."""
    metrics = list(metrics)
    cols = [
        Point.id,
        Point.source_point_id,
        *(getattr(Point, f) for f in PARAM_FIELDS),
        *(getattr(Result, m) for m in metrics),
    ]
    rows = session.execute(
        select(*cols)
        .join(Result, Result.point_id == Point.id)
        .where(Point.sweep_id == sweep_id, Point.status == PointStatus.DONE)
        .order_by(Point.seed, Point.id)
    ).all()
    names = ["point_id", "source_point_id", *PARAM_FIELDS, *metrics]
    return [dict(zip(names, r)) for r in rows]


def curve_blobs(session: Session, point_ids: Iterable[int]) -> dict[int, tuple[bytes, str]]:
    """point id -> (stored curves blob, its format), for the ids that have one (one read per chunk)."""
    wanted = sorted(set(point_ids))
    out: dict[int, tuple[bytes, str]] = {}
    for i in range(0, len(wanted), _BLOB_CHUNK):
        for pid, blob, fmt in session.execute(
            select(Curve.point_id, Curve.blob, Curve.format).where(Curve.point_id.in_(wanted[i : i + _BLOB_CHUNK]))
        ):
            out[pid] = (blob, fmt)
    return out


def done_points_with_metric(session: Session, sweep_id: int, metric: str) -> list[tuple[Point, Any]]:
    """(Point, its result's `metric`) of the sweep's done points, in id order (GET /sweeps/{id}/phase)."""
    rows = session.execute(
        select(Point, getattr(Result, metric))
        .join(Result, Result.point_id == Point.id)
        .where(Point.sweep_id == sweep_id, Point.status == PointStatus.DONE)
        .order_by(Point.id)
    ).all()
    return [(p, v) for p, v in rows]
