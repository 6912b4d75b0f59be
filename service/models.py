"""SQLAlchemy 2 models: sweeps, points, results, curves.

- `points` holds every PointConfig field as a typed, indexed column plus the point's `identity`
  (sha256 of its canonical parameters + core's version) used to reuse finished points across sweeps.
- `results` holds exactly one row per finished point (UNIQUE point_id): the metrics of
  core.types.METRIC_FIELDS as columns. A cached point gets its own copy of the source's row.
- `curves` holds one compact array blob per computed point (never one row per step); a cached point
  has none and reads its source's through `points.source_point_id`.
- `summary_cells` (revision 0008) holds the summaries' rollup: one row per (sweep, status, cell), a cell
  being one combination of every parameter a summary can group or filter on except the seed; per
  metric, the count of non-null values, their mean (as shift + resid/count), M2 and min/max
  (service.summary_cells keeps it in step with `results`).

Keep this file in step with migrations/versions (tests/service/test_migrations.py compares them).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flowsweep.core.types import METRIC_FIELDS, PARAM_FIELDS
from flowsweep.status import FINISHED_POINT_STATUSES, REUSABLE_POINT_STATUSES, PointStatus, SweepStatus  # noqa: F401 (re-exported)
from flowsweep.workers.codec import CURVES_FORMAT  # noqa: F401 (the curves' format column; re-exported)

SWEEP_STATUSES = tuple(s.value for s in SweepStatus)
POINT_STATUSES = tuple(s.value for s in PointStatus)

# Parameters stored as JSON lists: part of a point's identity, not filters, group keys or sort keys.
LIST_PARAM_FIELDS = ("y_singular_values",)
# The numeric result fields a summary aggregates (SPEC §4's metrics and wall_seconds).
SUMMARY_METRICS: tuple[str, ...] = (*METRIC_FIELDS, "wall_seconds")
# A summary cell's parameters: every scalar parameter but the seed (seeds are what a cell aggregates).
CELL_PARAMS: tuple[str, ...] = tuple(f for f in PARAM_FIELDS if f not in LIST_PARAM_FIELDS and f != "seed")
# Per metric of a cell: `_n` values (non-null), their mean shift + resid/_n (shift: the mean of the
# first values merged; resid: sum(x - shift), so the mean keeps every digit when shift is 1e8 and the
# spread 1e-3), `_m2` = sum((x - mean)^2) (merged with Chan et al.'s formula), `_min`, `_max`.
CELL_STATS: tuple[str, ...] = ("n", "shift", "resid", "m2", "min", "max")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):  # noqa: ANN001
        if value is not None:
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default=SweepStatus.QUEUED.value)
    spec: Mapped[dict] = mapped_column(JSON)
    n_points: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)  # revision 0005

    points: Mapped[list[Point]] = relationship(back_populates="sweep", passive_deletes=True)


class Point(Base):
    __tablename__ = "points"
    __table_args__ = (UniqueConstraint("sweep_id", "identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))  # ix_points_sweep_id_cover
    identity: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=PointStatus.PENDING.value)  # indexed below (covering)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    source_point_id: Mapped[int | None] = mapped_column(ForeignKey("points.id"))  # partial index below
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The runner (service.leadership.Leadership.owner) that flipped it to running (revision 0004).
    owner: Mapped[str | None] = mapped_column(String(64))

    # PointConfig fields (core/types.py), each typed and indexed for the result filters.
    model: Mapped[str] = mapped_column(String(16), index=True)
    init: Mapped[str] = mapped_column(String(16), index=True)
    integrator: Mapped[str] = mapped_column(String(8), index=True)
    m: Mapped[int] = mapped_column(Integer, index=True)
    n: Mapped[int] = mapped_column(Integer, index=True)
    k: Mapped[int] = mapped_column(Integer)  # indexed below (covering)
    init_scale: Mapped[float] = mapped_column(Double)  # indexed below (covering)
    lambda0: Mapped[float] = mapped_column(Double)  # indexed below (covering)
    seed: Mapped[int] = mapped_column(Integer)  # indexed below (covering)
    eta: Mapped[float] = mapped_column(Double, index=True)
    steps: Mapped[int] = mapped_column(Integer, index=True)
    record_every: Mapped[int] = mapped_column(Integer, index=True)
    tol: Mapped[float] = mapped_column(Double, index=True)
    data_seed: Mapped[int | None] = mapped_column(Integer, index=True)
    fit_lambda0: Mapped[bool] = mapped_column(Boolean, index=True)
    n_samples: Mapped[int] = mapped_column(Integer, index=True)
    depth: Mapped[int | None] = mapped_column(Integer, index=True)  # model deep only (revision 0004)
    y_singular_values: Mapped[list | None] = mapped_column(JSON)
    data_scale: Mapped[float] = mapped_column(Double, index=True, default=1.0, server_default="1.0")

    sweep: Mapped[Sweep] = relationship(back_populates="points")
    result: Mapped[Result | None] = relationship(
        back_populates="point", foreign_keys="Result.point_id", uselist=False, passive_deletes=True
    )

    def config(self):
        """This point's core.types.PointConfig."""
        from flowsweep.core.types import PointConfig

        return PointConfig(**{f: getattr(self, f) for f in PARAM_FIELDS})


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), unique=True)
    # indexed by ix_results_sweep_id_point_id (below); status unindexed (revision 0009)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))

    q0_norm: Mapped[float | None] = mapped_column(Double)
    final_error: Mapped[float | None] = mapped_column(Double)
    final_error_linear: Mapped[float | None] = mapped_column(Double)
    time_to_tol: Mapped[float | None] = mapped_column(Double)
    time_to_tol_linear: Mapped[float | None] = mapped_column(Double)
    speedup: Mapped[float | None] = mapped_column(Double)
    rate_fit: Mapped[float | None] = mapped_column(Double)
    rate_pred: Mapped[float | None] = mapped_column(Double)
    conservation_drift: Mapped[float | None] = mapped_column(Double)
    lambda0_fit: Mapped[float | None] = mapped_column(Double)
    lambda0_fit_error: Mapped[float | None] = mapped_column(Double)
    regularized_error: Mapped[float | None] = mapped_column(Double)
    closed_form_error: Mapped[float | None] = mapped_column(Double)
    diverged_at: Mapped[int | None] = mapped_column(Integer)
    rate_lin: Mapped[float | None] = mapped_column(Double)
    lambda0_fit_pos: Mapped[float | None] = mapped_column(Double)
    lambda0_fit_pos_error: Mapped[float | None] = mapped_column(Double)
    lambda0_fit_neg: Mapped[float | None] = mapped_column(Double)
    lambda0_fit_neg_error: Mapped[float | None] = mapped_column(Double)
    eta_stability_limit: Mapped[float | None] = mapped_column(Double)

    error: Mapped[str | None] = mapped_column(Text)
    wall_seconds: Mapped[float | None] = mapped_column(Double)
    worker: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    point: Mapped[Point] = relationship(back_populates="result", foreign_keys=[point_id])


class SweepTag(Base):
    """A sweep's label (revision 0005): one row per (sweep, tag), so `tag=` filters are an indexed IN."""

    __tablename__ = "sweep_tags"

    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Curve(Base):
    __tablename__ = "curves"

    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), primary_key=True)
    # How `blob` is encoded (workers.codec): "f8-v2" = a small header + the float64 arrays t, error,
    # error_linear, singular_values and (when present) error_regularized_fit; "npz-v1" = np.savez.
    format: Mapped[str] = mapped_column(String(16), default=CURVES_FORMAT)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


def _summary_cell_columns() -> list[Column]:
    points = Point.__table__.c
    cols: list[Column] = [
        Column("id", Integer, primary_key=True),
        Column("sweep_id", ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=False),
        Column("status", String(16), nullable=False),
        # sha256 of the cell's parameter values (service.summary_cells.cell_digest): the upsert's key
        Column("cell", String(64), nullable=False),
        Column("n_rows", Integer, nullable=False),  # result rows in the cell (the summary's `count`)
    ]
    cols += [Column(f, points[f].type, nullable=points[f].nullable) for f in CELL_PARAMS]
    for m in SUMMARY_METRICS:
        cols.append(Column(f"{m}_n", Integer, nullable=False))
        cols += [Column(f"{m}_{stat}", Double) for stat in CELL_STATS[1:]]
    return cols


class SummaryCell(Base):
    """The summaries' rollup (revision 0008): see the module docstring and service.summary_cells."""

    __table__ = Table(
        "summary_cells", Base.metadata, *_summary_cell_columns(), UniqueConstraint("sweep_id", "status", "cell")
    )


class RunnerLease(Base):
    """The 'runner' lease (revision 0004): its owner runs the database's sweeps until expires_at."""

    __tablename__ = "runner_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


# The metric columns must be exactly core's METRIC_FIELDS (SPEC §4), and `points` has a column for
# every PointConfig field (PARAM_FIELDS).
_missing = [f for f in METRIC_FIELDS if f not in Result.__table__.c]
assert not _missing, f"results lacks metric columns {_missing}"
_missing = [f for f in PARAM_FIELDS if f not in Point.__table__.c]
assert not _missing, f"points lacks parameter columns {_missing}"

# Composite indexes. Revision 0002: per-sweep result pages ordered by point id (and, since 0009,
# every other lookup of a sweep's result rows: the sweep_id index alone was its prefix).
Index("ix_results_sweep_id_point_id", Result.sweep_id, Result.point_id)

# Revision 0003: covering indexes for result queries. A point has a result row exactly when its
# status is finished (the runner writes both in one transaction), so a filtered `count` needs the
# points table only. Each index leads with one hot filter column and carries the others, so a
# count filtered on them is an index-only scan (no table lookups) on SQLite and Postgres; the axes
# follow each other cyclically so that the pairs (init_scale, k), (k, lambda0), (lambda0, seed),
# (seed, init_scale) and sweep_id with anything are direct range seeks. `status` never leads (nearly
# every point is finished: such an index would only tempt the planner away from a selective one); it
# sits second after sweep_id for the runner's "points of sweep S with status X" scans.
COVERING_INDEXES = {
    # `cached` (revision 0009): store.counts reads this index alone
    "ix_points_sweep_id_cover": ("sweep_id", "status", "init_scale", "k", "lambda0", "seed", "cached"),
    "ix_points_init_scale_cover": ("init_scale", "k", "lambda0", "seed", "sweep_id", "status"),
    "ix_points_k_cover": ("k", "lambda0", "seed", "init_scale", "sweep_id", "status"),
    "ix_points_lambda0_cover": ("lambda0", "seed", "init_scale", "k", "sweep_id", "status"),
    "ix_points_seed_cover": ("seed", "init_scale", "k", "lambda0", "sweep_id", "status"),
}
for _name, _cols in COVERING_INDEXES.items():
    Index(_name, *[Point.__table__.c[c] for c in _cols])

# Partial (only cached points reference a source): with a full index, SQLite's planner picks it for
# `source_point_id IS NULL` (true of nearly every row) over the selective identity index.
Index(
    "ix_points_source_point_id",
    Point.source_point_id,
    sqlite_where=Point.source_point_id.isnot(None),
    postgresql_where=Point.source_point_id.isnot(None),
)
