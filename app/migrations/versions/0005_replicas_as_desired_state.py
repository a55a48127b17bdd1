"""replicas as desired state: desired replica count, autoscaler state, replica states, endpoints

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

REPLICA_STATES = ("starting", "ready", "draining", "stopped", "dead")


def upgrade() -> None:
    # Plain ADD COLUMNs on deployments and revisions (a batch copy of deployments would trip
    # the foreign keys pointing at it). Every deployment keeps one replica until it scales.
    op.add_column(
        "deployments",
        sa.Column("desired_replicas", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column("deployments", sa.Column("scaler_state", sa.Text(), nullable=True))
    op.add_column("revisions", sa.Column("run_config", sa.Text(), nullable=True))

    state = sa.Enum(*REPLICA_STATES, name="replicastate")
    state.create(op.get_bind(), checkfirst=True)
    op.add_column("replicas", sa.Column("endpoint", sa.String(), nullable=True))
    op.add_column("replicas", sa.Column("state", state, nullable=False, server_default="starting"))
    op.add_column("replicas", sa.Column("exit_reason", sa.Text(), nullable=True))
    op.add_column(
        "replicas", sa.Column("ready_at", app.kernel.timestamps.UTCDateTime(), nullable=True)
    )
    op.add_column(
        "replicas", sa.Column("draining_since", app.kernel.timestamps.UTCDateTime(), nullable=True)
    )
    # A running replica was healthy (only healthy ones were kept) and published on loopback.
    op.execute(
        "UPDATE replicas SET endpoint = '127.0.0.1:' || host_port, state = 'ready', "
        "ready_at = started_at WHERE stopped_at IS NULL AND host_port IS NOT NULL"
    )
    op.execute("UPDATE replicas SET state = 'stopped' WHERE stopped_at IS NOT NULL")
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.alter_column("state", server_default=None)
        batch_op.drop_column("host_port")


def downgrade() -> None:
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host_port", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE replicas SET host_port = CAST(substr(endpoint, 11) AS INTEGER) "
        "WHERE endpoint LIKE '127.0.0.1:%'"
    )
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_column("draining_since")
        batch_op.drop_column("ready_at")
        batch_op.drop_column("exit_reason")
        batch_op.drop_column("state")
        batch_op.drop_column("endpoint")
    sa.Enum(name="replicastate").drop(op.get_bind(), checkfirst=True)
    op.drop_column("revisions", "run_config")
    op.drop_column("deployments", "scaler_state")
    op.drop_column("deployments", "desired_replicas")
