"""custom domains: a deployment's own names, routed once their DNS points at the platform

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table only: nothing existing is copied or altered.
    op.create_table(
        "domains",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("checked_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.Column("verified_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.Column("active_at", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(op.f("ix_domains_deployment_id"), "domains", ["deployment_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_domains_deployment_id"), table_name="domains")
    op.drop_table("domains")
