"""The pipeline, teardown and comment services wired to fakes, as app.bootstrap wires them.

Deliveries are applied the way the worker applies them (app.deliveries.inbox on a migrated control
plane), so tests drive the platform through pushes and pull-request events. GitHub is the one
fake GitHub of every tier (tests/support/fake_github), reached by Slipway's own client
(app/github) in this thread, with no socket: what the platform sends is checked as GitHub checks
it, and tests read what GitHub shows from the fake.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from app.access.links import LinkSigner, RevisionLinks
from app.bootstrap import Adapters, Wiring, wire
from app.deliveries.bus import OrderBus
from app.deliveries.facts import GitHubCommitFacts
from app.deliveries.inbox import apply_delivery, record_delivery
from app.deployments.idle import IdleRules
from app.deployments.janitor import Janitor, JanitorLimits
from app.deployments.operations import DeploymentOperations
from app.deployments.teardown import Teardown
from app.deployments.tracing import TracingProjects
from app.deployments.usage import UsageTracker
from app.feedback.comments import PreviewComments
from app.feedback.notifications import PlatformNotifier
from app.feedback.notify_outbox import NotificationOutbox
from app.feedback.outbox import ReportOutbox
from app.github.auth import GitHubApp
from app.github.rest import GitHubRest
from app.kernel.addresses import Route
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import Deployment, PullRequest, Revision
from app.kernel.orders import WorkOrder
from app.kernel.ports import ChannelSender, RunQueueReader, TracingService
from app.replicas.autoscaler import AutoscaleDefaults
from app.replicas.metrics import MetricsSampler
from app.replicas.reconciler import RESYNC_SECONDS, Reconciler
from app.replicas.replica_set import ReplicaConfig, Replicas
from app.rollout.admission import AdmissionLimits
from app.rollout.pipeline import PipelineConfig, RevisionPipeline
from app.rollout.recovery import Recovery
from tests.support.fake_github import (
    ZERO_SHA,
    CheckRun,
    FakeGitHub,
    check_run_payload,
    pull_request_payload,
    push_payload,
)
from tests.support.fake_github import Deployment as GitHubDeployment
from tests.support.fake_github.in_process import InProcessTransport
from tests.support.git_repos import CommitStore
from tests.unit.fakes import (
    FakeBuilder,
    FakeDatabases,
    FakeHealthProbe,
    FakeRouter,
    FakeRuntime,
    FakeServiceImages,
    TickingClock,
)

SECRETS = SecretBox("k" * 32)
INSTALLATION = 41
HOST = "web.localhost"
URL = "http://web.localhost:8000/"
DOCKERFILE = "FROM scratch\nCOPY www /www\n"
AUTOSCALE = AutoscaleDefaults(
    target_concurrency=10,
    max_replicas=10,
    stable_window_seconds=60,
    panic_window_seconds=6,
    scale_down_delay_seconds=1800,
)


class WorkerKilled(BaseException):
    """The worker process dying mid-job: nothing in the pipeline may catch it."""


def github_client(fake: FakeGitHub) -> GitHubRest:
    """Slipway's GitHub client as bootstrap makes it (the App's JWT, installation tokens), its
    requests handed to the fake's routes in this thread instead of a socket.

    The App's one transport, which every client it makes shares, is the in-process one (an
    httpx.HTTPTransport would also cost an SSL context, ~40 ms, for each test's platform).
    """
    transport = InProcessTransport(fake)
    return GitHubRest(GitHubApp(fake.app_id, fake.private_key_pem, fake.url, transport=transport))


@dataclass
class InlineQueue:
    """The worker's queue as the unit tier runs it: a teardown and a comment sync run at once,
    as their jobs would; a revision's job does not (tests run revisions when they choose)."""

    platform: Platform

    def run_revision(self, revision_id: str) -> None:
        pass

    def tear_down(self, deployment_id: str, *, drop_database: bool, reason: str) -> None:
        platform = self.platform
        for cancelled in platform.teardown.remove(
            deployment_id, drop_database=drop_database, reason=reason, spare_revived=True
        ):
            platform.pipeline.report_cancelled(cancelled)
        platform.comments.deployment_changed(deployment_id)

    def sync_comment(self, pull_request_id: str) -> None:
        self.platform.comments.pull_request_changed(pull_request_id)


@dataclass
class Platform:
    """The pipeline wired to fakes, as app.bootstrap wires it to the real services."""

    sessions: SessionFactory
    repository: dict[str, Any]
    config: PipelineConfig
    github: FakeGitHub
    """What GitHub shows (check runs, deployments, comments) and what it refuses."""
    commits: CommitStore
    """The repository's git objects, which GitHub serves."""
    client: GitHubRest
    """How the platform reaches GitHub."""
    builder: FakeBuilder
    runtime: FakeRuntime
    router: FakeRouter
    databases: FakeDatabases
    health: FakeHealthProbe
    replica_config: ReplicaConfig = field(
        default_factory=lambda: ReplicaConfig(health_timeout_seconds=30.0)
    )
    autoscale: AutoscaleDefaults = AUTOSCALE
    """The pipeline's and the reconciler's (tests replace it, then call __post_init__)."""
    pipeline: RevisionPipeline = field(init=False)
    replicas: Replicas = field(init=False)
    reconciler: Reconciler = field(init=False)
    wall: list[float] = field(default_factory=lambda: [1_000_000.0])
    """The reconciler's wall clock (seconds), moved by tests."""
    teardown: Teardown = field(init=False)
    comments: PreviewComments = field(init=False)
    notifier: PlatformNotifier = field(init=False)
    reports: ReportOutbox = field(init=False)
    recovery: Recovery = field(init=False)
    janitor: Janitor = field(init=False)
    operations: DeploymentOperations = field(init=False)
    orders: OrderBus = field(init=False)
    """Carries out work orders on `InlineQueue`: teardowns and comments at once."""
    cache_prunes: list[int] = field(default_factory=list)
    """The build-cache sizes the janitor pruned to."""
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    dispatches: list[int] = field(default_factory=list)
    """One entry per "capacity freed" the pipeline announced."""
    clock: TickingClock = field(
        default_factory=lambda: TickingClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
    )
    channels: ChannelSender | None = None
    """Where notifications go (None: recorded only); tests set it, then call __post_init__."""
    notify: tuple[str, ...] = ()
    """The operator's notification channels (SLIPWAY_NOTIFY)."""
    notifications: NotificationOutbox = field(init=False)
    tracing_service: TracingService | None = None
    """LangSmith's projects (a FakeLangSmith through the real adapter), when a test traces."""
    run_queues: RunQueueReader | None = None
    """LangGraph deployments' run queues (a test's stand-in), when a test scales on them."""
    idle: IdleRules = field(default_factory=IdleRules)
    requests_counted: bool = True
    """The metrics sampler runs (SLIPWAY_METRICS)."""
    usage: UsageTracker = field(init=False)
    metrics: MetricsSampler = field(init=False)
    tracing_projects: TracingProjects = field(init=False)

    def __post_init__(self) -> None:
        """The services wired by app.bootstrap's own `wire`, over the fakes."""
        self.links = RevisionLinks(
            "http://slipway.test", LinkSigner(b"k" * 32, timedelta(days=30), self.clock)
        )
        self.config = replace(self.config, autoscale=self.autoscale)
        wired = wire(
            self.sessions,
            SECRETS,
            Adapters(
                github=self.client,
                runtime=self.runtime,
                router=self.router,
                databases=self.databases,
                builder=self.builder,
                health=self.health,
                service_images=FakeServiceImages(),
                prune_build_cache=self.cache_prunes.append,
                channels=self.channels,
                tracing=self.tracing_service,
                run_queues=self.run_queues,
            ),
            Wiring(
                pipeline=self.config,
                replicas=self.replica_config,
                admission=self.limits,
                janitor=JanitorLimits(keep_build_logs=2, payload_retention=timedelta(days=14)),
                links=self.links,
                check_name="Slipway",
                recovery_after=timedelta(seconds=120),
                resync_seconds=RESYNC_SECONDS,
                notify=self.notify,
                idle=self.idle,
                requests_counted=self.requests_counted,
            ),
            clock=self.clock,
            wall=lambda: self.wall[0],
        )
        self.reports = wired.reports
        self.teardown = wired.teardown
        self.comments = wired.comments
        self.notifier = wired.notifier
        self.notifier.use_dispatcher(lambda: self.dispatches.append(1))
        self.janitor = wired.janitor
        self.recovery = wired.recovery
        self.replicas = wired.replicas
        self.pipeline = wired.pipeline
        self.orders = OrderBus(queue=InlineQueue(self), check_runs=self.pipeline)
        self.reconciler = wired.reconciler
        self.notifications = wired.notifications
        self.usage = wired.usage
        self.metrics = wired.metrics
        self.tracing_projects = wired.tracing_projects
        self.operations = DeploymentOperations(
            sessions=self.sessions,
            secrets=SECRETS,
            commits=self.client,
            clock=self.clock,
            notifications=self.notifications,
        )

    def limit(self, **limits: int) -> None:
        self.limits = AdmissionLimits(**limits)
        self.__post_init__()

    def reconfigure(self, **changes: Any) -> None:
        """Change the pipeline's config or the replicas' (health timeout, confinement, ...)."""
        replica_fields = {f for f in vars(self.replica_config)}
        self.replica_config = replace(
            self.replica_config, **{k: v for k, v in changes.items() if k in replica_fields}
        )
        self.config = replace(
            self.config, **{k: v for k, v in changes.items() if k not in replica_fields}
        )
        self.__post_init__()

    def push(self, files: dict[str, str] | None = None) -> str:
        """Push a commit to the default branch; returns the revision it made."""
        return self.push_commit(self.commit(files))

    def push_commit(self, sha: str) -> str:
        """A push of `sha` to the default branch (GitHub may not have it); returns the revision."""
        payload = push_payload(self.repository, INSTALLATION, "refs/heads/main", ZERO_SHA, sha)
        outcome = self.deliver("push", payload)
        [revision_id] = outcome.start_revisions
        return revision_id

    def commit(self, files: dict[str, str] | None = None, message: str = "Update") -> str:
        """A new commit GitHub can serve, of exactly `files`; returns its sha."""
        files = files if files is not None else {"Dockerfile": DOCKERFILE}
        return self.commits.commit(files, message)

    def deliver(self, event: str, payload: dict[str, Any]) -> WorkOrder:
        """Apply a delivery and do what the worker's handle_delivery does with its outcome,
        except running revisions: tests run them when they choose."""
        delivery_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        with self.sessions() as session:
            record_delivery(session, delivery_id, event, json.dumps(payload).encode(), payload, now)
            outcome = apply_delivery(session, delivery_id, SECRETS, now, self.facts)
        assert outcome is not None, "the delivery was already applied"
        return self.carry_out(outcome)

    def carry_out(self, outcome: WorkOrder) -> WorkOrder:
        """What the worker does with an outcome (a delivery's or an API request's)."""
        self.orders.carry_out(outcome)
        return outcome

    @property
    def facts(self) -> GitHubCommitFacts:
        return GitHubCommitFacts(self.client)

    # -- pull requests ----------------------------------------------------------------------
    def pull_request_event(
        self,
        action: str,
        number: int,
        head_sha: str,
        *,
        draft: bool = False,
        merged: bool = False,
        base: str = "main",
        fork: str | None = None,
        sender: str = "octo-dev",
    ) -> WorkOrder:
        """Pull request `number` changed on GitHub as `action` says (opened the first time),
        then GitHub's delivery of it."""
        full_name = self.full_name
        if not self.commits.has_branch(base):
            self.set_branch(base, self.commit(message=f"the tip of {base}"))
        try:
            before: str | None = str(self.github.pull_request(full_name, number)["head"]["sha"])
        except KeyError:
            before = None
            self.github.add_pull_request(
                full_name,
                number,
                head_sha=head_sha,
                head_ref=f"feature-{number}",
                base_ref=base,
                draft=draft,
                title=f"Change #{number}",
                head_full_name=fork,
            )
        if action == "closed":
            closing: dict[str, Any] = {"merged": True} if merged else {"state": "closed"}
            self.github.update_pull_request(full_name, number, head_sha=head_sha, **closing)
        else:
            self.github.update_pull_request(
                full_name, number, head_sha=head_sha, draft=draft, state="open"
            )
        moved = before if action == "synchronize" and before != head_sha else None
        payload = pull_request_payload(
            action,
            self.repository,
            INSTALLATION,
            self.github.pull_request(full_name, number),
            sender=sender,
            before=moved,
        )
        return self.deliver("pull_request", payload)

    def label_event(self, action: str, number: int, name: str = "preview") -> WorkOrder:
        """Someone put label `name` on pull request `number` (`labeled`) or took it off
        (`unlabeled`), then GitHub's delivery of it."""
        full_name = self.full_name
        if action == "labeled":
            label = self.github.label_pull_request(full_name, number, name)
        else:
            label = self.github.unlabel_pull_request(full_name, number, name)
        payload = pull_request_payload(
            action,
            self.repository,
            INSTALLATION,
            self.github.pull_request(full_name, number),
            label=label,
        )
        return self.deliver("pull_request", payload)

    def open_pull_request(self, number: int, files: dict[str, str] | None = None) -> str:
        """Open a pull request with a new head commit; returns the pull request's id."""
        outcome = self.pull_request_event("opened", number, self.commit(files))
        [pull_request_id] = outcome.comments
        return pull_request_id

    def press(
        self, revision_id: str, action: str, sender: str, identifier: str | None = None
    ) -> WorkOrder:
        """A check_run delivery: Re-run (rerequested) or a button (requested_action)."""
        revision = self.revision(revision_id)
        assert revision.check_run_id is not None
        payload = check_run_payload(
            action,
            self.repository,
            INSTALLATION,
            self.github.check_run_json(self.full_name, revision.check_run_id),
            sender=sender,
            requested_action_identifier=identifier,
        )
        return self.deliver("check_run", payload)

    def preview_deployment(self, number: int) -> Deployment:
        with self.sessions() as session:
            deployment = session.exec(
                select(Deployment).where(Deployment.pull_request_number == number)
            ).one()
            return deployment

    def pull_request(self, pull_request_id: str) -> PullRequest:
        with self.sessions() as session:
            pull_request = session.get(PullRequest, pull_request_id)
            assert pull_request is not None
            return pull_request

    def comment_is_current(self, pull_request_id: str) -> bool:
        pull_request = self.pull_request(pull_request_id)
        return pull_request.comment_version == pull_request.comment_rendered_version

    def forget_comment_id(self, pull_request_id: str) -> None:
        """A lost row: the comment exists on GitHub but Slipway no longer knows its id."""
        with self.sessions() as session:
            pull_request = session.get(PullRequest, pull_request_id)
            assert pull_request is not None
            pull_request.comment_id = None
            session.commit()

    def revision(self, revision_id: str) -> Revision:
        with self.sessions() as session:
            revision = session.get(Revision, revision_id)
            assert revision is not None
            return revision

    def deployment(self) -> Deployment:
        with self.sessions() as session:
            [deployment] = session.exec(select(Deployment)).all()
            return deployment

    def deployment_by_id(self, deployment_id: str) -> Deployment:
        with self.sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            assert deployment is not None
            return deployment

    def set_env(self, env: dict[str, str]) -> None:
        with self.sessions() as session:
            [deployment] = session.exec(select(Deployment)).all()
            deployment.env_encrypted = SECRETS.encrypt_env(env)
            session.commit()

    def port_of(self, revision_id: str) -> int:
        [container] = self.runtime.of_revision(revision_id)
        return container.host_port

    # -- what GitHub shows -----------------------------------------------------------------
    @property
    def full_name(self) -> str:
        return str(self.repository["full_name"])

    def check_runs(self, sha: str | None = None) -> list[CheckRun]:
        """The repository's check runs (of one commit), oldest first."""
        runs = self.github.check_runs(self.full_name)
        return [run for run in runs if sha is None or run.head_sha == sha]

    def check_run(self, revision_id: str) -> CheckRun:
        """The newest check run of the revision's commit (an approved fork commit has two)."""
        return self.check_runs(self.revision(revision_id).commit_sha)[-1]

    def summary(self, revision_id: str) -> str:
        return str(self.check_run(revision_id).output["summary"])

    def github_deployments(self) -> list[GitHubDeployment]:
        return self.github.deployments(self.full_name)

    def deployment_state(self, sha: str) -> str | None:
        """The state of the commit's one GitHub deployment (None before its first status)."""
        [deployment] = [d for d in self.github_deployments() if d.sha == sha]
        return deployment.state

    def comments_on(self, number: int) -> list[str]:
        return [str(comment["body"]) for comment in self.github.comments(self.full_name, number)]

    def everything_shown(self) -> str:
        """Every text GitHub shows of the repository: each state of each check run, deployments
        and their statuses, comments."""
        return json.dumps(
            [
                [(run.history, run.annotations) for run in self.check_runs()],
                [(d.description, d.statuses) for d in self.github_deployments()],
                [self.github.comments(self.full_name, n) for n in self.pull_request_numbers()],
            ],
            default=str,
        )

    def pull_request_numbers(self) -> list[int]:
        with self.sessions() as session:
            return sorted({p.number for p in session.exec(select(PullRequest)).all()})

    def expect_refusals(self, *fragments: str) -> None:
        """What GitHub refused so far, each refusal matching one of `fragments`, and at least one
        of each; then forgotten, so the fixture's check at the end holds the rest."""
        errors = self.github.errors
        for fragment in fragments:
            assert any(fragment in error for error in errors), (fragment, errors)
        unexpected = [e for e in errors if not any(fragment in e for fragment in fragments)]
        assert not unexpected, unexpected
        self.github.clear_errors()

    # -- what people do on GitHub ---------------------------------------------------------
    def set_permission(self, login: str, role: str) -> None:
        """`login`'s role on the repository (unknown logins have none)."""
        self.github.set_permission(self.full_name, login, role)

    def set_branch(self, branch: str, sha: str) -> None:
        self.commits.point(branch, sha)

    def refuse_reports(self) -> None:
        """The App lost its checks and deployments permissions (tokens issued from now on)."""
        self.github.set_installation_permissions(
            INSTALLATION, {"contents": "read", "metadata": "read", "pull_requests": "write"}
        )


def world_platform(sessions: SessionFactory, fake_github: FakeGitHub, tmp_path: Path) -> Platform:
    fake_github.add_installation(INSTALLATION, "octo")
    commits = CommitStore(tmp_path / "github" / "octo" / "web.git")
    builder = FakeBuilder()
    runtime = FakeRuntime(images=builder.images)
    return Platform(
        sessions=sessions,
        repository=fake_github.add_repository(INSTALLATION, "octo", "web", commits.path),
        config=PipelineConfig(
            data_dir=tmp_path / "data",
            build_timeout_seconds=600.0,
            base_domain="localhost",
            router_port=8000,
            autoscale=AUTOSCALE,
        ),
        github=fake_github,
        commits=commits,
        client=github_client(fake_github),
        builder=builder,
        runtime=runtime,
        router=FakeRouter(),
        databases=FakeDatabases(),
        health=FakeHealthProbe(runtime=runtime),
    )


def route(platform: Platform, *revision_ids: str) -> list[Route]:
    """What the router should hold: web.localhost → the replicas of these revisions."""
    upstreams = tuple(f"127.0.0.1:{platform.port_of(r)}" for r in revision_ids)
    return [Route(hostname=HOST, deployment_id=platform.deployment().id, upstreams=upstreams)]
