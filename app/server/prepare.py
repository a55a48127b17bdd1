"""`slipway up`'s start-up work, run in a short-lived child (`python -m app.cli prepare`).

The work needs most of the platform (settings, the control plane and its migrations, the
routes, the network policy, the GitHub App's credentials): ~1,400 modules and ~100 MiB that
the supervisor, which only watches its children for as long as the platform runs, would keep
for nothing. So a child does it and hands the supervisor a Plan, as JSON on its stdout: what
to start, with which settings, and what to tell the operator. The child starts the embedded
Postgres itself (a daemon that outlives it: the supervisor adopts it) because the network
policy needs its port and must be in place before the worker starts.

`prepare --routes` loads the current routes into a Caddy the supervisor restarted.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlencode

from app.adapters.caddy import render_caddy_config
from app.adapters.caddy_admin import UNIX_SCHEME, admin_listen
from app.adapters.network_policy import enforce_network_policy
from app.bootstrap import (
    automatic_https,
    caddy_router,
    index_gateway,
    open_database,
    private_data_dir,
    router_listen,
    secret_box,
)
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory, make_engine
from app.kernel.settings import ENV_PREFIX, Settings, require
from app.replicas.routes import RouteTable, current_routes
from app.server.embedded import (
    EmbeddedPostgres,
    EmbeddedServiceError,
    build_with,
    docker_bridge_gateway,
    find_caddy,
    missing_dns_provider,
)
from app.server.embedded._caddy import default_admin_socket
from app.setup.credentials import GitHubAppCredentials, setup_url
from app.setup.token import SetupTokenFile, setup_token_path
from builders.docker_cli import find_docker_cli

log = logging.getLogger(__name__)


class Plan(TypedDict):
    """What the supervisor needs to know, all of it plain JSON."""

    data_dir: str
    env: dict[str, str]
    """For the API and the worker, on top of the supervisor's own environment."""
    children: list[str]
    """The `python -m app.cli` commands to keep running: ["combined"] or ["api", "worker"]."""
    postgres: dict[str, Any] | None
    """{"data_dir", "hosts", "shared_buffers"} of the embedded cluster (started already), or
    None when the cluster is the operator's."""
    redis: dict[str, Any] | None
    """{"data_dir"} of the queue to start, or None if configured."""
    router: dict[str, Any] | None
    """{"data_dir", "executable", "threads", "reclaim_after_seconds", "port", "config"}: Caddy
    to start with its config, or None."""
    info: dict[str, str]
    """The platform's addresses, written to DATA_DIR/platform.json and logged once up."""
    setup_link: str | None
    """/setup with a token of this start's own, when no GitHub App exists yet."""


def prepare(settings: Settings) -> Plan:
    """Everything before the first child starts: keys, migrations, Postgres, the policy."""
    data_dir = settings.data_dir.resolve()
    private_data_dir(data_dir)
    secrets = secret_box(settings)  # a missing key is made now, a bad one stops the start here
    sessions = open_database(settings)
    env = {f"{ENV_PREFIX}DATA_DIR": str(data_dir)}
    docker_cli = find_docker_cli(settings.docker_binary)
    postgres: dict[str, Any] | None = None
    database_port: int | None = None
    if settings.postgres_admin_url is None:
        gateway = docker_bridge_gateway(docker_cli.binary)
        hosts = ["127.0.0.1"] + ([gateway] if gateway else [])
        if gateway is None:
            log.warning("no docker bridge found: containers will not reach their databases")
        buffers = settings.database_shared_buffers_bytes
        cluster = EmbeddedPostgres(data_dir / "postgres", hosts, shared_buffers_bytes=buffers)
        env[f"{ENV_PREFIX}POSTGRES_ADMIN_URL"] = cluster.start()
        database_port = cluster.port
        postgres = {"data_dir": str(cluster.data_dir), "hosts": hosts, "shared_buffers": buffers}
        log.info("postgres started", extra={"port": database_port})
    redis = None
    if settings.redis_url is None:
        redis = {"data_dir": str(data_dir / "redis")}
    router = None
    if settings.caddy_admin_url is None:
        router = {
            "data_dir": str(data_dir / "caddy"),
            "executable": str(router_executable(settings)),
            "threads": settings.router_threads or None,
            "reclaim_after_seconds": settings.router_reclaim_after_seconds,
            "port": settings.router_public_port,
            "config": router_config(settings, sessions),
        }
    # Network policy (app/adapters/network_policy.py): before the worker can start a
    # replica or a build. Builds reach the package-index pass-through when the index
    # carries credentials.
    pass_through = index_gateway(settings).gateway is not None
    build_ports = (settings.build_index_proxy_port,) if pass_through else ()
    enforce_network_policy(settings, docker_cli.binary, database_port, build_ports)
    return Plan(
        data_dir=str(data_dir),
        env=env,
        children=children(settings),
        postgres=postgres,
        redis=redis,
        router=router,
        info={
            "api": settings.api_url,
            "webhook_url": f"{settings.api_url}/webhooks/github",
            "deployments": settings.deployment_url("<deployment>"),
            "data_dir": str(data_dir),
        },
        setup_link=setup_link(settings, sessions, secrets),
    )


def children(settings: Settings) -> list[str]:
    """The API and the worker in one process by default; apart when asked, or when the API
    runs several processes of its own (uvicorn's workers cannot share the worker's loop)."""
    if settings.processes == "combined" and settings.api_workers == 1:
        return ["combined"]
    return ["api", "worker"]


def setup_link(settings: Settings, sessions: SessionFactory, secrets: SecretBox) -> str | None:
    """First run (no GitHub App yet): /setup with a token of this start's own, which only the
    operator sees (the supervisor prints it; it is also in the file). Otherwise a token left
    from an earlier start is spent."""
    token = SetupTokenFile(setup_token_path(settings.data_dir.resolve()))
    if GitHubAppCredentials(settings, sessions, secrets).current() is None:
        return f"{setup_url(settings)}?{urlencode({'token': token.issue()})}"
    token.spend()
    return None


def router_executable(settings: Settings) -> Path:
    """The caddy to start (CADDY_BINARY or the shipped one). With a DNS provider, one that has
    its module: otherwise the start stops here, saying how to build one, instead of at Caddy's
    refusal of its config."""
    executable = find_caddy(settings.caddy_binary)
    if settings.https and settings.acme_dns_provider is not None:
        problem = missing_dns_provider(executable, settings.acme_dns_provider)
        if problem is not None:
            raise EmbeddedServiceError(f"{problem}: {build_with(settings.acme_dns_provider)}")
    return executable


def router_config(settings: Settings, sessions: SessionFactory) -> dict[str, Any]:
    """Caddy's boot config: the whole config with the routes the control plane holds now."""
    data_dir = settings.data_dir.resolve()
    with sessions() as session:
        routes = current_routes(session, settings.hostname)
    return render_caddy_config(
        routes,
        listen=router_listen(settings),
        admin_listen=admin_listen(UNIX_SCHEME + str(default_admin_socket(data_dir / "caddy"))),
        storage_dir=data_dir / "caddy" / "storage",
        https=automatic_https(settings),
        count_per_host=settings.metrics,
    )


def load_routes(settings: Settings) -> None:
    """The control plane's routes into the running router, as every writer of the route table
    does it (under its lock, so a newer table a worker loads meanwhile is not undone): a Caddy
    the supervisor restarted came back with the routes of its boot config, maybe stale."""
    data_dir = settings.data_dir.resolve()
    router = caddy_router(settings, require(settings.caddy_admin_url, "CADDY_ADMIN_URL"))
    sessions = SessionFactory(make_engine(settings.control_plane_url))
    RouteTable(sessions, router, settings.hostname, data_dir / "router.lock").apply()


def run(settings: Settings, *, routes_only: bool = False) -> int:
    """`slipway prepare`: the Plan as one line of JSON on stdout, which is the supervisor's
    pipe (logs go to stderr, as every part's do); `--routes`: load_routes, and `{}`."""
    # Ctrl-C reaches the whole process group: the supervisor alone decides, and stops what
    # this child started once it is done (a migration is never cut in half).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    result: object = {}
    if routes_only:
        load_routes(settings)
    else:
        result = prepare(settings)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
