"""drop deployments.requests_seen: the router's counter at the last usage tick, unused since
the usage tick reads the metrics sampler's points

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nothing reads or writes the column any more, so what it holds is dropped with it. On
    # SQLite the batch copies deployments (env.py turns foreign keys off while it runs, then
    # checks every row still points somewhere); elsewhere it is one ALTER TABLE.
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("requests_seen")


def downgrade() -> None:
    # Back as 0010 made it, nullable; empty, which the code at 0015 never noticed (it neither
    # read nor wrote the column).
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("requests_seen", sa.BigInteger(), nullable=True))
