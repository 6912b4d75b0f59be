"""`cached` in ix_points_sweep_id_cover (a sweep's counts read the index alone); the results table's
indexes on sweep_id (a prefix of ix_results_sweep_id_point_id) and on status (no query filters
results by status alone) dropped: two fewer index entries written per result row

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

COVER = ("sweep_id", "status", "init_scale", "k", "lambda0", "seed")


def upgrade() -> None:
    # store.counts groups a sweep's points by (status, cached): index-only once `cached` is in it.
    # Last, so every range seek the index served before (sweep_id, status, axes...) still is one.
    op.drop_index("ix_points_sweep_id_cover", table_name="points")
    op.create_index("ix_points_sweep_id_cover", "points", [*COVER, "cached"])
    op.drop_index("ix_results_sweep_id", table_name="results")
    op.drop_index("ix_results_status", table_name="results")


def downgrade() -> None:
    op.create_index("ix_results_status", "results", ["status"])
    op.create_index("ix_results_sweep_id", "results", ["sweep_id"])
    op.drop_index("ix_points_sweep_id_cover", table_name="points")
    op.create_index("ix_points_sweep_id_cover", "points", list(COVER))
