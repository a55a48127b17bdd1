"""run queue metrics: a LangGraph deployment's pending and running runs beside its requests

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: every point written so far is of a deployment whose queue was not read.
    op.add_column("metric_points", sa.Column("pending_runs", sa.Integer(), nullable=True))
    op.add_column("metric_points", sa.Column("running_runs", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_column("running_runs")
        batch.drop_column("pending_runs")
