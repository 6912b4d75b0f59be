"""sweep tags and notes: `sweep_tags` (one row per sweep and tag) and `sweeps.notes`

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
    # One row per (sweep, tag): `tag=` filters are an indexed IN on both backends (no JSON operators).
    op.create_table(
        "sweep_tags",
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], name="fk_sweep_tags_sweep_id_sweeps", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sweep_id", "tag", name="pk_sweep_tags"),
    )
    op.create_index("ix_sweep_tags_tag", "sweep_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_sweep_tags_tag", table_name="sweep_tags")
    op.drop_table("sweep_tags")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("notes")
