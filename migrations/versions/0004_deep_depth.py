"""points.depth: the number of layers of the deep model (null for the other models)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: every point stored before is of a model without layers (its depth is null)
    op.add_column("points", sa.Column("depth", sa.Integer(), nullable=True))
    op.create_index("ix_points_depth", "points", ["depth"])


def downgrade() -> None:
    op.drop_index("ix_points_depth", table_name="points")
    with op.batch_alter_table("points") as batch:
        batch.drop_column("depth")
