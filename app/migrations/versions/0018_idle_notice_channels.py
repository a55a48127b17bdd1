"""the idle notice's outcome: when it was first sent out, why its issue was refused, when it is
tried again

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

COLUMNS = ("idle_notice_tried_at", "idle_notice_error", "idle_notice_retry_at")


def upgrade() -> None:
    # Plain ADD COLUMNs (a batch copy of deployments would trip the foreign keys pointing at
    # it). A notice given before this version had its issue opened (idle_noticed_at was set
    # only then): the empty columns say so, nothing to fill in.
    op.add_column(
        "deployments",
        sa.Column("idle_notice_tried_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
    )
    op.add_column("deployments", sa.Column("idle_notice_error", sa.Text(), nullable=True))
    op.add_column(
        "deployments",
        sa.Column("idle_notice_retry_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    # A refused issue's record is lost: the code at 0016 tries the issue again every tick.
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)
