"""What the read API returns: plain views of the tables, never a secret."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from app.models import Deployment, Revision


class DeploymentView(BaseModel):
    id: str
    slug: str
    url: str
    repository: str
    branch: str
    environment: str
    type: str
    live_revision_id: str | None
    pull_request: int | None
    """The pull request a preview deployment previews; None for production."""
    removed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, deployment: Deployment, repository: str, url: str) -> DeploymentView:
        return cls(
            id=deployment.id,
            slug=deployment.slug,
            url=url,
            repository=repository,
            branch=deployment.branch,
            environment=deployment.environment,
            type=deployment.type.value,
            live_revision_id=deployment.live_revision_id,
            pull_request=deployment.pull_request_number,
            removed_at=deployment.removed_at,
            created_at=deployment.created_at,
            updated_at=deployment.updated_at,
        )


class RevisionView(BaseModel):
    id: str
    deployment_id: str
    number: int
    state: str
    commit_sha: str
    commit_message: str
    image: str | None
    build_method: str | None
    error: str | None
    attempt: int
    approval_required: bool
    approved_by: str | None
    created_at: datetime
    build_started_at: datetime | None
    build_finished_at: datetime | None
    deploy_started_at: datetime | None
    database_ready_at: datetime | None
    replica_started_at: datetime | None
    healthy_at: datetime | None
    live_at: datetime | None
    finished_at: datetime | None
    logs_url: str

    @classmethod
    def of(cls, revision: Revision, api_url: str) -> RevisionView:
        return cls(
            id=revision.id,
            deployment_id=revision.deployment_id,
            number=revision.number,
            state=revision.state.value,
            commit_sha=revision.commit_sha,
            commit_message=revision.commit_message,
            image=revision.image,
            build_method=revision.build_method,
            error=revision.error,
            attempt=revision.attempt,
            approval_required=revision.approval_required,
            approved_by=revision.approved_by,
            created_at=revision.created_at,
            build_started_at=revision.build_started_at,
            build_finished_at=revision.build_finished_at,
            deploy_started_at=revision.deploy_started_at,
            database_ready_at=revision.database_ready_at,
            replica_started_at=revision.replica_started_at,
            healthy_at=revision.healthy_at,
            live_at=revision.live_at,
            finished_at=revision.finished_at,
            logs_url=f"{api_url}/api/revisions/{revision.id}/logs",
        )


class DeliveryAccepted(BaseModel):
    delivery_id: str
    duplicate: bool
    """True when this delivery id was seen before: nothing new will happen."""
