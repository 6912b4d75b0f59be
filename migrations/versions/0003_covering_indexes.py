"""covering indexes on points for result queries (two filters over 1e6 rows)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Each leads with one hot filter column and carries the others: a count filtered on them is an
# index-only scan; the axes follow each other cyclically so that neighbouring pairs are range seeks.
# status never leads (nearly every point is finished: such an index would only mislead the planner).
# They replace the single-column indexes on their leading columns and status, and the
# (sweep_id, status) index of 0002 (a prefix of ix_points_sweep_id_cover).
COVERING = {
    "ix_points_sweep_id_cover": ("sweep_id", "status", "init_scale", "k", "lambda0", "seed"),
    "ix_points_init_scale_cover": ("init_scale", "k", "lambda0", "seed", "sweep_id", "status"),
    "ix_points_k_cover": ("k", "lambda0", "seed", "init_scale", "sweep_id", "status"),
    "ix_points_lambda0_cover": ("lambda0", "seed", "init_scale", "k", "sweep_id", "status"),
    "ix_points_seed_cover": ("seed", "init_scale", "k", "lambda0", "sweep_id", "status"),
}
REPLACED = {
    "ix_points_sweep_id": ["sweep_id"],
    "ix_points_status": ["status"],
    "ix_points_init_scale": ["init_scale"],
    "ix_points_k": ["k"],
    "ix_points_lambda0": ["lambda0"],
    "ix_points_seed": ["seed"],
    "ix_points_sweep_id_status": ["sweep_id", "status"],
}


def upgrade() -> None:
    for name, cols in COVERING.items():
        op.create_index(name, "points", list(cols))
    for name in REPLACED:
        op.drop_index(name, table_name="points")
    # Partial: only cached points reference a source. A full index on a column that is NULL in nearly
    # every row makes SQLite's planner use it for `source_point_id IS NULL` instead of `identity`.
    op.drop_index("ix_points_source_point_id", table_name="points")
    op.create_index(
        "ix_points_source_point_id",
        "points",
        ["source_point_id"],
        sqlite_where=sa.text("source_point_id IS NOT NULL"),
        postgresql_where=sa.text("source_point_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_points_source_point_id", table_name="points")
    op.create_index("ix_points_source_point_id", "points", ["source_point_id"])
    for name, cols in REPLACED.items():
        op.create_index(name, "points", cols)
    for name in COVERING:
        op.drop_index(name, table_name="points")
