"""preview env: values a production deployment's previews get over its own env

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two new nullable columns: every existing deployment has no preview overrides, so its
    # previews run with its env exactly as before.
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("preview_env_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("preview_secret_names", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("preview_secret_names")
        batch.drop_column("preview_env_encrypted")
