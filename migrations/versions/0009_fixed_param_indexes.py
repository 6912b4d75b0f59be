"""points: no single-column indexes on the parameters a sweep holds fixed (every point's flip and insert
paid for them; a filter on one of them selects whole sweeps)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# PointConfig fields that are never a sweep's axis (schemas.AXIS_NAMES: init_scale, k, lambda0, eta,
# data_scale, depth, seed keep their indexes), as of this revision. Each index cost every inserted
# point an entry, and on Postgres every status change too (a status change is never a HOT update:
# `status` is indexed, so each of the table's indexes gets a new entry).
DROPPED = (
    "model",
    "init",
    "integrator",
    "m",
    "n",
    "steps",
    "record_every",
    "tol",
    "data_seed",
    "fit_lambda0",
    "n_samples",
)


def upgrade() -> None:
    for col in DROPPED:
        op.drop_index(f"ix_points_{col}", table_name="points")


def downgrade() -> None:
    for col in DROPPED:
        op.create_index(f"ix_points_{col}", "points", [col])
