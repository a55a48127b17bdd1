"""The control plane's tables, one class per domain word (see ARCHITECTURE.md).

Schema changes go through app/migrations; these classes describe the newest schema.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.kernel.timestamps import UTCDateTime, utcnow
from manifests.containers import DeploymentType


def new_id(prefix: str) -> str:
    """Short random ids: unique across platforms sharing one Docker engine or one Postgres."""
    return f"{prefix}{secrets.token_hex(6)}"


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _github_id(*, foreign_key: str | None = None, primary_key: bool = False) -> Any:
    """GitHub ids outgrow 32 bits (check runs already have), so they are BIGINT everywhere."""
    args: list[Any] = [ForeignKey(foreign_key)] if foreign_key else []
    return Field(
        default=None,
        sa_column=Column(
            BigInteger,
            *args,
            primary_key=primary_key,
            nullable=not primary_key and not foreign_key,
            index=bool(foreign_key),
        ),
    )


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Installation(SQLModel, table=True):
    """One GitHub App installation; its id is GitHub's."""

    __tablename__ = "installations"

    id: int = _github_id(primary_key=True)
    account_login: str
    account_type: str = "User"
    suspended_at: datetime | None = _ts()
    deleted_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()

    @property
    def active(self) -> bool:
        return self.suspended_at is None and self.deleted_at is None


class Repository(SQLModel, table=True):
    """A repository an Installation gave the App access to; its id is GitHub's."""

    __tablename__ = "repositories"

    id: int = _github_id(primary_key=True)
    installation_id: int = _github_id(foreign_key="installations.id")
    full_name: str = Field(index=True)
    default_branch: str = "main"
    connected: bool = True
    created_at: datetime = _created()
    updated_at: datetime = _created()

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


class Deployment(SQLModel, table=True):
    """A long-lived service built from one repository branch; revisions come and go under it."""

    __tablename__ = "deployments"

    id: str = Field(default_factory=lambda: new_id("dep_"), primary_key=True)
    repository_id: int = _github_id(foreign_key="repositories.id")
    slug: str = Field(unique=True)
    """DNS label: the deployment is served at <slug>.<BASE_DOMAIN>."""
    environment: str = "production"
    """GitHub environment name the deployment reports to."""
    branch: str
    type: DeploymentType = DeploymentType.production
    live_revision_id: str | None = None
    env_encrypted: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """User environment variables and secrets, as one encrypted JSON object."""
    secret_names: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """JSON list of the env keys that are secrets: write-only, never shown by the API."""
    preview_env_encrypted: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Variables and secrets its same-repository previews get over its own (scope "previews"),
    as one encrypted JSON object; only a production deployment has previews."""
    preview_secret_names: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """JSON list of the preview overrides' keys that are secrets."""
    deploy_on_push: bool = True
    """False: pushes to the branch are recorded, and only an API request deploys."""
    deleted_at: datetime | None = _ts()
    """Deleted by its owner (database dropped): nothing brings it back, its slug is free."""
    torn_down_at: datetime | None = _ts()
    """When the teardown after the last removal finished (everything it ran is gone)."""
    desired_replicas: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    """How many replicas of the live revision should run: 1 for development deployments and
    previews, the autoscaler's decision for production. The reconciler converges to it."""
    scaler_state: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The autoscaler's memory (recent samples, panic and scale-down bookkeeping, recent
    decisions) as JSON; see app/replicas/autoscaler.py."""
    pull_request_number: int | None = Field(default=None, index=True)
    """Set for a preview: the pull request it previews. Production deployments have none."""
    removed_at: datetime | None = _ts()
    """When it was torn down (its pull request closed, its repository left the App); a later
    revision (a reopen, a push after reinstalling) brings it back."""
    notify_encrypted: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The `[notify] urls` of the last commit fetched for it, as an encrypted JSON list (they
    carry tokens). Per deployment: a pull request's slipway.toml never redirects production's."""
    crash_loop_notified_at: datetime | None = _ts()
    """Set when a crash loop was notified; cleared when the loop is over, so one episode is
    one notification however many restarts it has."""
    unready_since: datetime | None = _ts()
    """Since when its live revision has had no ready replica (None while it has one)."""
    unhealthy_notified_at: datetime | None = _ts()
    """Set when "unhealthy" was notified; "recovered" is sent, and this cleared, once a
    replica is ready again."""
    keep: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    """Exempt from the idle rules (PATCH {"keep": true}): never noticed, never deleted."""
    tracing_project_id: str | None = None
    """Its tracing project on LangSmith (named as the deployment), once made."""
    tracing_project_url: str | None = None
    tracing_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Why its tracing project could not be made yet (retried each usage tick)."""
    last_used_at: datetime | None = _ts()
    """The newest moment it was seen used (a request, a trace); until it is, when the idle
    rules first looked at it: its unused days are counted from here."""
    idle_issue_number: int | None = None
    """The GitHub issue telling its owners it is unused (open or closed), if one was made."""
    idle_noticed_at: datetime | None = _ts()
    """When a channel first carried the notice that it is unused (its GitHub issue opened, or a
    notification delivered); None until one did, and once it is used again."""
    idle_notice_tried_at: datetime | None = _ts()
    """When the notice of its current unused spell was first sent out, carried or not; None
    once it is used again (or kept, or deleted)."""
    idle_notice_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Why the notice's GitHub issue could not be opened (GitHub's answer: issues turned off,
    no permission); None once it opened."""
    idle_notice_retry_at: datetime | None = _ts()
    """When the refused issue is tried again: a day (of the idle rules) after the refusal."""
    preview_idle_ttl: str | None = None
    """A preview's `[previews] idle_ttl` at its newest commit ("3d", "30s"): unused that long,
    it is removed as on close. None: it stays while its pull request is open."""
    preview_label: str | None = None
    """A preview's `[previews] label` at its newest commit: the label that brings it back once
    removed for going unused (the comment names it). None: the default, "preview"."""
    idle_removed_at: datetime | None = _ts()
    """When the usage tick removed this preview for going unused (`idle_ttl`); None once it is
    brought back, and for one removed for another reason (its pull request closed, its label
    taken off). Only such a preview is brought back by its label under `trigger = "every-pr"`
    (a closed pull request's never: closing is checked first)."""
    created_at: datetime = _created()
    updated_at: datetime = _created()

    @property
    def is_preview(self) -> bool:
        return self.pull_request_number is not None


class PullRequestState(enum.StrEnum):
    open = "open"
    closed = "closed"


class PullRequest(SQLModel, table=True):
    """A pull request of a connected repository, its preview deployment and its one comment."""

    __tablename__ = "pull_requests"
    __table_args__ = (UniqueConstraint("repository_id", "number", name="uq_pull_request_number"),)

    id: str = Field(default_factory=lambda: new_id("pr_"), primary_key=True)
    repository_id: int = _github_id(foreign_key="repositories.id")
    number: int
    state: PullRequestState = PullRequestState.open
    head_sha: str
    head_ref: str
    head_full_name: str
    """The repository the head commit lives in: a fork's name for a fork pull request."""
    fork: bool = False
    draft: bool = False
    deployment_id: str | None = Field(default=None, foreign_key="deployments.id")
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Why there is no revision for the head commit (shown in the comment), if there is none."""
    comment_id: int | None = _github_id()
    comment_version: int = 0
    """Bumped on every change the comment shows; the comment is current when it equals
    comment_rendered_version."""
    comment_rendered_version: int = 0
    comment_lease_until: datetime | None = _ts()
    """One worker at a time writes the comment, so two never both create one."""
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Database(SQLModel, table=True):
    """The Postgres database and role of one deployment, kept across its revisions."""

    __tablename__ = "databases"

    deployment_id: str = Field(foreign_key="deployments.id", primary_key=True)
    name: str
    role: str
    password_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    provisioned_at: datetime | None = _ts()
    created_at: datetime = _created()


class RevisionState(enum.StrEnum):
    queued = "queued"
    building = "building"
    deploying = "deploying"
    live = "live"
    superseded = "superseded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {RevisionState.superseded, RevisionState.failed, RevisionState.cancelled}
)
IN_FLIGHT_STATES = frozenset(
    {RevisionState.queued, RevisionState.building, RevisionState.deploying}
)
PENDING_STATES = frozenset({RevisionState.queued, RevisionState.building})
"""States a newer revision of the same deployment cancels."""


class Revision(SQLModel, table=True):
    """One immutable iteration of a deployment: a commit plus an env snapshot, one image."""

    __tablename__ = "revisions"
    __table_args__ = (
        UniqueConstraint(
            "deployment_id", "commit_sha", "env_hash", "attempt", name="uq_revision_source"
        ),
        UniqueConstraint("deployment_id", "number", name="uq_revision_number"),
    )

    id: str = Field(default_factory=lambda: new_id("rev_"), primary_key=True)
    deployment_id: str = Field(foreign_key="deployments.id", index=True)
    number: int
    """1, 2, 3 ... within the deployment; a higher number is newer."""
    commit_sha: str
    commit_message: str = ""
    env_hash: str
    """Digest of the env snapshot: same commit + same env is the same revision."""
    attempt: int = 1
    """Above 1 when the same commit and env were built again on purpose (Re-run, a reopened
    pull request, a push after the deployment was removed)."""
    approval_required: bool = False
    """A fork's commit: built only once a maintainer approved it on its check run."""
    approved_by: str | None = None
    wait_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Why a queued revision has not started (limits), as last told to the user."""
    heartbeat_at: datetime | None = _ts()
    """Written every few seconds by the job building or starting the revision; one that stops
    beating belongs to a dead worker and is failed by the recovery cron."""
    report_lease_until: datetime | None = _ts()
    """One worker at a time sends the revision's reports, so they reach GitHub in order."""
    env_encrypted: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The deployment's env (vars and secrets) as it was when the revision was made."""
    secret_names: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rollback_of: str | None = None
    """A rollback's source revision: its image (if still there) and env are used again."""
    requested_by: str | None = None
    """Who asked for it through the API (a token's name); None for a GitHub event."""
    state: RevisionState = RevisionState.queued
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    image: str | None = None
    run_config: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """How the image runs (port, health path, LangGraph runtime, [scale]) as JSON, recorded when
    it was built, so the reconciler can start more replicas without the source."""
    build_method: str | None = None
    delivery_id: str | None = None
    check_run_id: int | None = _github_id()
    github_deployment_id: int | None = _github_id()
    created_at: datetime = _created()
    build_started_at: datetime | None = _ts()
    build_finished_at: datetime | None = _ts()
    deploy_started_at: datetime | None = _ts()
    database_ready_at: datetime | None = _ts()
    replica_started_at: datetime | None = _ts()
    healthy_at: datetime | None = _ts()
    live_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class Report(SQLModel, table=True):
    """One report GitHub has yet to hear about a revision; sent in id order, then deleted."""

    __tablename__ = "reports"

    id: int | None = Field(default=None, primary_key=True)
    revision_id: str = Field(foreign_key="revisions.id", index=True)
    kind: str
    args: str = Field(sa_column=Column(Text, nullable=False))
    """JSON object of the report's arguments (already redacted)."""
    created_at: datetime = _created()


class Notification(SQLModel, table=True):
    """One message for one channel: recorded with the event, sent by the worker's job off the
    revision's path, retried with backoff; kept with its attempts and last error so the
    operator can see what was and was not delivered."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployments.id", index=True)
    revision_id: str | None = None
    event: str
    """failed, crash_loop, unhealthy, recovered, rollback, deleted."""
    channel: str
    """A label that names the channel without its secrets: `operator 1 (json)`,
    `repository 2 (slack)`."""
    target_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    """The channel's URL, encrypted (it carries tokens)."""
    tenant: bool = False
    """From the repository's slipway.toml: public addresses only."""
    title: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_attempt_at: datetime = _created()
    sent_at: datetime | None = _ts()
    gave_up_at: datetime | None = _ts()
    created_at: datetime = _created()


class ReplicaState(enum.StrEnum):
    starting = "starting"
    """Started, not yet answering its health check: no traffic."""
    ready = "ready"
    """Healthy: routed to while its revision is live."""
    draining = "draining"
    """Out of the route, finishing the requests it has, then stopped."""
    stopped = "stopped"
    """Stopped by Slipway (drained, scaled down, failed to start, torn down)."""
    dead = "dead"
    """Exited or was killed on its own; the reconciler replaces it."""


RUNNING_REPLICA_STATES = frozenset(
    {ReplicaState.starting, ReplicaState.ready, ReplicaState.draining}
)


class Replica(SQLModel, table=True):
    """One running copy of a revision; the router sends traffic to its endpoint once ready."""

    __tablename__ = "replicas"

    id: str = Field(default_factory=lambda: new_id("rep_"), primary_key=True)
    revision_id: str = Field(foreign_key="revisions.id", index=True)
    container_name: str
    """The runtime's name for it (unique; a container on Docker)."""
    container_id: str | None = None
    container_port: int
    """The port the app listens on inside the replica."""
    endpoint: str | None = None
    """host:port the router and the health probe dial, as the runtime reports it."""
    state: ReplicaState = ReplicaState.starting
    exit_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Why a dead replica stopped (exit code, out of memory), as shown to the user."""
    started_at: datetime = _created()
    ready_at: datetime | None = _ts()
    draining_since: datetime | None = _ts()
    stopped_at: datetime | None = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token for the API; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: str = Field(default_factory=lambda: new_id("tok_"), primary_key=True)
    name: str = Field(unique=True)
    token_hash: str = Field(unique=True)
    read_only: bool = False
    created_at: datetime = _created()
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class Delivery(SQLModel, table=True):
    """One webhook delivery, keyed by X-GitHub-Delivery so a redelivery does no second work."""

    __tablename__ = "deliveries"

    id: str = Field(primary_key=True)
    event: str
    action: str | None = None
    installation_id: int | None = _github_id()
    payload: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = _created()
    processed_at: datetime | None = _ts()
    outcome: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class GitHubAppRegistration(SQLModel, table=True):
    """The GitHub App made through /setup (GitHub's manifest flow); its id is GitHub's.

    Its key and secrets are stored encrypted with SECRET_KEY. App settings in the environment
    win over this row.
    """

    __tablename__ = "github_apps"

    id: int = _github_id(primary_key=True)
    slug: str
    name: str
    owner_login: str
    html_url: str
    """The App's page on GitHub; installing it starts at <html_url>/installations/new."""
    client_id: str
    client_secret_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    webhook_secret_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    private_key_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _created()


class SetupState(SQLModel, table=True):
    """One `state` handed to GitHub by /setup: good for one callback, within its hour.

    Only its SHA-256 is stored: a copied database gives no state that still works.
    """

    __tablename__ = "setup_states"

    state_hash: str = Field(primary_key=True)
    created_at: datetime = _created()
    expires_at: datetime = _ts(nullable=False)
    used_at: datetime | None = _ts()


class SlugHold(SQLModel, table=True):
    """A deleted deployment's slug, held for its repository until `held_until`.

    Someone who knew the address (a bookmark, a webhook another service calls, a DNS record)
    must not reach another repository's code at it the moment after a deletion: until then,
    only the repository that had the slug can take it again. One row per slug, the newest
    deletion's.
    """

    __tablename__ = "slug_holds"

    slug: str = Field(primary_key=True)
    repository_id: int = _github_id(foreign_key="repositories.id")
    deployment_id: str = Field(foreign_key="deployments.id")
    """The deleted deployment that had it (its row stays, under a `deleted--…` slug)."""
    released_at: datetime = _ts(nullable=False)
    held_until: datetime = _ts(nullable=False)


class BackupState(enum.StrEnum):
    running = "running"
    done = "done"
    failed = "failed"


class Backup(SQLModel, table=True):
    """One dump of a deployment's database into DATA_DIR/backups/<deployment id>/<id>.dump
    (pg_dump's custom format): made on the schedule, or once more before a deleted
    deployment's database is dropped. Its file is there while the state is done; a pruned
    backup's row goes with its file."""

    __tablename__ = "backups"

    id: str = Field(default_factory=lambda: new_id("bak_"), primary_key=True)
    deployment_id: str = Field(foreign_key="deployments.id", index=True)
    reason: str = "scheduled"
    """scheduled, or final (taken before a deleted deployment's database was dropped)."""
    state: BackupState = BackupState.running
    size_bytes: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """BIGINT: a dump can pass 2 GiB."""
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime = _created()
    finished_at: datetime | None = _ts()


class DomainState(enum.StrEnum):
    pending_dns = "pending-dns"
    """Added; its DNS does not point at the platform yet (the record to create is shown)."""
    issuing = "issuing"
    """Its DNS points here: routed, its certificate being obtained (with automatic HTTPS)."""
    active = "active"
    """Served: over HTTPS with its own certificate, or over plain HTTP without ACME."""
    failed = "failed"
    """No certificate came within the time allowed; `reason` says what to check."""


class Domain(SQLModel, table=True):
    """A custom domain of a deployment (issue 23): one deployment's alone, routed to it once
    its DNS points at the platform."""

    __tablename__ = "domains"

    name: str = Field(primary_key=True)
    """Lower case, no trailing dot: the key that makes a name one deployment's only."""
    deployment_id: str = Field(foreign_key="deployments.id", index=True)
    state: str = DomainState.pending_dns.value
    """A DomainState's value (a plain string column: a new state needs no migration)."""
    reason: str | None = None
    """Why it is pending or failed, as the last check saw it (what DNS answered)."""
    created_at: datetime = _created()
    checked_at: datetime | None = _ts()
    verified_at: datetime | None = _ts()
    """When its DNS was first seen pointing here (the start of `issuing`)."""
    active_at: datetime | None = _ts()


class UsageDay(SQLModel, table=True):
    """A day (of SLIPWAY_IDLE_DAY_SECONDS) a deployment was used: it served a request through
    the router or emitted a trace. Days without a row were unused; the idle rules read these."""

    __tablename__ = "usage_days"

    deployment_id: str = Field(foreign_key="deployments.id", primary_key=True)
    day: int = Field(primary_key=True)
    """Whole days since the epoch (UTC), in units of the idle rules' day."""
    requests: int = 0
    """Requests through the router seen that day (at least one when it was used by them)."""
    traces: bool = False
    """A trace was emitted to its project that day."""


class MetricPoint(SQLModel, table=True):
    """One deployment's traffic and replicas over one step: 10 s points for the last hour,
    1 min points for a week (`app.replicas.metrics`). A 10 s point is written only when
    something happened (an idle deployment costs one row a minute)."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_series", "deployment_id", "step_seconds", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(index=True)
    at: datetime = _ts(nullable=False)
    """The step's end."""
    step_seconds: int
    requests: int = 0
    errors: int = 0
    """Answers with a 5xx status (the app's, or the router's own 502/503)."""
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    in_flight: float = 0.0
    replicas: int = 0
    restarts: int = 0
    """Replicas that died during the step."""
    pending_runs: int | None = None
    """A LangGraph deployment's runs waiting for a queue worker at the step's last reading
    (None: not a LangGraph deployment on the pg runtime, or its queue was not read)."""
    running_runs: int | None = None
    """Its runs being worked on then."""


class ReplicaMetricPoint(SQLModel, table=True):
    """One replica's CPU and memory over one step, beside its deployment's MetricPoint: 10 s
    points for the last hour (written only when the replica used CPU during the step), 1 min
    points for a week (`app.replicas.metrics`)."""

    __tablename__ = "replica_metric_points"
    __table_args__ = (
        Index("ix_replica_metric_points_series", "deployment_id", "step_seconds", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str
    replica_id: str
    at: datetime = _ts(nullable=False)
    """The step's end."""
    step_seconds: int
    cpu_cores: float | None = None
    """CPU used over the step, in cores (1.0: one core all the time); None for a replica's
    first read, which has nothing to take a difference from."""
    memory_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    """At the step's end for a 10 s point; the largest read of the minute for a 1 min one."""
