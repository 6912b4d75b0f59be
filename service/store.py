"""Persistence of sweeps, points, results and curves: the SQL of the routes and of the runner.

Every function takes the caller's Session first and works inside the caller's transaction (the
caller owns commit/rollback via `session_scope`). Nothing here knows about HTTP: a missing row is
returned as None and the routes map it to 404/409. Read queries over results (filters, pages,
summaries, files) live in `service.queries`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    Double,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from flowsweep.core.types import METRIC_FIELDS
from flowsweep.jsonsafe import finite_or_none as _finite_or_none  # stored as NULL: no NaN in results
from flowsweep.status import ACTIVE_SWEEP_STATUSES, CACHED, COUNT_KEYS, PointStatus, SweepStatus

from . import summary_cells
from .db import Unindexed
from .expand import expand_grid
from .models import (
    LIST_PARAM_FIELDS,
    PARAM_FIELDS,
    REUSABLE_POINT_STATUSES,
    SUMMARY_METRICS,
    Curve,
    Point,
    Result,
    RunnerLease,
    Sweep,
    SweepTag,
    utcnow,
)
from .schemas import SweepSpec

# Declarative classes map a Table; SQLAlchemy types `__table__` as the wider FromClause.
_POINTS = cast(Table, Point.__table__)
_RESULTS = cast(Table, Result.__table__)
_CURVES = cast(Table, Curve.__table__)

_CHUNK = 500  # identities per IN (...) lookup
_ACTIVE_SWEEP = ACTIVE_SWEEP_STATUSES
_PAGE = 10_000  # rows per bulk statement (bounds the memory of one sweep's insert)
_LIST_COLUMNS = [2 + PARAM_FIELDS.index(name) for name in LIST_PARAM_FIELDS]  # in pending_page's rows

# A result row as store.insert_results takes it: a tuple in this order (result_row builds one).
RESULT_COLUMNS: tuple[str, ...] = (
    "point_id",
    "sweep_id",
    "status",
    "error",
    "wall_seconds",
    "worker",
    *METRIC_FIELDS,
    "created_at",
)


# Where a result row (RESULT_COLUMNS) holds the metrics a summary aggregates (SUMMARY_METRICS).
_SUMMARY_POSITIONS = [RESULT_COLUMNS.index(m) for m in SUMMARY_METRICS]


def ping(session: Session) -> None:
    """`SELECT 1`: raises when the database is unreachable (the health probe)."""
    session.execute(text("SELECT 1"))


# ============================================================================= bulk SQL


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def in_values(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values` with ONE bound parameter whatever the number of values (a JSON array read
    by json_each on SQLite, an array on Postgres): one cached statement, and no IN list of one
    parameter per value compiled for every length."""
    values = list(values)
    if _is_postgres(session):
        return cast(ColumnElement[bool], column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type))))
    each = func.json_each(bindparam(None, json.dumps(values), type_=String)).table_valued("value")
    return column.in_(select(each.c.value))


def id_runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """The distinct `ids` as maximal runs of consecutive integers, (first, last) in ascending order."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(lo, hi) for lo, hi in runs]


_MAX_RUNS = 8  # id ranges per condition; more (ids scattered) -> in_values


def in_ids(session: Session, column: Any, ids: Iterable[int]) -> ColumnElement[bool]:
    """`column IN ids` for integer ids: as a few BETWEEN ranges when the ids form at most _MAX_RUNS
    runs of consecutive values (a sweep's points have consecutive ids in the order the runner takes
    them: a range scan, no per-id lookup), else in_values. The number of ranges is padded to a power
    of two (the last range repeated), so few distinct statements are compiled and cached."""
    ids = list(ids)
    runs = id_runs(ids)
    if not runs or len(runs) > _MAX_RUNS:
        return in_values(session, column, ids)
    width = 1 << (len(runs) - 1).bit_length()
    runs += [runs[-1]] * (width - len(runs))
    return or_(*[column.between(lo, hi) for lo, hi in runs])


class WriteRace(RuntimeError):
    """Rows expected to be new met a conflict: another transaction wrote them meanwhile (only
    possible without the owner guard). The transaction is rolled back; a retry sees the winner's rows."""


def _converted(row: tuple, convert: list[tuple[int, Any]], memo: dict) -> tuple:
    """`row` with the values at the indexes of `convert` passed through its bind processor."""
    out = list(row)
    for i, proc in convert:
        v = out[i]
        try:
            out[i] = memo[v]
        except KeyError:
            out[i] = memo[v] = proc(v)
        except TypeError:  # unhashable (a list)
            out[i] = proc(v)
    return tuple(out)


def _bulk_insert(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple],
    const: dict[str, Any] | None = None,
    conflict: str | None = None,
) -> int:
    """INSERT `rows` (tuples in `columns` order, values as the driver takes them: int, float,
    str, bytes, bool, None) with `const` (column -> one value for every row, converted by its
    column type) in one statement per page of rows, ON CONFLICT (`conflict`) DO NOTHING when
    given; returns how many rows were inserted. No SQLAlchemy processing per row: SQLite gets one
    executemany of the tuples, Postgres one INSERT .. SELECT FROM unnest(one array per column)."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect
    convert = [
        (i, proc)
        for i, c in enumerate(columns)
        if isinstance(table.c[c].type, (TypeDecorator, JSON))  # UTCDateTime, JSON: the others bind as they are
        and (proc := table.c[c].type._cached_bind_processor(dialect)) is not None
    ]
    if convert:
        memo: dict = {}
        rows = [_converted(r, convert, memo) for r in rows]
    const = const or {}
    kv = []
    for name, value in const.items():
        proc = table.c[name].type._cached_bind_processor(dialect)
        kv.append((name, proc(value) if proc is not None else value))
    names = [*columns, *(k for k, _ in kv)]
    on_conflict = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
    conn = session.connection()
    n = 0
    if dialect.name == "postgresql":
        # String(n) cast as plain VARCHAR: a cast to VARCHAR(n) would truncate a long value
        # silently where the column itself refuses it
        types = [re.sub(r"^VARCHAR\(\d+\)$", "VARCHAR", table.c[c].type.compile(dialect)) for c in names]
        arrays = ", ".join(f"%b::{t}[]" for t in types[: len(columns)])
        consts = "".join(f", %s::{t}" for t in types[len(columns) :])
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT *{consts} FROM unnest({arrays}){on_conflict}"
        floats = [isinstance(table.c[c].type, Double) for c in columns]
        for i in range(0, len(rows), _PAGE):
            cols = [
                [v if v is None else float(v) for v in col] if f else list(col)  # psycopg: one type per array
                for col, f in zip(zip(*rows[i : i + _PAGE]), floats)
            ]
            # placeholders in the text's order: the constants (SELECT list), then the arrays (FROM)
            n += conn.exec_driver_sql(sql, (*[v for _, v in kv], *cols)).rowcount
        return n
    marks = ", ".join("?" * len(names))
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}){on_conflict}"
    tail = tuple(v for _, v in kv)
    for i in range(0, len(rows), _PAGE):
        page = rows[i : i + _PAGE]
        n += conn.exec_driver_sql(sql, [r + tail for r in page] if tail else list(page)).rowcount
    return n


# ============================================================================= sweeps (routes)


def counts(session: Session, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    """SPEC counts per sweep: a cached point counts only under `cached`."""
    out = {sid: dict.fromkeys(COUNT_KEYS, 0) for sid in sweep_ids}
    if not sweep_ids:
        return out
    # Grouped in ix_points_sweep_id_cover's order, which holds `cached` too: an index-only scan
    # with no sort (20,000 points on SQLite: ~7-10 -> ~4 ms; GET /sweeps/{id} is polled).
    stmt = (
        select(Point.sweep_id, Point.status, func.count(), func.sum(case((Point.cached, 1), else_=0)))
        .where(Point.sweep_id.in_(sweep_ids))
        .group_by(Point.sweep_id, Point.status)
    )
    for sid, st, n, n_cached in session.execute(stmt):
        n_cached = int(n_cached or 0)
        out[sid][st] = out[sid].get(st, 0) + int(n) - n_cached
        out[sid][CACHED] += n_cached
    return out


def get_sweep(session: Session, sweep_id: int, for_update: bool = False) -> Sweep | None:
    """The sweep row or None; `for_update` locks it for the transaction."""
    stmt = select(Sweep).where(Sweep.id == sweep_id)
    if for_update:
        stmt = stmt.with_for_update()  # Postgres row lock; SQLite writes are serialised by BEGIN IMMEDIATE
    return session.execute(stmt).scalar_one_or_none()


def list_sweeps(
    session: Session,
    statuses: list[str] | None,
    limit: int,
    offset: int,
    *,
    tags: list[str] | None = None,
    name: str | None = None,
) -> tuple[int, list[Sweep]]:
    """(total matching, one page of sweeps newest first), optionally only those in `statuses`,
    carrying any of `tags`, or whose name contains `name` (case-insensitive)."""
    conds = [Sweep.status.in_(statuses)] if statuses else []
    if tags:
        conds.append(Sweep.id.in_(tagged_sweep_ids(tags)))
    if name:
        escaped = name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append(func.lower(Sweep.name).like(f"%{escaped}%", escape="\\"))
    total = session.execute(select(func.count()).select_from(Sweep).where(*conds)).scalar_one()
    sweeps = (
        session.execute(
            select(Sweep).where(*conds).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit).offset(offset)
        )
        .scalars()
        .all()
    )
    return total, list(sweeps)


def tagged_sweep_ids(tags: list[str]):
    """SELECT of the ids of sweeps that carry any of `tags` (for an IN condition)."""
    return select(SweepTag.sweep_id).where(SweepTag.tag.in_(tags))


def tags_of(session: Session, sweep_ids: list[int]) -> dict[int, list[str]]:
    """sweep id -> its tags, sorted."""
    out: dict[int, list[str]] = {sid: [] for sid in sweep_ids}
    if sweep_ids:
        for sid, tag in session.execute(
            select(SweepTag.sweep_id, SweepTag.tag).where(SweepTag.sweep_id.in_(sweep_ids)).order_by(SweepTag.tag)
        ):
            out[sid].append(tag)
    return out


def set_tags(session: Session, sweep_id: int, tags: list[str]) -> None:
    """Replace the sweep's tags."""
    session.execute(delete(SweepTag).where(SweepTag.sweep_id == sweep_id))
    if tags:
        session.execute(insert(SweepTag), [{"sweep_id": sweep_id, "tag": t} for t in tags])


def reusable_sources(session: Session, identities: list[str]) -> dict[str, tuple[int, str]]:
    """identity -> (id, status) of a finished (done/diverged) point computed by some sweep (not
    itself a copy); the lowest id when there are several.

    Looked up by identity alone (its index) and filtered here, so no planner can prefer another index."""
    found: dict[str, tuple[int, str]] = {}
    conn = session.connection()
    P = _POINTS.c
    for i in range(0, len(identities), _PAGE):
        stmt = select(P.identity, P.id, P.status, P.source_point_id).where(
            in_values(session, P.identity, identities[i : i + _PAGE])
        )
        for ident, pid, st, src in conn.execute(stmt):
            if st in REUSABLE_POINT_STATUSES and src is None and (ident not in found or pid < found[ident][0]):
                found[ident] = (pid, st)
    return found


RUN_BLOCK = 64  # grid points per block of the run order, at most
MIN_RUN_BLOCKS = 256  # blocks per sweep, at least (smaller blocks in sweeps under 64 x 256 points)


def run_block(n_points: int) -> int:
    """Grid points per block of the run order of a sweep of `n_points`: RUN_BLOCK, or fewer so that
    the sweep has at least MIN_RUN_BLOCKS blocks (a partial or running sweep stays a fine-grained
    sample of its grid; under 512 points the blocks are single points: identity order)."""
    return max(1, min(RUN_BLOCK, n_points // MIN_RUN_BLOCKS))


def run_order(identities: Sequence[str]) -> list[int]:
    """The order the runner takes a sweep's points in, as grid positions: blocks of run_block
    consecutive grid points, the blocks in the order of their first point's identity (a fixed
    pseudo-random permutation of them). Chunks of a few blocks are balanced and a partial sweep is
    a representative sample of its blocks, as with the points themselves in identity order; but a
    block's points are neighbours in the covering indexes of `points` too (grid order is their key
    order, models.COVERING_INDEXES), so a chunk's two status flips rewrite a few index pages per
    block instead of nearly every page of the sweep's entries in each index (bench/service_stages.py,
    20,000 tiny points on SQLite: claims and writes ~20 us of CPU per point cheaper)."""
    n = len(identities)
    size = run_block(n)
    blocks = sorted(range(0, n, size), key=identities.__getitem__)
    return [j for b in blocks for j in range(b, min(b + size, n))]


def insert_sweep(session: Session, spec: SweepSpec, stored_spec: dict) -> tuple[Sweep, int]:
    """The sweep, all its points and the cached points' result copies, in the caller's transaction.

    Raises expand.PointSpecError when a point of the grid is invalid."""
    grid = expand_grid(spec)
    identities = grid.identities()
    now = utcnow()
    sources = {} if spec.recompute else reusable_sources(session, identities)
    n_cached = len(sources)
    n_points = len(grid)
    sweep = Sweep(
        name=stored_spec["name"],
        spec=stored_spec,
        n_points=n_points,
        status=SweepStatus.DONE if n_cached == n_points else SweepStatus.QUEUED,
        created_at=now,
        cancel_requested=False,
    )
    if sweep.status == SweepStatus.DONE:  # everything was already computed: nothing for the runner to do
        sweep.started_at = sweep.finished_at = now
    session.add(sweep)
    session.flush()
    set_tags(session, sweep.id, spec.tags or [])
    # One set-wise INSERT per page of points (no per-row objects): what the points share is bound
    # once; per point only the varying axes, the identity and the reuse columns.
    # In run order (run_order), the runner's (store.pending_page): the points it takes together have
    # consecutive ids, so its claims, status flips and result writes touch neighbouring rows and
    # pages (ranges, not scattered lookups).
    new = (False, None, str(PointStatus.PENDING))
    src_of = {ident: (True, src, str(st)) for ident, (src, st) in sources.items()}
    columns = (*grid.axes, "identity", "cached", "source_point_id", "status")
    const = {**grid.fixed, "sweep_id": sweep.id, "attempts": 0}
    order = run_order(identities)
    values = grid.values
    for i in range(0, n_points, _PAGE):
        rows = [(*values[j], identities[j], *src_of.get(identities[j], new)) for j in order[i : i + _PAGE]]
        _bulk_insert(session, _POINTS, columns, rows, const)
    if n_cached:
        # A copy of the source's result row for every cached point (one result row per point).
        new_ids = dict(
            session.execute(
                select(Point.source_point_id, Point.id).where(Point.sweep_id == sweep.id, Point.cached.is_(True))
            ).all()
        )
        cols = [c.key for c in _RESULTS.columns if c.key not in ("id", "point_id", "sweep_id")]
        copies = []
        src_ids = list(new_ids)
        for i in range(0, len(src_ids), _CHUNK):
            stmt = select(Result.point_id, *[_RESULTS.c[c] for c in cols]).where(
                Result.point_id.in_(src_ids[i : i + _CHUNK])
            )
            for r in session.execute(stmt):
                m = r._mapping
                copies.append({"point_id": new_ids[m["point_id"]], "sweep_id": sweep.id, **{c: m[c] for c in cols}})
        if copies:
            session.connection().execute(insert(_RESULTS), copies)
            summary_cells.add(session, [c["point_id"] for c in copies])
    return sweep, n_cached


def request_cancel(sweep: Sweep) -> None:
    """Flag the (locked) sweep for cancellation; a queued one, not taken by the runner yet, is
    cancelled at once (the runner only takes queued/running)."""
    sweep.cancel_requested = True
    if sweep.status == SweepStatus.QUEUED:
        sweep.status = SweepStatus.CANCELLED
        sweep.finished_at = utcnow()


def delete_sweep(session: Session, sweep_id: int) -> None:
    """Delete the sweep with its points, results and curves. Points of other sweeps that reused
    this sweep's results keep them: the curves move to one of those points (the heir), which
    becomes the source of the others."""
    own = select(Point.id).where(Point.sweep_id == sweep_id)
    dependents = session.execute(
        select(Point.source_point_id, Point.id)
        .where(Point.source_point_id.in_(own), Point.sweep_id != sweep_id)
        .order_by(Point.source_point_id, Point.id)
    ).all()
    heirs: dict[int, int] = {}
    for src, pid in dependents:
        if src is not None:  # always (the query selects dependents of this sweep's points)
            heirs.setdefault(src, pid)
    for src, heir in heirs.items():
        session.execute(
            update(Point).where(Point.source_point_id == src, Point.id != heir).values(source_point_id=heir)
        )
        session.execute(update(Point).where(Point.id == heir).values(source_point_id=None))
        session.execute(update(Curve).where(Curve.point_id == src).values(point_id=heir))
    session.execute(delete(Curve).where(Curve.point_id.in_(own)))
    session.execute(delete(Result).where(Result.sweep_id == sweep_id))
    session.execute(update(Point).where(Point.sweep_id == sweep_id).values(source_point_id=None))
    session.execute(delete(Point).where(Point.sweep_id == sweep_id))
    session.execute(delete(SweepTag).where(SweepTag.sweep_id == sweep_id))
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))


# ============================================================================= runner


def _dialect_insert(session: Session):
    """The dialect's INSERT construct (both have on_conflict_do_nothing)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def result_row(point_id, sweep_id, status, metrics, error, wall_seconds, worker, now) -> tuple:
    """A results-table row as insert_results takes it (a tuple in RESULT_COLUMNS order); non-finite
    metrics -> NULL."""
    return (
        point_id,
        sweep_id,
        str(status),
        error,
        wall_seconds,
        worker,
        *[_finite_or_none(metrics.get(name)) for name in METRIC_FIELDS],
        now,
    )


def first_per_point(rows: Sequence[tuple]) -> list[tuple]:
    """Rows keyed by their first element (a point id): the first row of each point, in order (a
    point reported twice keeps its first report)."""
    first: dict[Any, tuple] = {}
    for r in rows:
        first.setdefault(r[0], r)
    return list(first.values())


def insert_results(session: Session, rows: Sequence[tuple], unwritten: bool = False) -> set[int]:
    """Result rows (tuples in RESULT_COLUMNS order) inserted unless their point already has one:
    the ids really inserted (a point that already has its row keeps it: exactly one result row per
    point; a point twice in `rows` gets the first). The points that have a row are looked up first
    and the rest go in with ON CONFLICT (point_id) DO NOTHING as the safety net: a conflict there
    (a concurrent writer without the owner guard) raises WriteRace, rolling the batch back.
    `unwritten`: the caller knows no row of theirs exists (points still running under its owner,
    locked: a point gets its result row and leaves `running` in one transaction): no look-up."""
    if not rows:
        return set()
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        rows = first_per_point(rows)
        ids = [r[0] for r in rows]
    table = _RESULTS
    have = (
        set()
        if unwritten
        else set(session.execute(select(table.c.point_id).where(in_ids(session, table.c.point_id, ids))).scalars())
    )
    if have:
        rows = [r for r in rows if r[0] not in have]
    at = rows[0][-1] if rows else None
    if all(r[-1] is at for r in rows):  # a writer's batch: created at one time, converted once
        n = _bulk_insert(session, table, RESULT_COLUMNS[:-1], [r[:-1] for r in rows], {"created_at": at}, "point_id")
    else:
        n = _bulk_insert(session, table, RESULT_COLUMNS, rows, conflict="point_id")
    if n != len(rows):
        raise WriteRace(f"{len(rows) - n} of {len(rows)} result rows were written meanwhile by another transaction")
    if not rows:
        return set()
    # the summaries' rollup, in this transaction, from the rows' own values
    cols = list(zip(*rows))
    new_ids = cols[0]
    summary_cells.add_rows(
        session,
        in_ids(session, _POINTS.c.id, new_ids),
        new_ids,
        list(zip(cols[1], cols[2])),
        np.array([cols[i] for i in _SUMMARY_POSITIONS], dtype=np.float64).T,  # null -> nan
    )
    return set(new_ids)


def write_failed(session: Session, pairs: list[tuple[int, int]], message: str, now) -> None:
    """Record the (point_id, sweep_id) pairs as failed with `message` (result row + status)."""
    rows = [result_row(pid, sid, PointStatus.FAILED, {}, message, None, None, now) for pid, sid in pairs]
    insert_results(session, rows)
    session.execute(
        update(_POINTS)
        .where(in_ids(session, _POINTS.c.id, [p for p, _ in pairs]))
        .values(status=PointStatus.FAILED, owner=None)
    )


def exhausted_running_points(session: Session, max_attempts: int, sweep_id: int | None = None) -> list[tuple[int, int]]:
    """(point_id, sweep_id) of 'running' points already handed over `max_attempts` times
    (of one sweep, or of all sweeps when sweep_id is None)."""
    conds = [Point.status == PointStatus.RUNNING, Point.attempts >= max_attempts]
    if sweep_id is not None:
        conds.append(Point.sweep_id == sweep_id)
    return [(pid, sid) for pid, sid in session.execute(select(Point.id, Point.sweep_id).where(*conds)).all()]


def requeue_running(session: Session, sweep_id: int | None = None, owner: str | None = None) -> int:
    """'running' points (of one sweep, or all when sweep_id is None; only `owner`'s when given)
    back to 'pending' without an owner; how many."""
    conds = [Point.status == PointStatus.RUNNING]
    if sweep_id is not None:
        conds.insert(0, Point.sweep_id == sweep_id)
    if owner is not None:
        conds.append(Point.owner == owner)
    # DML executes to a CursorResult (SQLAlchemy's Session.execute is typed as the wider Result)
    done = cast(
        CursorResult[Any], session.execute(update(Point).where(*conds).values(status=PointStatus.PENDING, owner=None))
    )
    return done.rowcount


def active_sweeps(session: Session) -> list[tuple[int, bool]]:
    """(id, cancel_requested) of queued/running sweeps, oldest first."""
    return [
        (sid, cancel)
        for sid, cancel in session.execute(
            select(Sweep.id, Sweep.cancel_requested).where(Sweep.status.in_(_ACTIVE_SWEEP)).order_by(Sweep.id)
        ).all()
    ]


def other_active_sweep_exists(session: Session, sweep_id: int) -> bool:
    """Whether a queued/running sweep other than `sweep_id` exists."""
    return (
        session.execute(select(Sweep.id).where(Sweep.status.in_(_ACTIVE_SWEEP), Sweep.id != sweep_id).limit(1)).first()
        is not None
    )


def mark_running(sweep: Sweep) -> None:
    """queued -> running; started_at set the first time the runner takes the sweep."""
    if sweep.status == SweepStatus.QUEUED:
        sweep.status = SweepStatus.RUNNING
    if sweep.started_at is None:
        sweep.started_at = utcnow()


def unfinished_points(session: Session, sweep_id: int) -> tuple[int, int, int]:
    """(how many, lowest id, highest id) of the sweep's points still pending or running; (0, 0, -1)
    when none. The ids bound the sweep's pages of pending points (pending_page): a point is
    pending again only after running."""
    n, lo, hi = session.execute(
        select(func.count(), func.min(Point.id), func.max(Point.id)).where(
            Point.sweep_id == sweep_id, Point.status.in_((PointStatus.PENDING, PointStatus.RUNNING))
        )
    ).one()
    return (n, lo, hi) if n else (0, 0, -1)


def count_unfinished(session: Session, sweep_id: int) -> int:
    """Points of the sweep still pending or running."""
    return unfinished_points(session, sweep_id)[0]


def sweep_spec(session: Session, sweep_id: int) -> dict | None:
    """The sweep's stored spec (raises NoResultFound when the sweep does not exist)."""
    return session.execute(select(Sweep.spec).where(Sweep.id == sweep_id)).scalar_one()


def reuse_finished_page(session: Session, sweep_id: int, page_size: int) -> int:
    """One page of run-time dedupe: pending points of the sweep whose identity another sweep has
    finished (done/diverged, not itself a copy) become cached, with a copy of the source's result
    row (as POST /sweeps makes). Returns how many were reused (0: nothing left to reuse)."""
    P, S = Point, aliased(Point)
    pairs = session.execute(
        select(P.id, func.min(S.id))
        .join(
            S,
            and_(
                S.identity == P.identity,
                S.sweep_id != sweep_id,
                S.source_point_id.is_(None),
                S.status.in_(REUSABLE_POINT_STATUSES),
            ),
        )
        .where(P.sweep_id == sweep_id, P.status == PointStatus.PENDING)
        .group_by(P.id)
        .limit(page_size)
    ).all()
    if not pairs:
        return 0
    src_of = dict(pairs)
    src_rows = {
        r.point_id: r
        for r in session.execute(select(Result).where(Result.point_id.in_(set(src_of.values())))).scalars()
    }
    now = utcnow()
    rows, statuses = [], []
    for pid, src in src_of.items():
        r = src_rows.get(src)
        if r is None:
            continue
        # A copy of the source's row, as POST /sweeps makes for its cached points.
        rows.append(
            result_row(
                pid,
                sweep_id,
                r.status,
                {f: getattr(r, f) for f in METRIC_FIELDS},
                r.error,
                r.wall_seconds,
                r.worker,
                r.created_at or now,
            )
        )
        statuses.append({"id": pid, "status": r.status, "cached": True, "source_point_id": src})
    if not rows:
        return 0
    insert_results(session, rows)
    session.execute(update(Point), statuses)
    return len(rows)


@functools.cache
def _pending_page_statement(sqlite_json: bool) -> Select:
    """pending_page's SELECT (built once: its operators cost ~0.5 ms to build per page)."""
    P = _POINTS.c
    cols = [P.id, P.identity] + [
        type_coerce(P[name], Text) if sqlite_json and name in LIST_PARAM_FIELDS else P[name] for name in PARAM_FIELDS
    ]
    return (
        select(*cols)
        .where(
            P.id > bindparam("after_id"),
            P.id <= bindparam("last_id"),
            Unindexed(P.sweep_id) == bindparam("sweep_id"),
            Unindexed(P.status) == PointStatus.PENDING,
        )
        .order_by(P.id)
        .limit(bindparam("limit"))
    )


def pending_page(session: Session, sweep_id: int, after_id: int, last_id: int, limit: int) -> Sequence[tuple]:
    """Up to `limit` pending points of the sweep with after_id < id <= last_id (the highest id of
    its unfinished points: unfinished_points), in id order, which is the run order (insert_sweep
    stores the points in run_order): a page's points have ascending ids, mostly consecutive. Read
    along the primary key (db.Unindexed: SQLite would take the sweep's covering index and sort all
    its pending points for every page).
    Rows are (id, identity, *PARAM_FIELDS); nothing is changed (see claim_points)."""
    sqlite_json = not _is_postgres(session)  # SQLite: the JSON text, decoded once per distinct value below
    params = {"after_id": after_id, "last_id": last_id, "sweep_id": sweep_id, "limit": limit}
    rows = session.execute(_pending_page_statement(sqlite_json), params).all()
    if not sqlite_json:
        return rows
    decoded: dict[str | None, Any] = {None: None}
    out = []
    for row in rows:
        t = tuple(row)
        for i in _LIST_COLUMNS:
            v = t[i]
            if v not in decoded:
                decoded[v] = json.loads(v)
            t = (*t[:i], decoded[v], *t[i + 1 :])
        out.append(t)
    return out


def claim_points(session: Session, ids: list[int], owner: str | None, started: bool = False) -> set[int]:
    """pending -> running with `owner`, for the points of `ids` still pending; the ids claimed.
    `started`: their chunks started on a CPU already, so their `attempts` + 1 too (count_started
    in the same statement: one pass over the rows instead of two)."""
    if not ids:
        return set()
    P = _POINTS.c
    values: dict[str, Any] = {"status": PointStatus.RUNNING, "owner": owner}
    if started:
        values["attempts"] = P.attempts + 1
    stmt = (
        update(_POINTS)
        .where(in_ids(session, P.id, ids), P.status == PointStatus.PENDING)
        .values(**values)
        .returning(P.id)
    )
    return set(session.execute(stmt).scalars().all())


def count_started(session: Session, ids: list[int], owner: str | None) -> None:
    """attempts + 1 for the running points of `ids` held by `owner`: their chunk started on a CPU
    (so `attempts` counts runs that actually started, and recovery's poison check never fails a
    point that never ran)."""
    if ids:
        P = _POINTS.c
        conds = [in_ids(session, P.id, ids), P.status == PointStatus.RUNNING]
        if owner is not None:
            conds.append(P.owner == owner)
        session.execute(update(_POINTS).where(*conds).values(attempts=P.attempts + 1))


def owned_running(session: Session, ids: list[int], owner: str) -> set[int]:
    """Of `ids`, the points still running under `owner` (locked on Postgres for the transaction)."""
    if not ids:
        return set()
    P = _POINTS.c
    stmt = select(P.id).where(in_ids(session, P.id, ids), P.status == PointStatus.RUNNING, P.owner == owner)
    if _is_postgres(session):
        stmt = stmt.with_for_update()
    return set(session.execute(stmt).scalars().all())


def write_results_batch(
    session: Session, rows: list[tuple], blobs: dict[int, bytes], curves_format: str, owner: str | None = None
) -> set[int]:
    """Idempotent write of a batch of result rows (tuples in RESULT_COLUMNS order): only the rows
    really inserted get their curves row and their point status, in a few set-wise statements.
    With `owner`, only points still running under that owner are written (a runner that lost its
    lease changes nothing). Returns the inserted point ids."""
    if owner is not None:
        mine = owned_running(session, [r[0] for r in rows], owner)
        rows = [r for r in rows if r[0] in mine]
    if not rows:
        return set()
    inserted = insert_results(session, rows, unwritten=owner is not None)
    curve_rows = [(pid, blobs[pid]) for pid in (r[0] for r in rows) if pid in inserted and pid in blobs]
    _bulk_insert(session, _CURVES, ("point_id", "blob"), curve_rows, {"format": curves_format}, "point_id")
    by_status: dict[str, list[int]] = {}
    for r in rows:
        if r[0] in inserted:
            by_status.setdefault(r[2], []).append(r[0])
    P = _POINTS.c
    for status, ids in by_status.items():
        session.execute(update(_POINTS).where(in_ids(session, P.id, ids)).values(status=status, owner=None))
    return inserted


def mark_cancelled(sweep: Sweep) -> None:
    """Terminal 'cancelled' (finished_at kept if already set)."""
    if sweep.status != SweepStatus.CANCELLED:
        sweep.status = SweepStatus.CANCELLED
    if sweep.finished_at is None:
        sweep.finished_at = utcnow()


def point_status_counts(session: Session, sweep_id: int) -> dict[str, int]:
    """status -> number of points of the sweep (cached points under their copied status)."""
    return dict(
        session.execute(
            select(Point.status, func.count()).where(Point.sweep_id == sweep_id).group_by(Point.status)
        ).all()
    )


def first_failure(session: Session, sweep_id: int) -> str | None:
    """The error message of the sweep's failed result with the lowest point id."""
    return session.execute(
        select(Result.error)
        .where(Result.sweep_id == sweep_id, Result.status == PointStatus.FAILED)
        .order_by(Result.point_id)
        .limit(1)
    ).scalar()


def finish_sweep(sweep: Sweep, status: SweepStatus, error: str | None) -> None:
    """Terminal status (done/failed) with its error (None clears an old one) and finished_at."""
    sweep.status = status
    sweep.error = error
    sweep.finished_at = utcnow()


def record_runner_error(session: Session, sweep_id: int, message: str, give_up: bool) -> None:
    """The sweep's 'running' points back to pending and `message` on sweeps.error; `give_up`
    also fails the sweep."""
    requeue_running(session, sweep_id)
    sweep = session.get(Sweep, sweep_id)
    if sweep is not None:
        sweep.error = message
        if give_up:
            sweep.status = SweepStatus.FAILED
            sweep.finished_at = utcnow()


# ----------------------------------------------------------------------------- runner lease


def take_lease(
    session: Session, name: str, owner: str, now: dt.datetime, expires: dt.datetime
) -> Literal[False] | tuple[str, dt.datetime] | None:
    """Create, renew or take over the lease `name` for `owner` until `expires` (row locked).
    False: another owner holds it; (previous owner, its expiry): taken over; None: created or renewed."""
    lease = session.execute(select(RunnerLease).where(RunnerLease.name == name).with_for_update()).scalar_one_or_none()
    if lease is None:
        session.add(RunnerLease(name=name, owner=owner, expires_at=expires))
        session.flush()
        return None
    if lease.owner != owner and lease.expires_at > now:
        return False
    previous = None if lease.owner == owner else (lease.owner, lease.expires_at)
    lease.owner, lease.expires_at = owner, expires
    return previous


def release_lease(session: Session, name: str, owner: str, expired_at: dt.datetime) -> None:
    """Expire `owner`'s lease at once (a clean stop: a standby takes over without waiting)."""
    lease = session.get(RunnerLease, name, with_for_update=True)
    if lease is not None and lease.owner == owner:
        lease.expires_at = expired_at
