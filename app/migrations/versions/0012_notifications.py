"""notifications: the outbox of messages to channels, and what a deployment has notified

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DEPLOYMENT_TIMESTAMPS = ("crash_loop_notified_at", "unready_since", "unhealthy_notified_at")


def upgrade() -> None:
    # Plain ADD COLUMNs (nullable: every existing deployment has notified nothing and names no
    # channel of its own) and one new table: nothing stored is copied or altered.
    op.add_column("deployments", sa.Column("notify_encrypted", sa.Text(), nullable=True))
    for name in DEPLOYMENT_TIMESTAMPS:
        op.add_column(
            "deployments", sa.Column(name, app.kernel.timestamps.UTCDateTime(), nullable=True)
        )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("revision_id", sa.String(), nullable=True),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("target_encrypted", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Boolean(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("sent_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.Column("gave_up_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifications_deployment_id"), ["deployment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_deployment_id"))
    op.drop_table("notifications")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for name in (*DEPLOYMENT_TIMESTAMPS, "notify_encrypted"):
            batch_op.drop_column(name)
