"""pull-request previews: pull_requests, reports, deployment removal, revision attempts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.kernel.timestamps

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pull_request_number", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("removed_at", app.kernel.timestamps.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_deployments_pull_request_number"), ["pull_request_number"], unique=False
        )

    # Existing revisions are each the first attempt of their commit and env.
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch_op.add_column(
            sa.Column(
                "approval_required",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
        batch_op.add_column(sa.Column("approved_by", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("wait_reason", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("heartbeat_at", app.kernel.timestamps.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("report_lease_until", app.kernel.timestamps.UTCDateTime(), nullable=True)
        )
        batch_op.drop_constraint("uq_revision_source", type_="unique")
        batch_op.create_unique_constraint(
            "uq_revision_source", ["deployment_id", "commit_sha", "env_hash", "attempt"]
        )

    op.create_table(
        "pull_requests",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("open", "closed", name="pullrequeststate"),
            nullable=False,
        ),
        sa.Column("head_sha", sa.String(), nullable=False),
        sa.Column("head_ref", sa.String(), nullable=False),
        sa.Column("head_full_name", sa.String(), nullable=False),
        sa.Column("fork", sa.Boolean(), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("deployment_id", sa.String(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("comment_version", sa.Integer(), nullable=False),
        sa.Column("comment_rendered_version", sa.Integer(), nullable=False),
        sa.Column("comment_lease_until", app.kernel.timestamps.UTCDateTime(), nullable=True),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repository_id", "number", name="uq_pull_request_number"),
    )
    with op.batch_alter_table("pull_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pull_requests_repository_id"), ["repository_id"], unique=False
        )

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("created_at", app.kernel.timestamps.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["revision_id"], ["revisions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_revision_id"), ["revision_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_revision_id"))
    op.drop_table("reports")
    with op.batch_alter_table("pull_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pull_requests_repository_id"))
    op.drop_table("pull_requests")
    sa.Enum(name="pullrequeststate").drop(op.get_bind(), checkfirst=True)
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_revision_source", type_="unique")
        batch_op.create_unique_constraint(
            "uq_revision_source", ["deployment_id", "commit_sha", "env_hash"]
        )
        batch_op.drop_column("report_lease_until")
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("wait_reason")
        batch_op.drop_column("approved_by")
        batch_op.drop_column("approval_required")
        batch_op.drop_column("attempt")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_pull_request_number"))
        batch_op.drop_column("removed_at")
        batch_op.drop_column("pull_request_number")
