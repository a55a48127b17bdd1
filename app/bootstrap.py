"""The one place where real implementations of the ports are built from settings.

The API, the worker's on_startup and the tests all call `bootstrap`; nothing connects to
anything at import time.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.access.browser_sessions import BrowserSessions
from app.access.links import LinkSigner, RevisionLinks
from app.adapters.apprise_channels import AppriseChannels
from app.adapters.caddy import AutomaticHttps, CaddyRouter, WildcardCertificate
from app.adapters.container_usage import ContainerUsage
from app.adapters.dns import SystemResolver
from app.adapters.docker import DockerRuntime
from app.adapters.docker_output import DockerOutputs
from app.adapters.langsmith import LangSmithProjects
from app.adapters.pg_tools import PostgresTools
from app.adapters.postgres import PostgresProvisioner, RoleLimits
from app.adapters.router_certificates import RouterCertificates
from app.adapters.run_queue import PostgresRunQueues
from app.backups.schedule import Schedule
from app.backups.service import BackupPolicy, DatabaseBackups
from app.deliveries.facts import CommitFacts, GitHubCommitFacts
from app.deployments.domains import Domains
from app.deployments.idle import IdleRules
from app.deployments.janitor import Janitor, JanitorLimits
from app.deployments.teardown import Teardown
from app.deployments.tracing import TracingProjects
from app.deployments.usage import UsageTracker
from app.feedback.comments import PreviewComments
from app.feedback.notifications import PlatformNotifier
from app.feedback.notify_outbox import DEFAULT_MAX_ATTEMPTS, NotificationOutbox, operator_urls
from app.feedback.outbox import ReportOutbox
from app.feedback.reports import GitHubReporter
from app.github.rest import GitHubRest
from app.kernel.crypto import SecretBox, load_or_create_secret_key
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.locks import DeploymentLocks
from app.kernel.ports import (
    ChannelSender,
    Clock,
    CommitResolver,
    ContainerRuntime,
    DatabaseDumps,
    DatabaseProvisioner,
    GitHubPort,
    HealthProbe,
    ImageBuilder,
    ReplicaOutputs,
    ReplicaResources,
    RouterPort,
    RunQueueReader,
    ServiceImages,
    TracingService,
)
from app.kernel.settings import Settings, require
from app.kernel.timestamps import utcnow
from app.kernel.tls import shared_tls_context
from app.replicas.autoscaler import autoscale_defaults
from app.replicas.health import HttpHealthProbe
from app.replicas.metrics import MetricsSampler
from app.replicas.reconciler import Reconciler
from app.replicas.replica_set import ReplicaConfig, Replicas
from app.replicas.retirement import Retirement
from app.replicas.routes import RouteTable
from app.replicas.run_queue import RunQueues
from app.replicas.server_logs import ServerLogArchive, ServerLogs
from app.rollout.admission import Admission, AdmissionLimits
from app.rollout.endings import Endings
from app.rollout.phases.admit import Admit
from app.rollout.phases.build import Build
from app.rollout.phases.deploy import Deploy
from app.rollout.phases.fetch import Fetch
from app.rollout.phases.go_live import GoLive
from app.rollout.phases.retire import Retire
from app.rollout.pipeline import Phases, PipelineConfig, RevisionPipeline
from app.rollout.recovery import Recovery
from app.setup.credentials import GitHubAppCredentials, LazyGitHubApp
from app.setup.flow import AppSetup, load_manifest_template
from app.setup.manifests import GitHubManifestConverter
from app.setup.token import SetupTokenFile, setup_token_path
from builders.build_limits import BuildLimits
from builders.docker_cli import find_docker_cli
from builders.images import BuildKitBuilder
from builders.index_proxy import IndexPassThrough, credentials_of
from builders.source import UnpackLimits
from builders.valkey_image import ValkeyImage
from manifests.containers import Confinement, DeploymentType, LogRotation
from manifests.langgraph_image import LangGraphBuild
from manifests.recipes import default_recipes
from manifests.tracing import Tracing, studio_url


@dataclass
class Platform:
    """Every service of a worker or an API process, wired over one set of adapters."""

    adapters: Adapters
    sessions: SessionFactory
    secrets: SecretBox
    pipeline: RevisionPipeline
    replicas: Replicas
    routes: RouteTable
    reconciler: Reconciler
    teardown: Teardown
    comments: PreviewComments
    notifier: PlatformNotifier
    admission: Admission
    reports: ReportOutbox
    notifications: NotificationOutbox
    recovery: Recovery
    janitor: Janitor
    facts: CommitFacts
    clock: Clock
    metrics: MetricsSampler
    usage: UsageTracker
    tracing_projects: TracingProjects
    backups: DatabaseBackups | None = None
    """None where no pg tools are wired (the unit tier's fakes without dumps)."""

    @property
    def databases(self) -> DatabaseProvisioner:
        return self.adapters.databases


log = logging.getLogger(__name__)


def secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key is not None:
        return SecretBox(settings.secret_key.get_secret_value())
    return SecretBox(load_or_create_secret_key(settings.data_dir / "secret.key"))


def private_data_dir(data_dir: Path) -> None:
    """DATA_DIR holds keys, the control plane, logs and builds: the platform's user only.

    Created 0700 (an existing one is tightened to it); files in it are made 0600 by the
    process umask `slipway` sets. The embedded Postgres, which runs as its own system user,
    later adds search permission (o+x, not o+r) so it can reach its data directory inside.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "DATA_DIR was open to other users; made it 0700",
            extra={"data_dir": str(data_dir), "mode": f"{mode:04o}"},
        )
        data_dir.chmod(0o700)


def link_signer(settings: Settings, secrets: SecretBox, clock: Clock = utcnow) -> LinkSigner:
    return LinkSigner(
        secrets.derive_key("signed-links"),
        timedelta(days=settings.link_lifetime_days),
        clock,
    )


def browser_sessions(
    settings: Settings, secrets: SecretBox, clock: Clock = utcnow
) -> BrowserSessions:
    """The dashboard's sign-ins: sealed with their own key, lasting `DASHBOARD_SESSION_HOURS`."""
    return BrowserSessions(
        secrets.derive_key("dashboard-session"),
        timedelta(hours=settings.dashboard_session_hours),
        clock,
    )


def open_database(settings: Settings) -> SessionFactory:
    """Migrate to the newest schema, then hand out sessions."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    migrate(settings.control_plane_url, settings.data_dir)
    return SessionFactory(make_engine(settings.control_plane_url))


def app_setup(
    settings: Settings,
    sessions: SessionFactory,
    secrets: SecretBox,
    credentials: GitHubAppCredentials,
    clock: Clock = utcnow,
) -> AppSetup:
    """The /setup service, talking to the GitHub that GITHUB_URL and GITHUB_API_URL name."""
    return AppSetup(
        sessions=sessions,
        secrets=secrets,
        credentials=credentials,
        converter=GitHubManifestConverter(str(settings.github_api_url)),
        manifest_template=load_manifest_template(),
        public_url=settings.api_url,
        github_url=str(settings.github_url),
        clock=clock,
        token=SetupTokenFile(setup_token_path(settings.data_dir)),
    )


def role_limits(settings: Settings) -> RoleLimits:
    return RoleLimits(
        statement_timeout_ms=int(settings.database_statement_timeout_seconds * 1000),
        temp_file_limit_kb=settings.database_temp_file_limit_bytes // 1024,
    )


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        data_dir=settings.data_dir.resolve(),
        build_timeout_seconds=settings.build_timeout_seconds,
        base_domain=settings.base_domain,
        router_port=settings.router_public_port,
        https=settings.https,
        autoscale=autoscale_defaults(settings),
        unpack_limits=UnpackLimits(
            max_bytes=settings.source_max_bytes,
            max_members=settings.source_max_members,
            max_path_length=settings.source_max_path_length,
        ),
        max_download_bytes=settings.source_max_download_bytes,
        recipes=default_recipes(index_gateway(settings)),
        platform_secrets=(
            *credentials_of(settings.langgraph_build.pip),
            *settings.tracing.secrets,
        ),
    )


def studio_link(tracing: Tracing) -> Callable[[str], str] | None:
    """LangGraph Studio on a deployment's URL, offered when the platform traces to LangSmith."""
    if tracing.langsmith is None:
        return None
    return partial(studio_url, tracing.langsmith)


def idle_rules(settings: Settings) -> IdleRules:
    return IdleRules(
        day_seconds=settings.idle_day_seconds,
        notice_days=settings.idle_notice_days,
        delete_days=settings.idle_delete_days,
    )


ASK_PATH = "/router/ask"
"""Where the router asks whether it may obtain a certificate for a name (app/api/router.py)."""


def caddy_router(settings: Settings, admin_url: str) -> CaddyRouter:
    return CaddyRouter(
        admin_url,
        listen=router_listen(settings),
        storage_dir=settings.data_dir.resolve() / "caddy" / "storage",
        https=automatic_https(settings),
        metrics=settings.metrics,
    )


def router_listen(settings: Settings) -> str:
    """Where the router serves deployments: the HTTPS port with automatic HTTPS."""
    port = settings.router_tls_port if settings.https else settings.router_plain_port
    return f"{settings.router_host}:{port}"


def automatic_https(settings: Settings) -> AutomaticHttps | None:
    """The router's TLS from the ACME settings; None (plain HTTP) without ACME_EMAIL."""
    if settings.acme_email is None:
        return None
    api = f"{_loopback(settings.host)}:{settings.port}"
    public = urlsplit(settings.api_url)
    platform_host = public.hostname if public.scheme == "https" else None
    return AutomaticHttps(
        email=settings.acme_email,
        ca=str(settings.acme_ca),
        ca_root=settings.acme_ca_root,
        http_listen=f"{settings.router_host}:{settings.router_plain_port}",
        http_port=settings.router_plain_port,
        https_port=settings.router_tls_port,
        permission_url=f"http://{api}{ASK_PATH}",
        platform_host=platform_host,
        platform_upstream=api if platform_host else None,
        wildcard=wildcard_certificate(settings, platform_host),
    )


def wildcard_certificate(
    settings: Settings, platform_host: str | None
) -> WildcardCertificate | None:
    """`*.BASE_DOMAIN` through the DNS provider's API, when one is configured; BASE_DOMAIN
    itself too when it is PUBLIC_URL's host (no deployment's or custom domain's can be)."""
    options = settings.acme_dns_options
    if settings.acme_dns_provider is None or options is None:
        return None
    base = settings.base_domain
    return WildcardCertificate(
        subjects=(f"*.{base}", *([base] if platform_host == base else [])),
        provider=settings.acme_dns_provider,
        options=options,
    )


def custom_domains(settings: Settings, sessions: SessionFactory, clock: Clock = utcnow) -> Domains:
    """Custom domains, their DNS checked through the machine's resolver (or DNS_RESOLVER) and,
    with automatic HTTPS, their certificates through the router."""
    https = automatic_https(settings)
    certificates = None
    if https is not None:
        router = _loopback(settings.router_host).strip("[]")
        certificates = RouterCertificates((router, settings.router_tls_port))
    return Domains(
        sessions=sessions,
        resolver=SystemResolver(settings.dns_resolver),
        hostname=settings.hostname,
        base_domain=settings.base_domain,
        clock=clock,
        certificates=certificates,
        platform_host=urlsplit(settings.api_url).hostname,
    )


def _loopback(host: str) -> str:
    """The API's address as this machine's router dials it."""
    if host in ("0.0.0.0", ""):  # noqa: S104 (a listen address, not a bind)
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def index_gateway(settings: Settings) -> LangGraphBuild:
    """LangGraph builds reach an index with credentials only through the pass-through (started
    by the first build that needs it, so only a process that builds ever listens)."""
    build = settings.langgraph_build
    through = IndexPassThrough(
        build.pip, host=settings.build_index_proxy_host, port=settings.build_index_proxy_port
    )
    return replace(build, gateway=through) if through.needed else build


def replica_config(settings: Settings) -> ReplicaConfig:
    return ReplicaConfig(
        confinement=Confinement(
            pids_limit=settings.container_pids_limit,
            writable_layer_bytes=settings.container_writable_layer_bytes,
            logs=LogRotation(
                max_size=settings.container_log_max_size,
                max_files=settings.container_log_max_files,
            ),
        ),
        health_timeout_seconds=settings.health_timeout_seconds,
        drain_timeout_seconds=settings.drain_timeout_seconds,
        connection_limits={
            DeploymentType.development: settings.database_connection_limit_development,
            DeploymentType.production: settings.database_connection_limit_production,
        },
        tracing=settings.tracing,
    )


def github_client(
    settings: Settings, credentials: GitHubAppCredentials, clock: Clock = utcnow
) -> GitHubRest:
    """The App may not exist yet (first run): it is read from the environment or the control
    plane at the first call to GitHub, so nothing needs a restart once it is created."""
    # retries=1: a connection that fails to open (a pooled one GitHub closed) is tried once
    # more before the request fails and githubkit's own retry (bounded_retry) decides.
    transport = httpx.HTTPTransport(retries=1, verify=shared_tls_context())
    return GitHubRest(
        LazyGitHubApp(credentials, str(settings.github_api_url), transport=transport, clock=clock)
    )


def commit_resolver(
    settings: Settings, credentials: GitHubAppCredentials, clock: Clock = utcnow
) -> CommitResolver:
    """What the API asks GitHub: which commit a branch, tag or sha names."""
    return github_client(settings, credentials, clock)


@dataclass(frozen=True)
class Adapters:
    """The outside world, each behind a port of app/kernel/ports.py: what a test replaces."""

    github: GitHubPort
    runtime: ContainerRuntime
    router: RouterPort
    databases: DatabaseProvisioner
    builder: ImageBuilder
    health: HealthProbe
    service_images: ServiceImages
    prune_build_cache: Callable[[int], None]
    """Shrinks the engine's build cache to at most this many bytes (the janitor's call)."""
    dumps: DatabaseDumps | None = None
    """pg_dump and pg_restore for backups (None: no backups are made)."""
    channels: ChannelSender | None = None
    """Where notifications are sent (apprise); None records them only."""
    tracing: TracingService | None = None
    """LangSmith's projects, when SLIPWAY_LANGSMITH_API_KEY is set."""
    run_queues: RunQueueReader | None = None
    """LangGraph deployments' run queues, read in their own databases (None: not read; they
    scale on requests alone)."""
    resources: ReplicaResources | None = None
    """Replicas' CPU and memory for the metrics (None: not measured)."""


@dataclass(frozen=True)
class Wiring:
    """How the services are set up: from settings in production, a test's own values in tests."""

    pipeline: PipelineConfig
    replicas: ReplicaConfig
    admission: AdmissionLimits
    janitor: JanitorLimits
    links: RevisionLinks
    check_name: str
    recovery_after: timedelta
    resync_seconds: float
    backups: BackupPolicy = field(default_factory=BackupPolicy)
    notify: tuple[str, ...] = ()
    """The operator's notification channels (SLIPWAY_NOTIFY)."""
    notify_max_attempts: int = DEFAULT_MAX_ATTEMPTS
    idle: IdleRules = field(default_factory=IdleRules)
    slug_hold: timedelta = timedelta(days=7)
    server_log_max_bytes: int = 20 * 1024**2
    requests_counted: bool = True
    """The metrics sampler runs (SLIPWAY_METRICS): without it the idle rules see no request."""


def wiring(settings: Settings, secrets: SecretBox, clock: Clock = utcnow) -> Wiring:
    return Wiring(
        pipeline=pipeline_config(settings),
        replicas=replica_config(settings),
        admission=AdmissionLimits(
            max_builds=settings.max_concurrent_builds,
            max_previews_per_repository=settings.max_previews_per_repository,
        ),
        janitor=JanitorLimits(
            keep_build_logs=settings.keep_build_logs,
            payload_retention=timedelta(days=settings.delivery_payload_retention_days),
            build_cache_bytes=settings.build_cache_max_bytes,
        ),
        links=RevisionLinks(settings.api_url, link_signer(settings, secrets, clock)),
        check_name=settings.github_app_name,
        recovery_after=timedelta(seconds=settings.recovery_seconds),
        resync_seconds=settings.reconcile_resync_seconds,
        backups=backup_policy(settings),
        notify=notify_channels(settings),
        notify_max_attempts=settings.notify_max_attempts,
        idle=idle_rules(settings),
        slug_hold=timedelta(days=settings.slug_hold_days),
        server_log_max_bytes=settings.server_log_max_bytes,
        requests_counted=settings.metrics,
    )


def server_logs(
    settings: Settings, sessions: SessionFactory, secrets: SecretBox, outputs: ReplicaOutputs
) -> ServerLogs:
    """Server logs as both kinds of process use them: the worker keeps a removed replica's
    output, the API reads them."""
    return ServerLogs(
        sessions=sessions,
        secrets=secrets,
        archive=ServerLogArchive(
            settings.data_dir.resolve() / "server-logs", settings.server_log_max_bytes
        ),
        outputs=outputs,
    )


def notify_channels(settings: Settings) -> tuple[str, ...]:
    return operator_urls(settings.notify.get_secret_value() if settings.notify else None)


def notifications(
    settings: Settings, sessions: SessionFactory, secrets: SecretBox, clock: Clock = utcnow
) -> NotificationOutbox:
    """What the API records (rollbacks, deletes): rows only, the worker sends them."""
    return NotificationOutbox(
        sessions=sessions,
        secrets=secrets,
        clock=clock,
        operator=notify_channels(settings),
        max_attempts=settings.notify_max_attempts,
    )


def backup_policy(settings: Settings) -> BackupPolicy:
    return BackupPolicy(
        schedule=Schedule.parse(settings.backup_schedule), keep=settings.backup_keep
    )


def database_backups(
    settings: Settings, sessions: SessionFactory, secrets: SecretBox, clock: Clock = utcnow
) -> DatabaseBackups:
    """The API's backups service (the worker's is wired with the platform)."""
    return DatabaseBackups(
        sessions=sessions,
        secrets=secrets,
        dumps=postgres_tools(settings),
        backups_dir=backups_dir(settings),
        policy=backup_policy(settings),
        clock=clock,
    )


def backups_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "backups"


def postgres_tools(settings: Settings) -> PostgresTools:
    """Unset POSTGRES_ADMIN_URL (an API started on its own) fails at the first dump, saying so."""
    return PostgresTools(settings.postgres_admin_url, settings.postgres_bin_dir)


def real_adapters(
    settings: Settings, sessions: SessionFactory, secrets: SecretBox, clock: Clock = utcnow
) -> Adapters:
    """Docker, Caddy, Postgres, BuildKit and GitHub as the settings name them."""
    docker_binary = find_docker_cli(settings.docker_binary).binary
    builder = BuildKitBuilder(
        docker_binary,
        limits=BuildLimits(
            cpus=settings.build_cpus or max(1.0, (os.cpu_count() or 2) / 2),
            memory_bytes=settings.build_memory_bytes,
            disk_reserve_bytes=settings.build_disk_reserve_bytes,
        ),
    )
    runtime = DockerRuntime(
        docker_binary,
        settings.data_dir.resolve() / "run",
        network_pool=settings.container_network_pool,
        holder_reserve=settings.holder_reserve,
        keep_output=server_logs(settings, sessions, secrets, DockerOutputs()).keep,
    )
    return Adapters(
        github=github_client(settings, GitHubAppCredentials(settings, sessions, secrets), clock),
        runtime=runtime,
        resources=ContainerUsage(runtime.engine_stats),
        router=caddy_router(settings, require(settings.caddy_admin_url, "CADDY_ADMIN_URL")),
        databases=PostgresProvisioner(
            require(settings.postgres_admin_url, "POSTGRES_ADMIN_URL"),
            settings.postgres_container_host,
            role_limits(settings),
        ),
        builder=builder,
        health=HttpHealthProbe(),
        service_images=ValkeyImage(docker_binary, settings.langgraph_redis_image),
        prune_build_cache=builder.prune_cache,
        dumps=postgres_tools(settings),
        channels=AppriseChannels(),
        tracing=langsmith_projects(settings),
        run_queues=PostgresRunQueues(require(settings.postgres_admin_url, "POSTGRES_ADMIN_URL")),
    )


def langsmith_projects(settings: Settings) -> LangSmithProjects | None:
    langsmith = settings.tracing.langsmith
    return LangSmithProjects(langsmith) if langsmith is not None else None


def bootstrap(settings: Settings, *, clock: Clock = utcnow, **overrides: Any) -> Platform:
    """The platform on real adapters; `overrides` replaces any of them by its field name in
    Adapters (a test's fake GitHub, say), so every process and test wires the services alike."""
    sessions = open_database(settings)
    secrets = secret_box(settings)
    adapters = replace(real_adapters(settings, sessions, secrets, clock), **overrides)
    return wire(sessions, secrets, adapters, wiring(settings, secrets, clock), clock)


def wire(
    sessions: SessionFactory,
    secrets: SecretBox,
    adapters: Adapters,
    setup: Wiring,
    clock: Clock = utcnow,
    wall: Callable[[], float] = time.time,
) -> Platform:
    """The services, built once over the given adapters: the composition root."""
    config = setup.pipeline
    github, runtime, router, databases, builder = (
        adapters.github,
        adapters.runtime,
        adapters.router,
        adapters.databases,
        adapters.builder,
    )
    reporter = GitHubReporter(github, check_name=setup.check_name, links=setup.links)
    routes = RouteTable(sessions, router, config.hostname, config.data_dir / "router.lock")
    replicas = Replicas(
        sessions=sessions,
        secrets=secrets,
        runtime=runtime,
        health=adapters.health,
        databases=databases,
        router=router,
        service_images=adapters.service_images,
        config=setup.replicas,
        clock=clock,
    )
    notices = NotificationOutbox(
        sessions=sessions,
        secrets=secrets,
        clock=clock,
        operator=setup.notify,
        channels=adapters.channels,
        max_attempts=setup.notify_max_attempts,
    )
    run_queues = RunQueues(
        sessions=sessions, secrets=secrets, reader=adapters.run_queues, wall=wall
    )
    reconciler = Reconciler(
        sessions=sessions,
        runtime=runtime,
        replicas=replicas,
        routes=routes,
        router=router,
        builder=builder,
        locks=DeploymentLocks(sessions, config.data_dir / "locks"),
        autoscale=config.autoscale,
        clock=clock,
        wall=wall,
        resync_seconds=setup.resync_seconds,
        notifications=notices,
        run_queues=run_queues,
    )
    reports = ReportOutbox(sessions=sessions, reporter=reporter, clock=clock)
    backups = (
        DatabaseBackups(
            sessions=sessions,
            secrets=secrets,
            dumps=adapters.dumps,
            backups_dir=config.data_dir / "backups",
            policy=setup.backups,
            clock=clock,
        )
        if adapters.dumps is not None
        else None
    )
    teardown = Teardown(
        sessions=sessions,
        runtime=runtime,
        routes=routes,
        databases=databases,
        reports=reports,
        builds_dir=config.builds_dir,
        clock=clock,
        final_backup=backups.final if backups is not None else None,
        server_logs=ServerLogArchive(config.server_logs_dir, setup.server_log_max_bytes),
    )
    comments = PreviewComments(
        sessions=sessions,
        github=github,
        clock=clock,
        url=config.url,
        hostname=config.hostname,
        revision_url=reporter.revision_url_of,
        log_url=reporter.log_url_of,
        studio_url=studio_link(setup.replicas.tracing),
    )
    notifier = PlatformNotifier(comments)
    admission = Admission(setup.admission, config.data_dir / "admission.lock")
    pipeline = RevisionPipeline(
        phases=Phases(
            admit=Admit(
                sessions=sessions,
                admission=admission,
                reports=reports,
                notifier=notifier,
                clock=clock,
            ),
            fetch=Fetch(github=github),
            build=Build(sessions=sessions, builder=builder),
            deploy=Deploy(sessions=sessions, replicas=replicas, secrets=secrets, clock=clock),
            go_live=GoLive(
                sessions=sessions,
                routes=routes,
                replicas=replicas,
                reports=reports,
                notifier=notifier,
                clock=clock,
            ),
            retire=Retire(
                sessions=sessions,
                retirement=Retirement(sessions=sessions, replicas=replicas, clock=clock),
                reports=reports,
                runtime=runtime,
            ),
            endings=Endings(
                sessions=sessions,
                reports=reports,
                replicas=replicas,
                runtime=runtime,
                notifier=notifier,
                teardown=teardown,
                clock=clock,
                notifications=notices,
            ),
        ),
        config=config,
        sessions=sessions,
        secrets=secrets,
        reports=reports,
        routes=routes,
        notifier=notifier,
        notifications=notices,
        clock=clock,
    )
    janitor = Janitor(
        sessions=sessions,
        runtime=runtime,
        logs_dir=config.logs_dir,
        limits=setup.janitor,
        prune_build_cache=adapters.prune_build_cache,
        clock=clock,
    )
    recovery = Recovery(
        sessions=sessions,
        runtime=runtime,
        reports=reports,
        notifier=notifier,
        clock=clock,
        stale_after=setup.recovery_after,
        url=config.url,
        notifications=notices,
    )
    usage = UsageTracker(
        sessions=sessions,
        github=github,
        tracing=adapters.tracing,
        rules=setup.idle,
        hostname=config.hostname,
        url=config.url,
        clock=clock,
        slug_hold=setup.slug_hold,
        notifications=notices,
        requests_counted=setup.requests_counted,
    )
    tracing_projects = TracingProjects(
        sessions=sessions, service=adapters.tracing, notifier=notifier, clock=clock
    )
    return Platform(
        adapters=adapters,
        sessions=sessions,
        secrets=secrets,
        pipeline=pipeline,
        replicas=replicas,
        routes=routes,
        reconciler=reconciler,
        teardown=teardown,
        comments=comments,
        notifier=notifier,
        admission=admission,
        reports=reports,
        notifications=notices,
        recovery=recovery,
        janitor=janitor,
        facts=GitHubCommitFacts(github),
        clock=clock,
        backups=backups,
        usage=usage,
        tracing_projects=tracing_projects,
        metrics=MetricsSampler(
            sessions=sessions,
            scrape=router.metrics_reads,
            hostname=config.hostname,
            clock=clock,
            run_queues=run_queues.latest,
            resources=adapters.resources,
        ),
    )
