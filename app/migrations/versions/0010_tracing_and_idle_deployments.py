"""tracing projects and the idle rules: usage per day, notices, keep

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = (
    "keep",
    "tracing_project_id",
    "tracing_project_url",
    "tracing_error",
    "last_used_at",
    "requests_seen",
    "idle_issue_number",
    "idle_noticed_at",
)


def upgrade() -> None:
    # Plain ADD COLUMNs (a batch copy of deployments would trip the foreign keys pointing at
    # it). No usage was recorded before this version: the idle rules count an existing
    # deployment's days from the first time they look at it, not from its creation, so an
    # upgrade deletes nothing (app/deployments/usage.py).
    op.add_column(
        "deployments", sa.Column("keep", sa.Boolean(), nullable=False, server_default="0")
    )
    op.add_column("deployments", sa.Column("tracing_project_id", sa.String(), nullable=True))
    op.add_column("deployments", sa.Column("tracing_project_url", sa.String(), nullable=True))
    op.add_column("deployments", sa.Column("tracing_error", sa.Text(), nullable=True))
    op.add_column(
        "deployments",
        sa.Column("last_used_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
    )
    op.add_column("deployments", sa.Column("requests_seen", sa.BigInteger(), nullable=True))
    op.add_column("deployments", sa.Column("idle_issue_number", sa.Integer(), nullable=True))
    op.add_column(
        "deployments",
        sa.Column("idle_noticed_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
    )
    op.create_table(
        "usage_days",
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("traces", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("deployment_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("usage_days")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)
