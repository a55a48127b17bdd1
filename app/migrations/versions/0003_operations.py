"""operations: API tokens, secrets, deploy_on_push, deletion, rollbacks

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing deployments keep following their branch, and their env is all plain vars.
    # Plain ADD COLUMNs: SQLite does them in place (a batch copy of deployments would trip
    # the foreign keys of the tables pointing at it).
    op.add_column("deployments", sa.Column("secret_names", sa.Text(), nullable=True))
    op.add_column(
        "deployments",
        sa.Column("deploy_on_push", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "deployments", sa.Column("deleted_at", app.kernel.timestamps.UTCDateTime(), nullable=True)
    )
    op.add_column(
        "deployments", sa.Column("torn_down_at", app.kernel.timestamps.UTCDateTime(), nullable=True)
    )
    op.add_column("revisions", sa.Column("secret_names", sa.Text(), nullable=True))
    op.add_column("revisions", sa.Column("rollback_of", sa.String(), nullable=True))
    op.add_column("revisions", sa.Column("requested_by", sa.String(), nullable=True))

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_column("requested_by")
        batch_op.drop_column("rollback_of")
        batch_op.drop_column("secret_names")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("torn_down_at")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("deploy_on_push")
        batch_op.drop_column("secret_names")
