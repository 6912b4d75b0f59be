"""runner lease and point owners: several service processes on one database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from flowsweep.service.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The runner that flipped a point to running; every later change of that point is guarded by it.
    with op.batch_alter_table("points") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
    # One row per lease: the process holding the 'runner' lease runs the database's sweeps.
    op.create_table(
        "runner_lease",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_runner_lease")),
    )


def downgrade() -> None:
    op.drop_table("runner_lease")
    with op.batch_alter_table("points") as batch:
        batch.drop_column("owner")
