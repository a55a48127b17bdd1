"""`slipway up`: the whole platform in the foreground on one machine.

Starts what is not configured (Postgres for deployment databases, a Redis-compatible queue),
always the router (Caddy), then the API and a worker as child processes. Whatever of these
dies is started again, each with its own backoff (a part that keeps dying is retried less and
less often, never given up on): the router keeps serving the apps while the queue, the
database cluster or a child is down. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import urlencode

from app.adapters.caddy import render_caddy_config
from app.adapters.caddy_admin import UNIX_SCHEME, admin_listen
from app.adapters.network_policy import enforce_network_policy
from app.bootstrap import index_gateway, open_database, private_data_dir, secret_box
from app.kernel.settings import ENV_PREFIX, Settings
from app.replicas.routes import current_routes
from app.server.embedded import Caddy, EmbeddedPostgres, EmbeddedRedis, docker_bridge_gateway
from app.setup.credentials import GitHubAppCredentials, setup_url
from app.setup.token import SetupTokenFile, setup_token_path
from builders.docker_cli import find_docker_cli

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
FIRST_RETRY_SECONDS = 1.0
"""The first restart is immediate; a second death within STABLE_SECONDS waits this long."""
MAX_RETRY_SECONDS = 60.0
"""The wait before a restart doubles with each quick death up to this: a crash-looping part
costs one start a minute, and never takes the rest of the platform down with it."""
STABLE_SECONDS = 60.0
"""A part that ran this long after a restart is healthy again: its next death restarts at once."""
CHILDREN = ("api", "worker")


@dataclass
class Backoff:
    """When a part that died may be started again: at once, then after 1 s, 2 s, 4 s... up to
    MAX_RETRY_SECONDS while it keeps dying; a run of STABLE_SECONDS forgives the past."""

    failures: int = 0
    started_at: float = 0.0
    due: float = 0.0

    def died(self, now: float) -> float:
        """A part that was running died at `now`; returns the wait before restarting it."""
        if now - self.started_at >= STABLE_SECONDS:
            self.failures = 0
        return self.start_failed(now)

    def start_failed(self, now: float) -> float:
        """A death, or a start that failed: the wait before the next try grows."""
        self.failures += 1
        delay = (
            0.0
            if self.failures == 1
            else min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (self.failures - 2))
        )
        self.due = now + delay
        return delay

    def started(self, now: float) -> None:
        self.started_at = now


@dataclass
class Supervised:
    """One part of the platform `slipway up` keeps running: a child process or a server."""

    name: str
    alive: Callable[[], bool]
    start: Callable[[], None]
    detail: Callable[[], dict[str, object]] = dict
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    down: bool = False

    def tend(self) -> None:
        """Notice a death, and restart once its backoff allows; never raises."""
        now = self.clock()
        if not self.down:
            if self.alive():
                return
            self.down = True
            delay = self.backoff.died(now)
            log.warning(
                "exited; restarting",
                extra={"component": self.name, "in_seconds": delay, **self.detail()},
            )
        if now < self.backoff.due:
            return
        try:
            self.start()
        except Exception as exc:  # a start that fails is retried later, never fatal
            delay = self.backoff.start_failed(self.clock())
            log.error(
                "restart failed; trying again",
                extra={"component": self.name, "in_seconds": delay, "error": str(exc)[:500]},
            )
            return
        self.down = False
        self.backoff.started(self.clock())
        log.info("restarted", extra={"component": self.name, "restarts": self.backoff.failures})


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes] | None = None


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
        # Network policy (app/adapters/network_policy.py): before the worker can start a
        # replica or a build.
        database_port = self._postgres.port if self._postgres is not None else None
        # Builds reach the package-index pass-through when the index carries credentials.
        pass_through = index_gateway(settings).gateway is not None
        build_ports = (settings.build_index_proxy_port,) if pass_through else ()
        enforce_network_policy(settings, docker_cli.binary, database_port, build_ports)
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

    def _restart_caddy(self) -> None:
        assert self._caddy is not None
        self._caddy.start(self._caddy_config())  # with the stored routes

    def _restart_redis(self) -> None:
        assert self._redis is not None
        self._restarted_at(f"{ENV_PREFIX}REDIS_URL", self._redis.start())

    def _restart_postgres(self) -> None:
        assert self._postgres is not None
        self._restarted_at(f"{ENV_PREFIX}POSTGRES_ADMIN_URL", self._postgres.start())

    def _restarted_at(self, key: str, url: str) -> None:
        """A server comes back on its port, so the children's URLs stay right; if the port was
        taken meanwhile, the children are restarted with the new URL."""
        if self._env.get(key) == url:
            return
        self._env[key] = url
        log.warning("a service moved to a new port; restarting the api and the worker")
        for child in self._children:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()

    def _supervised(self) -> list[Supervised]:
        """The router first: of all parts, only it serves the apps' users."""
        parts: list[Supervised] = []
        if self._caddy is not None:
            parts.append(Supervised("router", self._caddy.is_running, self._restart_caddy))
        if self._redis is not None:
            parts.append(Supervised("redis", self._redis.is_alive, self._restart_redis))
        if self._postgres is not None:
            parts.append(Supervised("postgres", self._postgres.is_alive, self._restart_postgres))
        for child in self._children:
            parts.append(
                Supervised(
                    child.name,
                    alive=functools.partial(_runs, child),
                    start=functools.partial(self._spawn, child),
                    detail=functools.partial(_exit_code, child),
                )
            )
        return parts

    # -- children ---------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", child.name],
            env={**os.environ, **self._env},
        )
        log.info("started", extra={"component": child.name, "pid": child.process.pid})

    def _watch(self) -> int:
        """Restart whatever dies, each part with its own backoff, until Ctrl-C or SIGTERM."""
        parts = self._supervised()
        while not self._stopping:
            for part in parts:
                if self._stopping:
                    break
                part.tend()
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


def _runs(child: Child) -> bool:
    return child.process is not None and child.process.poll() is None


def _exit_code(child: Child) -> dict[str, object]:
    return {"exit_code": child.process.returncode if child.process is not None else None}
