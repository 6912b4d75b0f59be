"""The summaries' rollup (`summary_cells`, revision 0008), kept in step with `results`.

A cell is one combination of every parameter a summary can group or filter on except the seed
(models.CELL_PARAMS), in one sweep, with one status; its row holds, per metric, the count of non-null
values, their mean, M2 (the sum of squared deviations) and min/max. GET /summary merges the cells
of each group (queries.cell_stats) instead of reading every result row: a few thousand cells for a
million rows.

Result rows are only ever inserted (one per point, never updated) or deleted with their sweep (the
cells go with it: ON DELETE CASCADE), so the rollup needs exactly one thing: every inserted result
row merged once into its cell, in the transaction that inserts it. `add_rows` does that for the
rows store.insert_results really inserted, from their own values: it reads only the points' cell
parameters, grouped by the database (one row per distinct combination with its point ids), and
`add(session, point_ids)` for rows inserted elsewhere (the cached copies of POST /sweeps) reads the
rows back. Both aggregate them per cell (numpy: measured ~5x faster than the same two-pass
aggregation in SQLite) and merge each into its cell with one INSERT .. ON CONFLICT DO UPDATE, Chan
et al.'s parallel formula in the SET clause.
The upsert takes the cell's row lock (Postgres), so concurrent writers to one cell merge one after
the other; SQLite's writers are serialised by BEGIN IMMEDIATE.

`rebuild(session)` recomputes every cell from the result rows (migration 0008's backfill, and a
repair if a row was ever inserted past `add`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import BindParameter, ColumnElement, Double, bindparam, case, cast, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .db import UnlessSqlite
from .models import CELL_PARAMS, SUMMARY_METRICS, Point, Result, SummaryCell, Sweep

_CELLS = SummaryCell.__table__
_CHUNK = 2_000  # point ids per IN (...) (the writer's batch, writer.MAX_BATCH)
_UNIQUE = ["sweep_id", "status", "cell"]
# The cell columns of a result row: the point's parameters, its sweep and its result's status (a
# finished point's status is its result's: both are written in one transaction; add() runs before
# the writer updates the point's).
_KEYS = [("sweep_id", Result.sweep_id), ("status", Result.status)] + [(f, Point.__table__.c[f]) for f in CELL_PARAMS]


def cell_digest(params: Iterable[Any]) -> str:
    """sha256 of a cell's parameter values (CELL_PARAMS order): the key of its upsert."""
    return hashlib.sha256(json.dumps(list(params), separators=(",", ":")).encode()).hexdigest()


def cell_rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """summary_cells rows of some result rows, each (*_KEYS values, *SUMMARY_METRICS values)."""
    if not rows:
        return []
    nk = len(_KEYS)
    members: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        members.setdefault(tuple(r[:nk]), []).append(i)
    x = np.array([r[nk:] for r in rows], dtype=np.float64)  # null -> nan (never stored)
    return _cells(members, x)


def _cells(members: dict[tuple, list[int]], x: np.ndarray) -> list[dict[str, Any]]:
    """summary_cells rows: one per cell key (*_KEYS values) of `members`, over the rows of `x` (one
    per result row, SUMMARY_METRICS columns, null as nan) at its indexes. Per cell and metric, over
    the non-null values: n, shift = their mean, resid = sum(x - shift) (the mean's rounding, so
    shift + resid/n keeps every digit), m2 = sum((x - shift)^2) - resid^2/n (the corrected
    two-pass sum of squared deviations: resid ~ 0, nothing cancels), min, max."""
    order = np.fromiter((i for idx in members.values() for i in idx), dtype=np.intp, count=len(x))
    sizes = np.fromiter((len(idx) for idx in members.values()), dtype=np.intp, count=len(members))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    x = x[order]
    has = ~np.isnan(x)
    n = np.add.reduceat(has, starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.add.reduceat(np.where(has, x, 0.0), starts, axis=0) / n
        dev = np.where(has, x - np.repeat(shift, sizes, axis=0), 0.0)
        resid = np.add.reduceat(dev, starts, axis=0)
        m2 = np.maximum(np.add.reduceat(dev * dev, starts, axis=0) - resid * resid / n, 0.0)
        lo, hi = np.fmin.reduceat(x, starts, axis=0), np.fmax.reduceat(x, starts, axis=0)
    none = n == 0
    cols: dict[str, list] = {"n_rows": sizes.tolist()}
    for j, m in enumerate(SUMMARY_METRICS):
        cols[f"{m}_n"] = n[:, j].tolist()
        for stat, a in (("shift", shift), ("resid", resid), ("m2", m2), ("min", lo), ("max", hi)):
            v = a[:, j].astype(object)
            v[none[:, j]] = None
            cols[f"{m}_{stat}"] = v.tolist()
    names = [k for k, _ in _KEYS]
    out = []
    for key, vals in zip(members, zip(*cols.values())):
        row = dict(zip(names, key))
        row["cell"] = cell_digest(key[2:])
        row.update(zip(cols, vals))
        out.append(row)
    return out


# Postgres raises "value out of range: underflow" when a float8 product or quotient of non-zero
# operands rounds to 0 (SQLite and numpy round): a metric of ~1e-174 (the one-layer error e^-t at
# t = 400) squared stopped the result writer for good. Below these sizes the term is beneath what a
# double holds of the sums it joins (a square < 1e-320; a mean's correction < 1e-300 / n).
_SQUARE_FLOOR, _QUOTIENT_FLOOR = 1e-160, 1e-300
# One bound parameter per constant, however often a statement uses it (the same values and types as
# the plain literals): the writer's upsert below used ~630 of them, every one built into each
# execution's parameters (SQLAlchemy's construct_params: ~1 ms of a 100-row result batch).
_SQUARE_FLOOR_P: BindParameter[float] = bindparam("square_floor", _SQUARE_FLOOR)
_QUOTIENT_FLOOR_P: BindParameter[float] = bindparam("quotient_floor", _QUOTIENT_FLOOR)
_ZERO_P: BindParameter[float] = bindparam("zero_float", 0.0)
_NO_VALUES_P: BindParameter[int] = bindparam("zero_count", 0)


# SQLite rounds instead of raising, so its statements leave the floors out: without their CASEs
# (written out three times per metric by the summaries' expressions) it answers /summary over
# 30,000 cells ~15 % sooner (bench/query_latency.py).
def sql_square(x: Any) -> Any:
    """x * x in SQL; except on SQLite, 0 where |x| < 1e-160 (where the square would be subnormal or 0)."""
    return UnlessSqlite(case((func.abs(x) < _SQUARE_FLOOR_P, _ZERO_P), else_=x * x), x * x)


def sql_per(x: Any, n: Any) -> Any:
    """x / n in SQL for a count n >= 1 (or null); except on SQLite, 0 where |x| < 1e-300."""
    return UnlessSqlite(case((func.abs(x) < _QUOTIENT_FLOOR_P, _ZERO_P), else_=x / n), x / n)


def _merge(stmt) -> dict[str, Any]:  # noqa: ANN001
    """The SET clause merging the proposed row (`excluded`, b) into the stored one (a): counts add;
    the shift stays a's; resid = sum(x - shift) over both; M2 by Chan et al.:
    M2 = M2_a + M2_b + delta^2 n_a n_b / n with delta = mean_b - mean_a, each mean as shift + resid/n
    (delta = (shift_b - shift_a) + resid_b/n_b - resid_a/n_a: exact when the shifts are close)."""
    a, b = _CELLS.c, stmt.excluded
    out: dict[str, Any] = {"n_rows": a.n_rows + b.n_rows}
    for m in SUMMARY_METRICS:
        na, nb = a[f"{m}_n"], b[f"{m}_n"]
        fa, fb = cast(na, Double), cast(nb, Double)  # float arithmetic on both databases
        sa, sb = a[f"{m}_shift"], b[f"{m}_shift"]
        ra, rb = a[f"{m}_resid"], b[f"{m}_resid"]
        delta = (sb - sa) + sql_per(rb, fb) - sql_per(ra, fa)
        both = sql_square(delta) * fa * fb / (fa + fb)  # >= half the square: never rounds to 0

        def pick(merged, col, na=na, nb=nb):  # noqa: ANN001, ANN202
            """b's value when a has none, a's when b has none, else the merge."""
            return case((na == _NO_VALUES_P, b[col]), (nb == _NO_VALUES_P, a[col]), else_=merged)

        lo, hi = (a[f"{m}_min"], b[f"{m}_min"]), (a[f"{m}_max"], b[f"{m}_max"])
        out.update(
            {
                f"{m}_n": na + nb,
                f"{m}_shift": case((na == _NO_VALUES_P, sb), else_=sa),
                f"{m}_resid": pick(ra + rb + fb * (sb - sa), f"{m}_resid"),
                f"{m}_m2": pick(a[f"{m}_m2"] + b[f"{m}_m2"] + both, f"{m}_m2"),
                f"{m}_min": pick(case((lo[1] < lo[0], lo[1]), else_=lo[0]), f"{m}_min"),
                f"{m}_max": pick(case((hi[1] > hi[0], hi[1]), else_=hi[0]), f"{m}_max"),
            }
        )
    return out


@functools.cache
def _upsert_statement(dialect: str):  # noqa: ANN202
    """INSERT .. ON CONFLICT (sweep_id, status, cell) DO UPDATE SET <_merge> (built once: ~0.15 s)."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_CELLS)
    return stmt.on_conflict_do_update(index_elements=_UNIQUE, set_=_merge(stmt))


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    # One lock order for every writer (Postgres row locks): no deadlock between two batches.
    rows.sort(key=lambda r: (r["sweep_id"], r["status"], r["cell"]))
    session.execute(_upsert_statement(session.get_bind().dialect.name), rows)


# The cell columns and metrics of result rows (_KEYS, then SUMMARY_METRICS).
_ROWS = (
    select(*[c for _, c in _KEYS], *[getattr(Result, m) for m in SUMMARY_METRICS])
    .select_from(Result)
    .join(Point, Point.id == Result.point_id)
)
_BATCH = _ROWS.where(Result.point_id.in_(bindparam("ids", expanding=True)))  # built once


@functools.cache
def _groups_statement(dialect: str):  # noqa: ANN202
    """SELECT <CELL_PARAMS>, <the ids of the points with them> FROM points GROUP BY <CELL_PARAMS>
    (the WHERE clause added per call)."""
    params = [Point.__table__.c[f] for f in CELL_PARAMS]
    ids = func.array_agg(Point.id) if dialect == "postgresql" else func.json_group_array(Point.id)
    return select(*params, ids).group_by(*params)


def add_rows(
    session: Session, points: ColumnElement[bool], point_ids: Sequence[int], keys: Sequence[tuple], x: np.ndarray
) -> None:
    """Merge result rows just inserted in this transaction into their cells, given by value: their
    point ids, (sweep_id, status) `keys` and SUMMARY_METRICS values `x` (one row each, null as nan);
    `points` is a condition that selects exactly those points. Only the points' cell parameters
    are read, grouped by the database (a row per distinct combination: no row per point read back).
    Call it exactly once per inserted row."""
    if not len(point_ids):
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    groups = session.execute(_groups_statement("postgresql" if postgres else "sqlite").where(points)).all()
    pos = {pid: i for i, pid in enumerate(point_ids)}
    members: dict[tuple, list[int]] = {}
    for g in groups:
        params = tuple(g[:-1])
        per_key: dict[tuple, list[int]] = {}
        for pid in g[-1] if postgres else json.loads(g[-1]):
            i = pos[pid]
            per_key.setdefault(keys[i], []).append(i)
        for key, idx in per_key.items():
            members[(*key, *params)] = idx
    if sum(map(len, members.values())) != len(point_ids):
        raise ValueError("summary_cells.add_rows: `points` does not select exactly the rows' points")
    _upsert(session, _cells(members, x))


def add(session: Session, point_ids: Iterable[int]) -> None:
    """Merge the result rows of `point_ids`, just inserted in this transaction, into their cells.
    Call it exactly once per inserted row (with the ids an INSERT .. RETURNING reported)."""
    ids = sorted(set(point_ids))
    conn = session.connection()
    for i in range(0, len(ids), _CHUNK):
        _upsert(session, cell_rows(conn.execute(_BATCH, {"ids": ids[i : i + _CHUNK]}).all()))


REBUILD_CHUNK = 50_000  # result rows per aggregation while rebuilding


def rebuild(session: Session, sweep_ids: Iterable[int] | None = None) -> int:
    """Recompute the cells of `sweep_ids` (None: every sweep) from their result rows, one sweep at a
    time, REBUILD_CHUNK rows at a time merged like the writer's batches (memory bounded by the
    chunk); how many result rows were merged."""
    if sweep_ids is None:
        sweep_ids = session.execute(select(Sweep.id).order_by(Sweep.id)).scalars().all()
    merged = 0
    for sid in sweep_ids:
        session.execute(delete(_CELLS).where(_CELLS.c.sweep_id == sid))
        result = session.connection().execute(
            # options of this statement only (Connection.execution_options would stream the upserts too)
            _ROWS.where(Result.sweep_id == sid),
            execution_options={"stream_results": True, "yield_per": REBUILD_CHUNK},
        )
        for part in result.partitions(REBUILD_CHUNK):
            _upsert(session, cell_rows(part))
            merged += len(part)
    return merged
