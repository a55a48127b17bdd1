"""slug holds: a deleted deployment's slug stays its repository's for a grace period

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: nothing existing is copied or altered. Deployments deleted before
    # this version already gave their slug up (renamed `deleted--…`): they hold nothing.
    op.create_table(
        "slug_holds",
        sa.Column("slug", sa.String(), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("released_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("held_until", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"]),
        sa.PrimaryKeyConstraint("slug"),
    )
    op.create_index(
        op.f("ix_slug_holds_repository_id"), "slug_holds", ["repository_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_slug_holds_repository_id"), table_name="slug_holds")
    op.drop_table("slug_holds")
