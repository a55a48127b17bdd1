"""`slipway up`: the whole platform in the foreground on one machine.

Starts what is not configured (Postgres for deployment databases, a Redis-compatible queue),
always the router (Caddy), then the API and a worker as child processes; restarts a child or
Caddy that dies, and stops everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import urlencode

from app.bootstrap import open_database, private_data_dir, secret_box
from app.embedded import (
    UNIX_SCHEME,
    Caddy,
    EmbeddedPostgres,
    EmbeddedRedis,
    admin_listen,
    docker_bridge_gateway,
)
from app.github.credentials import GitHubAppCredentials, setup_url
from app.network_policy import enforce_network_policy
from app.router import render_caddy_config
from app.routes import current_routes
from app.settings import ENV_PREFIX, Settings
from app.setup_token import SetupTokenFile, setup_token_path
from builders.docker_cli import find_docker_cli

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAX_RESTARTS_PER_MINUTE = 5
"""A child that crashes faster than this is broken, not unlucky: stop and say so."""
CHILDREN = ("api", "worker")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self._postgres: EmbeddedPostgres | None = None
        self._redis: EmbeddedRedis | None = None
        self._caddy: Caddy | None = None
        self._children = [Child(name) for name in CHILDREN]
        self._env: dict[str, str] = {}
        self._stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start_services()
            for child in self._children:
                self._spawn(child)
            self._announce()
            return self._watch()
        finally:
            self._stop_all()

    # -- services ---------------------------------------------------------------------------
    def _start_services(self) -> None:
        settings = self.settings
        private_data_dir(self.data_dir)
        secret_box(settings)  # a missing key is made now, a bad one stops the start here
        self._sessions = open_database(settings)
        env = {f"{ENV_PREFIX}DATA_DIR": str(self.data_dir)}
        docker_cli = find_docker_cli(settings.docker_binary)
        if settings.postgres_admin_url is None:
            gateway = docker_bridge_gateway(docker_cli.binary)
            hosts = ["127.0.0.1"] + ([gateway] if gateway else [])
            if gateway is None:
                log.warning("no docker bridge found: containers will not reach their databases")
            self._postgres = EmbeddedPostgres(self.data_dir / "postgres", hosts)
            env[f"{ENV_PREFIX}POSTGRES_ADMIN_URL"] = self._postgres.start()
            log.info("postgres started", extra={"port": self._postgres.port})
        if settings.redis_url is None:
            self._redis = EmbeddedRedis(self.data_dir / "redis")
            env[f"{ENV_PREFIX}REDIS_URL"] = self._redis.start()
            log.info("redis started")
        if settings.caddy_admin_url is None:
            self._caddy = Caddy(self.data_dir / "caddy", threads=settings.router_threads or None)
            env[f"{ENV_PREFIX}CADDY_ADMIN_URL"] = self._caddy.start(self._caddy_config())
            log.info("router started", extra={"port": settings.router_port})
        # Network policy (app/network_policy.py): before the worker can start a replica or a build.
        database_port = self._postgres.port if self._postgres is not None else None
        enforce_network_policy(settings, docker_cli.binary, database_port)
        self._env = env

    def _caddy_config(self) -> dict[str, object]:
        caddy = self._caddy
        assert caddy is not None
        with self._sessions() as session:
            routes = current_routes(session, self.settings.hostname)
        return render_caddy_config(
            routes,
            listen=f"{self.settings.router_host}:{self.settings.router_port}",
            admin_listen=admin_listen(UNIX_SCHEME + str(caddy.admin_socket)),
            storage_dir=self.data_dir / "caddy" / "storage",
        )

    # -- children ---------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", child.name],
            env={**os.environ, **self._env},
        )
        log.info("started", extra={"component": child.name, "pid": child.process.pid})

    def _watch(self) -> int:
        while not self._stopping:
            for child in self._children:
                assert child.process is not None
                code = child.process.poll()
                if code is None:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                if len(child.restarts) > MAX_RESTARTS_PER_MINUTE:
                    log.error(
                        "giving up: it keeps exiting",
                        extra={"component": child.name, "exit_code": code},
                    )
                    return 1
                log.warning(
                    "exited; restarting", extra={"component": child.name, "exit_code": code}
                )
                self._spawn(child)
            if self._caddy is not None and not self._caddy.is_running():
                log.warning("router exited; restarting it with the stored routes")
                self._caddy.start(self._caddy_config())
            time.sleep(POLL_SECONDS)
        return 0

    def _announce(self) -> None:
        s = self.settings
        info = {
            "api": s.api_url,
            "webhook_url": f"{s.api_url}/webhooks/github",
            "deployments": s.deployment_url("<deployment>"),
            "data_dir": str(self.data_dir),
        }
        (self.data_dir / "platform.json").write_text(json.dumps(info, indent=2) + "\n")
        log.info("Slipway is up", extra=info)
        token = SetupTokenFile(setup_token_path(self.data_dir))
        if GitHubAppCredentials(s, self._sessions, secret_box(s)).current() is None:
            # First run: the one thing to do next, on its own line where the user looks, with
            # a token of this start's own that only the operator sees (also in the file).
            link = f"{setup_url(s)}?{urlencode({'token': token.issue()})}"
            print(f"Slipway is up: to connect GitHub, open {link}", flush=True)
        else:
            token.spend()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        for child in self._children:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in self._children:
            if child.process is not None:
                try:
                    child.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.process.kill()
        for service in (self._caddy, self._redis, self._postgres):
            if service is not None:
                try:
                    service.stop()
                except Exception:
                    log.warning("could not stop a service cleanly", exc_info=True)
