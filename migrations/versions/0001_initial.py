"""initial schema: sweeps, points, results, curves

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from flowsweep.service.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PARAM_INDEXED = (
    "model",
    "init",
    "integrator",
    "m",
    "n",
    "k",
    "init_scale",
    "lambda0",
    "seed",
    "eta",
    "steps",
    "record_every",
    "tol",
    "data_seed",
    "fit_lambda0",
    "n_samples",
)
METRICS_FLOAT = (
    "q0_norm",
    "final_error",
    "final_error_linear",
    "time_to_tol",
    "time_to_tol_linear",
    "speedup",
    "rate_fit",
    "rate_pred",
    "conservation_drift",
    "lambda0_fit",
    "lambda0_fit_error",
    "regularized_error",
    "closed_form_error",
)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("n_points", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
    )
    op.create_index("ix_sweeps_status", "sweeps", ["status"])
    op.create_index("ix_sweeps_created_at", "sweeps", ["created_at"])

    op.create_table(
        "points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("source_point_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(16), nullable=False),
        sa.Column("init", sa.String(16), nullable=False),
        sa.Column("integrator", sa.String(8), nullable=False),
        sa.Column("m", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("init_scale", sa.Double(), nullable=False),
        sa.Column("lambda0", sa.Double(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("eta", sa.Double(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("record_every", sa.Integer(), nullable=False),
        sa.Column("tol", sa.Double(), nullable=False),
        sa.Column("data_seed", sa.Integer(), nullable=True),
        sa.Column("fit_lambda0", sa.Boolean(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], name="fk_points_sweep_id_sweeps", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_point_id"], ["points.id"], name="fk_points_source_point_id_points"),
        sa.PrimaryKeyConstraint("id", name="pk_points"),
        sa.UniqueConstraint("sweep_id", "identity", name="uq_points_sweep_id_identity"),
    )
    for col in ("sweep_id", "identity", "status", "source_point_id") + PARAM_INDEXED:
        op.create_index(f"ix_points_{col}", "points", [col])

    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("point_id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        *[sa.Column(name, sa.Double(), nullable=True) for name in METRICS_FLOAT],
        sa.Column("diverged_at", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("wall_seconds", sa.Double(), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["point_id"], ["points.id"], name="fk_results_point_id_points", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], name="fk_results_sweep_id_sweeps", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
        sa.UniqueConstraint("point_id", name="uq_results_point_id"),
    )
    op.create_index("ix_results_sweep_id", "results", ["sweep_id"])
    op.create_index("ix_results_status", "results", ["status"])

    op.create_table(
        "curves",
        sa.Column("point_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["point_id"], ["points.id"], name="fk_curves_point_id_points", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("point_id", name="pk_curves"),
    )


def downgrade() -> None:
    op.drop_table("curves")
    op.drop_table("results")
    op.drop_table("points")
    op.drop_table("sweeps")
