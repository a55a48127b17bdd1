"""backups: scheduled dumps of deployment databases, and the last one of a deleted deployment

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: nothing existing is copied or altered.
    op.create_table(
        "backups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("running", "done", "failed", name="backupstate"),
            nullable=False,
        ),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_backups_deployment_id"), "backups", ["deployment_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backups_deployment_id"), table_name="backups")
    op.drop_table("backups")
    sa.Enum(name="backupstate").drop(op.get_bind(), checkfirst=True)
