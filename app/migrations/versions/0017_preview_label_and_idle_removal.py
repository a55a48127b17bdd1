"""preview label and idle removal: which label brings back a preview removed for going unused

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, both nullable (a batch copy of deployments would trip the foreign keys
    # pointing at it). A preview removed for going unused before this version has no mark, so
    # only a new commit brings it back, as before; its next commit records its label.
    op.add_column("deployments", sa.Column("preview_label", sa.String(), nullable=True))
    op.add_column(
        "deployments",
        sa.Column("idle_removed_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("idle_removed_at")
        batch.drop_column("preview_label")
