"""covering indexes on points for result queries (two filters over 1e6 rows)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

HOT = ("sweep_id", "status", "init_scale", "k", "lambda0", "seed")
# Each leads with one hot filter column and carries the others: a count filtered on any two of them is
# an index-only scan. They replace the single-column indexes on their leading columns (and the
# (sweep_id, status) index of 0002, a prefix of ix_points_sweep_id_cover).
# status never leads (nearly every point is finished: such an index would only mislead the planner).
COVERING = {f"ix_points_{lead}_cover": (lead,) + tuple(c for c in HOT if c != lead)
            for lead in ("sweep_id", "init_scale", "k", "lambda0", "seed")}
REPLACED = {"ix_points_sweep_id": ["sweep_id"], "ix_points_status": ["status"], "ix_points_init_scale": ["init_scale"], "ix_points_k": ["k"],
            "ix_points_lambda0": ["lambda0"], "ix_points_seed": ["seed"],
            "ix_points_sweep_id_status": ["sweep_id", "status"]}


def upgrade() -> None:
    for name, cols in COVERING.items():
        op.create_index(name, "points", list(cols))
    for name in REPLACED:
        op.drop_index(name, table_name="points")


def downgrade() -> None:
    for name, cols in REPLACED.items():
        op.create_index(name, "points", cols)
    for name in COVERING:
        op.drop_index(name, table_name="points")
