"""status out of the covering indexes not led by sweep_id: a point's status changes twice while it runs
(pending -> running -> finished), and each change rewrote an entry of all five covering indexes, at
scattered places (they are in seed order, the runner's points are not)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# name -> (columns before, columns after); ix_points_sweep_id_cover keeps status (the runner's scans).
CHANGED = {
    "ix_points_init_scale_cover": ("init_scale", "k", "lambda0", "seed", "sweep_id"),
    "ix_points_k_cover": ("k", "lambda0", "seed", "init_scale", "sweep_id"),
    "ix_points_lambda0_cover": ("lambda0", "seed", "init_scale", "k", "sweep_id"),
    "ix_points_seed_cover": ("seed", "init_scale", "k", "lambda0", "sweep_id"),
}


def _recreate(with_status: bool) -> None:
    for name, cols in CHANGED.items():
        op.drop_index(name, table_name="points")
        op.create_index(name, "points", [*cols, *(("status",) if with_status else ())])


def upgrade() -> None:
    _recreate(with_status=False)


def downgrade() -> None:
    _recreate(with_status=True)
