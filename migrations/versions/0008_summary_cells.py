"""summary cells: the summaries' rollup (one row per sweep, status and combination of parameters
but the seed), created and filled from the existing result rows

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The cell columns as of this revision (models.CELL_PARAMS with the types of `points`).
PARAMS: tuple[tuple[str, Any, bool], ...] = (
    ("model", sa.String(16), False),
    ("m", sa.Integer(), False),
    ("n", sa.Integer(), False),
    ("k", sa.Integer(), False),
    ("eta", sa.Double(), False),
    ("steps", sa.Integer(), False),
    ("init", sa.String(16), False),
    ("integrator", sa.String(8), False),
    ("init_scale", sa.Double(), False),
    ("lambda0", sa.Double(), False),
    ("record_every", sa.Integer(), False),
    ("tol", sa.Double(), False),
    ("data_seed", sa.Integer(), True),
    ("fit_lambda0", sa.Boolean(), False),
    ("n_samples", sa.Integer(), False),
    ("depth", sa.Integer(), True),
    ("data_scale", sa.Double(), False),
)
# models.SUMMARY_METRICS as of this revision.
METRICS = (
    "q0_norm",
    "final_error",
    "final_error_linear",
    "time_to_tol",
    "time_to_tol_linear",
    "speedup",
    "rate_fit",
    "rate_pred",
    "rate_lin",
    "conservation_drift",
    "lambda0_fit",
    "lambda0_fit_error",
    "lambda0_fit_pos",
    "lambda0_fit_pos_error",
    "lambda0_fit_neg",
    "lambda0_fit_neg_error",
    "regularized_error",
    "closed_form_error",
    "eta_stability_limit",
    "diverged_at",
    "wall_seconds",
)


def upgrade() -> None:
    cols: list[sa.schema.SchemaItem] = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cell", sa.String(64), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
    ]
    cols += [sa.Column(name, typ, nullable=nullable) for name, typ, nullable in PARAMS]
    for m in METRICS:
        cols.append(sa.Column(f"{m}_n", sa.Integer(), nullable=False))
        cols += [sa.Column(f"{m}_{s}", sa.Double(), nullable=True) for s in ("shift", "resid", "m2", "min", "max")]
    op.create_table(
        "summary_cells",
        *cols,
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name=op.f("fk_summary_cells_sweep_id_sweeps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_summary_cells")),
        sa.UniqueConstraint("sweep_id", "status", "cell", name=op.f("uq_summary_cells_sweep_id_status_cell")),
    )
    # Nothing stored is lost: the cells of every result row already there. This is the code's own
    # rebuild (one definition of a cell); a later revision that changes `summary_cells`, `points` or
    # `results` must freeze a copy of it here (tests/service/test_migrations.py upgrades old data).
    from flowsweep.service import summary_cells

    summary_cells.rebuild(Session(bind=op.get_bind()))


def downgrade() -> None:
    op.drop_table("summary_cells")
