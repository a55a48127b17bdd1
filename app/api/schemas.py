"""What the read API returns: plain views of the tables, never a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.deployments.environment import EnvScope
from app.kernel.models import ApiToken, Backup, Deployment, Replica, Revision
from manifests.containers import DeploymentType


class ReplicaView(BaseModel):
    id: str
    revision_id: str
    state: str
    """starting, ready (routed while its revision is live), draining, stopped or dead."""
    endpoint: str | None
    """host:port the router dials."""
    started_at: datetime
    ready_at: datetime | None
    exit_reason: str | None

    @classmethod
    def of(cls, replica: Replica) -> ReplicaView:
        return cls(
            id=replica.id,
            revision_id=replica.revision_id,
            state=replica.state.value,
            endpoint=replica.endpoint,
            started_at=replica.started_at,
            ready_at=replica.ready_at,
            exit_reason=replica.exit_reason,
        )


class BackupView(BaseModel):
    id: str
    deployment_id: str
    reason: str
    """scheduled, or final (taken before the deployment's database was dropped)."""
    state: str
    """running, done (restorable by id) or failed (see error; tried again at the next moment)."""
    size_bytes: int | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, backup: Backup) -> BackupView:
        return cls(
            id=backup.id,
            deployment_id=backup.deployment_id,
            reason=backup.reason,
            state=backup.state.value,
            size_bytes=backup.size_bytes,
            error=backup.error,
            started_at=backup.started_at,
            finished_at=backup.finished_at,
        )


class TracingView(BaseModel):
    """Where the deployment's traces go (never the key)."""

    project: str
    """The LangSmith project: named as the deployment."""
    project_url: str | None = None
    """Its page on LangSmith, once Slipway made (or found) it."""
    studio_url: str | None = None
    """LangGraph Studio on the deployment (LangGraph deployments only)."""
    error: str | None = None
    """Why the project could not be made yet (Slipway tries again each usage tick)."""


class IdleView(BaseModel):
    """The idle rules as they stand for this deployment (SLIPWAY_IDLE_*)."""

    keep: bool
    """Exempt (PATCH {"keep": true}): never noticed, never deleted."""
    last_used_at: datetime | None
    """The last request through the router or trace seen (or when the rules began counting)."""
    unused_days: int
    notice_at: datetime | None
    """When its owners are (or were) told it is unused; None: never (kept, a preview, off)."""
    delete_at: datetime | None
    """When it would be deleted if still unused; None: never."""
    notice_issue: int | None
    """The GitHub issue of the notice, while it is open."""
    notice_error: str | None = None
    """Why the notice's GitHub issue could not be opened (GitHub's answer: issues turned off
    on the repository, the App not allowed to write them); the notification channels still
    carry the notice."""
    notice_retry_at: datetime | None = None
    """When the refused issue is tried again (a day of the idle rules after the refusal)."""
    delete_held: str | None = None
    """Why it is not deleted although unused long enough: the notice has reached no one (no
    issue, no notification delivered). None: nothing holds it."""
    idle_ttl: str | None = None
    """A preview's `[previews] idle_ttl` (from slipway.toml at its newest commit), if any."""
    remove_at: datetime | None = None
    """When the preview is removed if still unused (as on close; a new commit brings it
    back); None: never (not a preview, no idle_ttl, or kept)."""


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
    deploy_on_push: bool
    status: str
    """active, or crash-looping (its replicas keep dying: see last_exit_reason); removing or
    removed (torn down, kept for a return); deleting or deleted."""
    last_exit_reason: str | None = None
    """Why the live revision's last replica died, when one died in the last minutes."""
    desired_replicas: int = 1
    replicas: list[ReplicaView] = Field(default_factory=list)
    """Its running replicas (of the live revision, and of others still starting or draining)."""
    last_backup: BackupView | None = None
    """Its newest backup of the database, however it went (a failed one says why)."""
    removed_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tracing: TracingView | None = None
    """Its tracing project, when the platform traces (SLIPWAY_LANGSMITH_API_KEY)."""
    idle: IdleView | None = None

    @classmethod
    def of(
        cls,
        deployment: Deployment,
        repository: str,
        url: str,
        *,
        replicas: list[Replica] | None = None,
        crash_looping: bool = False,
        last_exit_reason: str | None = None,
        last_backup: Backup | None = None,
        tracing: TracingView | None = None,
        idle: IdleView | None = None,
    ) -> DeploymentView:
        status = deployment_status(deployment)
        if status == "active" and crash_looping:
            status = "crash-looping"
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
            deploy_on_push=deployment.deploy_on_push,
            status=status,
            last_exit_reason=last_exit_reason,
            desired_replicas=deployment.desired_replicas,
            replicas=[ReplicaView.of(r) for r in replicas or []],
            last_backup=BackupView.of(last_backup) if last_backup else None,
            removed_at=deployment.removed_at,
            deleted_at=deployment.deleted_at,
            created_at=deployment.created_at,
            updated_at=deployment.updated_at,
            tracing=tracing,
            idle=idle,
        )


def deployment_status(deployment: Deployment) -> str:
    if deployment.removed_at is None:
        return "active"
    done = deployment.torn_down_at is not None and deployment.torn_down_at >= deployment.removed_at
    if deployment.deleted_at is not None:
        return "deleted" if done else "deleting"
    return "removed" if done else "removing"


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
    rollback_of: str | None
    requested_by: str | None
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
            rollback_of=revision.rollback_of,
            requested_by=revision.requested_by,
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


class Body(BaseModel):
    """Request bodies: unknown fields are refused, so a typo is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class EnvChangeBody(Body):
    set: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict)
    """Write-only: stored encrypted, never returned."""
    unset: list[Any] = Field(default_factory=list)
    scope: EnvScope = EnvScope.deployment
    """`previews`: what a production deployment's previews get over its env (no revision of
    production; each preview gets it at its next revision)."""


class ScopedEnvView(BaseModel):
    vars: dict[str, str]
    secrets: list[str]
    """Names only."""


class EnvView(ScopedEnvView):
    scope: EnvScope = EnvScope.deployment
    """`vars` and `secrets` are what the deployment's own containers get."""
    previews: ScopedEnvView | None = None
    """A production deployment's: what its previews get over `vars` and `secrets`."""


class NewDeploymentBody(Body):
    repository: str
    """owner/name of a repository the App is installed on."""
    branch: str
    name: str
    type: DeploymentType = DeploymentType.development
    deploy_on_push: bool = True


class DeployBody(Body):
    ref: str | None = None
    """Branch, tag or commit; default: the head of the deployment's branch."""


class RollbackBody(Body):
    revision: int
    """The revision's number (#3 is 3)."""


class DeploymentPatchBody(Body):
    keep: bool
    """True: exempt from the idle rules (never noticed, never deleted); false: counted again."""


class DeleteBody(Body):
    confirm: str
    """The deployment's slug, typed again: deletion drops its database for good."""


class Accepted(BaseModel):
    """What an operation started: the revision it made, if any, and where to follow it."""

    deployment: DeploymentView
    revision: RevisionView | None
    message: str


class Deleted(BaseModel):
    deployment_id: str
    status: str
    progress_url: str
    warning: str
    backups_url: str
    """Where the deleted deployment's last backup is listed while it is kept."""
    backup_kept_until: datetime


class NewTokenBody(Body):
    name: str
    read_only: bool = False


class TokenView(BaseModel):
    id: str
    name: str
    read_only: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenView:
        return cls(
            id=token.id,
            name=token.name,
            read_only=token.read_only,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class NewToken(TokenView):
    token: str
    """Shown this once; only its hash is kept."""


class CallerView(BaseModel):
    """Who a request's token is (`slipway auth status`)."""

    name: str
    read_only: bool


class RunQueueView(BaseModel):
    pending: int
    """Runs waiting for a queue worker."""
    running: int
    """Runs being worked on."""


class ScalingSampleView(BaseModel):
    at: datetime
    concurrency: float
    """Requests in flight over the ready replicas when sampled."""
    replicas: int
    queue: RunQueueView | None = None
    """A LangGraph deployment's run queue then (None: no queue, or it could not be read)."""


class ScalingDecisionView(BaseModel):
    at: datetime
    stable_concurrency: float | None
    """Average concurrency over the stable window (None: no sample in it)."""
    panic_concurrency: float | None
    """Average over the panic window, or the newest sample when that is higher."""
    desired: int
    actual: int
    reason: str
    """scale-up, panic, scale-down, waiting for delay, replica died, steady, no samples."""
    queue: RunQueueView | None = None
    """The run queue the count went by (LangGraph deployments)."""
    queue_replicas: int | None = None
    """What the run queue alone asked for: ceil((pending + running) / (jobs per worker x
    0.75)) within the policy's bounds."""


class ScalingPolicyView(BaseModel):
    min_replicas: int
    max_replicas: int
    target_concurrency: float
    stable_window_seconds: float
    panic_window_seconds: float
    scale_down_delay_seconds: float
    jobs_per_worker: int | None = None
    """Runs one replica works at once (N_JOBS_PER_WORKER) for a LangGraph deployment scaled on
    its run queue too; None: scaled on requests alone."""
    notes: list[str]
    """Where the repository's [scale] asked for more than the platform allows, or an
    N_JOBS_PER_WORKER that is not used as written."""


class ScalingView(BaseModel):
    deployment_id: str
    type: str
    current: int
    """Ready replicas serving the live revision."""
    desired: int
    policy: ScalingPolicyView
    samples: list[ScalingSampleView]
    decisions: list[ScalingDecisionView]
    """Oldest first."""


class DnsRecordView(BaseModel):
    type: str
    """CNAME, A or AAAA."""
    name: str
    value: str


class DomainView(BaseModel):
    domain: str
    deployment_id: str
    state: str
    """pending-dns (create one of `records`), issuing (its certificate is being obtained),
    active (served), or failed (`reason` says why)."""
    reason: str | None
    records: list[DnsRecordView] = Field(default_factory=list)
    """While pending: the DNS records that make it point here (any one of them)."""
    url: str
    created_at: datetime
    checked_at: datetime | None
    active_at: datetime | None
    note: str | None = None
    """For an apex without its www. name (or the reverse): that the other is a name of its own,
    not served unless added too."""


class NewDomainBody(Body):
    domain: str
    """A name such as app.example.com (an apex such as example.com too), not under
    BASE_DOMAIN."""
