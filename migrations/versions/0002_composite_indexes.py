"""composite indexes: pending points of a sweep, result pages of a sweep

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The runner's scan "pending points of sweep S" and GET /sweeps/{id}/results ordered by point id.
    op.create_index("ix_points_sweep_id_status", "points", ["sweep_id", "status"])
    op.create_index("ix_results_sweep_id_point_id", "results", ["sweep_id", "point_id"])


def downgrade() -> None:
    op.drop_index("ix_results_sweep_id_point_id", table_name="results")
    op.drop_index("ix_points_sweep_id_status", table_name="points")
