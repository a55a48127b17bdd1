"""github app: the App made by /setup (manifest flow) and its one-time states

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New tables only: nothing existing is copied or altered.
    op.create_table(
        "github_apps",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner_login", sa.String(), nullable=False),
        sa.Column("html_url", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("webhook_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "setup_states",
        sa.Column("state_hash", sa.String(), nullable=False),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("used_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("state_hash"),
    )


def downgrade() -> None:
    op.drop_table("setup_states")
    op.drop_table("github_apps")
