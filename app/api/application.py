"""Building the Litestar app from settings; the queue connection opens at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.status_codes import (
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from app.access.follows import LogFollows
from app.access.tokens import admin_token_path, ensure_admin_token
from app.adapters.caddy import CaddyRouter
from app.adapters.docker_output import DockerOutputs
from app.adapters.queue import create_queue, redis_settings
from app.api.auth import BearerTokens, writers_only
from app.api.backups import DatabaseController
from app.api.dashboard.pages import dashboard_router
from app.api.dashboard.render import Pages
from app.api.dashboard.viewer import Doorman
from app.api.deployments import DeploymentController, RevisionController
from app.api.domains import DomainController
from app.api.health import healthz, readiness, readyz
from app.api.logs import server_logs
from app.api.metrics import PrometheusExposition, deployment_metrics, prometheus_metrics
from app.api.router import ask
from app.api.setup import SetupController
from app.api.tokens import TokenController, whoami
from app.api.webhooks import DeliveryQueue, Receiver, WebhookController
from app.bootstrap import (
    app_setup,
    automatic_https,
    browser_sessions,
    commit_resolver,
    custom_domains,
    database_backups,
    link_signer,
    notifications,
    open_database,
    pipeline_config,
    secret_box,
)
from app.bootstrap import server_logs as server_log_service
from app.deliveries.inbox import DeliveryRecorder
from app.deployments.operations import DeploymentOperations
from app.github.oauth import GitHubOAuth
from app.kernel.errors import (
    ConflictError,
    DatabaseError,
    InvalidRequest,
    NotFoundError,
    PermissionDenied,
)
from app.kernel.heap import freeze_startup_objects
from app.kernel.ports import Clock, CommitResolver
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.replicas.routes import CertificatePermission
from app.setup.credentials import GitHubAppCredentials, oauth_client
from manifests.errors import SlipwayError

log = logging.getLogger(__name__)

API_VERSION = "1"
"""The API's version in its OpenAPI description: raised when a route changes incompatibly."""
SHUTDOWN_GRACE_SECONDS = 5
"""How long a stopping API lets requests in flight finish before cancelling them. A log
follow (server or build logs, the dashboard's live panes) never finishes by itself within
SLIPWAY_LOG_FOLLOW_MAX_SECONDS, and uvicorn's default is to wait for every connection: one
open dashboard tab held a restart of the platform for up to an hour. A follower's client
reconnects to the new process (Server-Sent Events retry)."""


def server_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the API, whichever process runs it (combined, `slipway api`, or
    its worker processes)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "ws": "none",  # no WebSocket route: the websockets package stays unloaded
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
    }


STATUS_OF: dict[type[SlipwayError], int] = {
    NotFoundError: HTTP_404_NOT_FOUND,
    InvalidRequest: HTTP_422_UNPROCESSABLE_ENTITY,
    ConflictError: HTTP_409_CONFLICT,
    PermissionDenied: HTTP_403_FORBIDDEN,
    DatabaseError: HTTP_503_SERVICE_UNAVAILABLE,
}


def _domain_error(_: Request[Any, Any, Any], exc: SlipwayError) -> Response[dict[str, str]]:
    status = next(code for cls, code in STATUS_OF.items() if isinstance(exc, cls))
    return Response({"detail": str(exc)}, status_code=status)


def create_app(
    settings: Settings, *, clock: Clock = utcnow, commits: CommitResolver | None = None
) -> Litestar:
    sessions = open_database(settings)
    config = pipeline_config(settings)
    secrets = secret_box(settings)
    credentials = GitHubAppCredentials(settings, sessions, secrets)
    setup = app_setup(settings, sessions, secrets, credentials, clock)
    notices = notifications(settings, sessions, secrets, clock)
    operations = DeploymentOperations(
        sessions=sessions,
        secrets=secrets,
        commits=commits or commit_resolver(settings, credentials, clock),
        clock=clock,
        slug_hold=timedelta(days=settings.slug_hold_days),
        notifications=notices,
    )
    with sessions() as session:
        ensure_admin_token(session, admin_token_path(settings.data_dir), clock())
    follows = LogFollows(settings.log_follows_per_caller)
    backups = database_backups(settings, sessions, secrets, clock)
    https = automatic_https(settings)
    domains = custom_domains(settings, sessions, clock)
    certificates = CertificatePermission(
        sessions, settings.base_domain, https.platform_host if https else None
    )
    engine = DockerOutputs()
    logs = server_log_service(settings, sessions, secrets, engine)
    router = (
        CaddyRouter(
            settings.caddy_admin_url,
            listen=f"{settings.router_host}:{settings.router_port}",
            storage_dir=settings.data_dir.resolve() / "caddy" / "storage",
        )
        if settings.caddy_admin_url
        else None
    )

    signer = link_signer(settings, secrets, clock)
    dashboard = dashboard_router(
        doorman=Doorman(
            browser_sessions=browser_sessions(settings, secrets, clock),
            sessions=sessions,
            github=GitHubOAuth(str(settings.github_url), str(settings.github_api_url)),
            oauth_client=lambda: oauth_client(settings, sessions, secrets),
            clock=clock,
        ),
        pages=Pages(),
        link_signer=signer,
    )

    opened: list[ArqRedis] = []
    registry = PrometheusExposition(sessions, lambda: opened[-1] if opened else None)
    ready = readiness(sessions, lambda: opened[-1] if opened else None, router, engine)

    @asynccontextmanager
    async def queue_lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_queue(redis_settings(settings))
        app.state.queue = pool
        opened.append(pool)
        app.state.receiver = Receiver(
            settings, DeliveryRecorder(sessions), DeliveryQueue(pool), clock, credentials
        )
        freeze_startup_objects("api")
        try:
            yield
        finally:
            await pool.aclose()

    def queue(state: State) -> ArqRedis:
        pool = state.queue
        assert isinstance(pool, ArqRedis)
        return pool

    def receiver(state: State) -> Receiver:
        found = state.receiver
        assert isinstance(found, Receiver)
        return found

    api = Router(
        path="/api",
        route_handlers=[
            DeploymentController,
            RevisionController,
            DatabaseController,
            DomainController,
            RevisionController,
            server_logs,
            deployment_metrics,
            TokenController,
            whoami,
        ],
        guards=[writers_only],
    )
    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            ask,
            prometheus_metrics,
            WebhookController,
            SetupController,
            api,
            dashboard,
        ],
        middleware=[
            DefineMiddleware(
                BearerTokens,
                sessions=sessions,
                signer=signer,
                clock=clock,
                also_guarded=frozenset() if settings.metrics_public else frozenset({"/metrics"}),
            )
        ],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "sessions": Provide(lambda: sessions, use_cache=True, sync_to_thread=False),
            "secrets": Provide(lambda: secrets, use_cache=True, sync_to_thread=False),
            "pipeline_config": Provide(lambda: config, use_cache=True, sync_to_thread=False),
            "operations": Provide(lambda: operations, use_cache=True, sync_to_thread=False),
            "notices": Provide(lambda: notices, use_cache=True, sync_to_thread=False),
            "clock": Provide(lambda: clock, use_cache=True, sync_to_thread=False),
            "queue": Provide(queue, sync_to_thread=False),
            "receiver": Provide(receiver, sync_to_thread=False),
            "app_credentials": Provide(lambda: credentials, use_cache=True, sync_to_thread=False),
            "app_setup": Provide(lambda: setup, use_cache=True, sync_to_thread=False),
            "follows": Provide(lambda: follows, use_cache=True, sync_to_thread=False),
            "backups": Provide(lambda: backups, use_cache=True, sync_to_thread=False),
            "certificates": Provide(lambda: certificates, use_cache=True, sync_to_thread=False),
            "domains": Provide(lambda: domains, use_cache=True, sync_to_thread=False),
            "logs": Provide(lambda: logs, use_cache=True, sync_to_thread=False),
            "ready": Provide(lambda: ready, use_cache=True, sync_to_thread=False),
            "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={cls: _domain_error for cls in STATUS_OF},
        lifespan=[queue_lifespan],
        # The API described at /schema/openapi.json (and .yaml): no page that loads a viewer
        # from a CDN, since a self-hosted install may have no internet.
        openapi_config=OpenAPIConfig(
            title="Slipway",
            version=API_VERSION,
            path="/schema",
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"]), YamlRenderPlugin()],
        ),
        # Logging is app.kernel.logs' (key=value lines, written where they happen): Litestar's
        # default would replace the root handler with a queue and a thread that drop the fields.
        logging_config=None,
    )
