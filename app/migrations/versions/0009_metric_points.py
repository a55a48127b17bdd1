"""metric points: a deployment's traffic and replicas per 10 s (an hour) and per minute (a week)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: nothing existing is copied or altered.
    op.create_table(
        "metric_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("p50_ms", sa.Float(), nullable=True),
        sa.Column("p95_ms", sa.Float(), nullable=True),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.Column("in_flight", sa.Float(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_metric_points_deployment_id"), "metric_points", ["deployment_id"], unique=False
    )
    op.create_index(
        "ix_metric_points_series", "metric_points", ["deployment_id", "step_seconds", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_metric_points_series", table_name="metric_points")
    op.drop_index(op.f("ix_metric_points_deployment_id"), table_name="metric_points")
    op.drop_table("metric_points")
