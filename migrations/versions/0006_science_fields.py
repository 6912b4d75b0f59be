"""science fields: the data spectrum and scale of a point; both lambda0 branches, rate_lin and the gd
stability limit of a result

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

RESULT_COLUMNS = (
    "rate_lin",
    "lambda0_fit_pos",
    "lambda0_fit_pos_error",
    "lambda0_fit_neg",
    "lambda0_fit_neg_error",
    "eta_stability_limit",
)


def upgrade() -> None:
    with op.batch_alter_table("points") as b:
        b.add_column(sa.Column("y_singular_values", sa.JSON(), nullable=True))
        # existing points were computed with Y unscaled
        b.add_column(sa.Column("data_scale", sa.Double(), nullable=False, server_default="1.0"))
        b.create_index("ix_points_data_scale", ["data_scale"])
    with op.batch_alter_table("results") as b:
        for name in RESULT_COLUMNS:
            b.add_column(sa.Column(name, sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as b:
        for name in reversed(RESULT_COLUMNS):
            b.drop_column(name)
    with op.batch_alter_table("points") as b:
        b.drop_index("ix_points_data_scale")
        b.drop_column("data_scale")
        b.drop_column("y_singular_values")
