"""preview idle ttl: how long a preview may go unused before it is removed

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One new nullable column: every existing preview has none, so it stays while its pull
    # request is open, exactly as before; its next commit reads the key from slipway.toml.
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("preview_idle_ttl", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("preview_idle_ttl")
