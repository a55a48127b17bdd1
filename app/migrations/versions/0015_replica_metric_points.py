"""replica metric points: each replica's CPU and memory per 10 s (an hour) and per minute (a week)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: nothing existing is copied or altered.
    op.create_table(
        "replica_metric_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("replica_id", sa.String(), nullable=False),
        sa.Column("at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("cpu_cores", sa.Float(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_replica_metric_points_series",
        "replica_metric_points",
        ["deployment_id", "step_seconds", "at"],
    )


def downgrade() -> None:
    op.drop_index("ix_replica_metric_points_series", table_name="replica_metric_points")
    op.drop_table("replica_metric_points")
