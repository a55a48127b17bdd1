"""`slipway up`: the whole platform in the foreground on one machine.

Starts what is not configured (Postgres for deployment databases, a Redis-compatible queue),
always the router (Caddy), then the API and a worker as child processes (one process for
both by default: app/server/combined.py). Whatever of these
dies is started again, each with its own backoff (a part that keeps dying is retried less and
less often, never given up on): the router keeps serving the apps while the queue, the
database cluster or a child is down. Ctrl-C or SIGTERM stops everything.

This process lives as long as the platform and only watches, so it stays light: it imports
the standard library and the embedded services' start and stop, never the settings, the
control plane or the adapters. The start-up work that needs those runs in a short-lived child
(app/server/prepare.py, `python -m app.cli prepare`) that hands over a plan as JSON.
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
from pathlib import Path
from types import FrameType
from typing import Any

from app.server.cold_pages import ColdPages
from app.server.embedded import Caddy, EmbeddedPostgres, EmbeddedRedis, EmbeddedServiceError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
FIRST_RETRY_SECONDS = 1.0
"""The first restart is immediate; a second death within STABLE_SECONDS waits this long."""
MAX_RETRY_SECONDS = 60.0
"""The wait before a restart doubles with each quick death up to this: a crash-looping part
costs one start a minute, and never takes the rest of the platform down with it."""
STABLE_SECONDS = 60.0
"""A part that ran this long after a restart is healthy again: its next death restarts at once."""
CHILDREN = ("combined",)
"""The children until the plan names them (app/server/prepare.py `children`)."""
ENV_PREFIX = "SLIPWAY_"
"""app.kernel.settings.ENV_PREFIX, repeated: importing the settings costs ~35 MiB."""
MALLOC_ARENAS = "2"
"""glibc's MALLOC_ARENA_MAX for the API and the worker. glibc gives each thread that allocates
an arena of its own (up to 8 per core), and an arena keeps the peak of what its thread once
held; the combined process runs its blocking work (jobs, ticks, requests) on a pool of threads,
so at rest it held ~10 MiB of such peaks: 116 against 125-127 MiB PSS with one deployment
(docs/benchmarks/scale.md, issue 22). An operator's own MALLOC_ARENA_MAX wins."""


def child_env(environ: dict[str, str], platform_env: dict[str, str]) -> dict[str, str]:
    """The environment of the API and the worker: the supervisor's, the plan's, and a malloc
    bounded to MALLOC_ARENAS arenas unless the environment says otherwise."""
    return {"MALLOC_ARENA_MAX": MALLOC_ARENAS, **environ, **platform_env}


class PrepareFailed(Exception):
    """The prepare child exited with this code; it has said why on stderr already."""

    def __init__(self, code: int) -> None:
        super().__init__(f"slipway prepare exited with {code}")
        self.code = code


def prepare(*, routes_only: bool = False, env: dict[str, str] | None = None) -> Any:
    """Run `python -m app.cli prepare` and return what it printed: the plan of a start (or,
    with `routes_only`, nothing, once it loaded the current routes into the router)."""
    argv = [sys.executable, "-m", "app.cli", "prepare", *(["--routes"] if routes_only else [])]
    result = subprocess.run(argv, stdout=subprocess.PIPE, env=env, check=False)
    if result.returncode != 0:
        raise PrepareFailed(result.returncode if result.returncode > 0 else 1)
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


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
    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self._postgres: EmbeddedPostgres | None = None
        self._redis: EmbeddedRedis | None = None
        self._caddy: Caddy | None = None
        self._cold_pages: ColdPages | None = None
        self._children = [Child(name) for name in CHILDREN]
        self._env: dict[str, str] = {}
        self._stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            try:
                plan = prepare()
            except PrepareFailed as failed:
                return failed.code
            self._adopt(plan)
            if self._stopping:
                return 0
            self._start_services(plan)
            for child in self._children:
                self._spawn(child)
            self._announce(plan)
            return self._watch()
        finally:
            self._stop_all()

    # -- services ---------------------------------------------------------------------------
    def _adopt(self, plan: dict[str, Any]) -> None:
        """The plan's Postgres runs already (the prepare child started it): watch it."""
        self.data_dir = Path(plan["data_dir"])
        self._env = dict(plan["env"])
        self._children = [Child(name) for name in plan["children"]]
        if plan["postgres"] is not None:
            cluster = plan["postgres"]
            self._postgres = EmbeddedPostgres(
                Path(cluster["data_dir"]),
                cluster["hosts"],
                shared_buffers_bytes=cluster["shared_buffers"],
            )

    def _start_services(self, plan: dict[str, Any]) -> None:
        if plan["redis"] is not None:
            self._redis = EmbeddedRedis(Path(plan["redis"]["data_dir"]))
            self._env[f"{ENV_PREFIX}REDIS_URL"] = self._redis.start()
            log.info("redis started")
        router = plan["router"]
        if router is not None:
            self._caddy = Caddy(
                Path(router["data_dir"]),
                executable=Path(router["executable"]),
                threads=router["threads"],
            )
            self._env[f"{ENV_PREFIX}CADDY_ADMIN_URL"] = self._caddy.start(router["config"])
            log.info("router started", extra={"port": router["port"]})
            self._cold_pages = ColdPages(
                "router", self._caddy.pid, after_seconds=router["reclaim_after_seconds"]
            )

    def _restart_caddy(self) -> None:
        """Serving again at once, with the routes of its boot config (the platform's start:
        the worker changed them since, without Caddy's boot file); then a prepare child loads
        the current ones, as the worker would."""
        assert self._caddy is not None
        self._caddy.start()
        try:
            prepare(routes_only=True, env={**os.environ, **self._env})
        except PrepareFailed:
            log.error(
                "the router serves the routes it had at the platform's start until the next "
                "route change or the reconciler's resync",
                extra={"component": "router"},
            )

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
            env=child_env(dict(os.environ), self._env),
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
            if self._cold_pages is not None:
                self._cold_pages.tend()
            time.sleep(POLL_SECONDS)
        return 0

    def _announce(self, plan: dict[str, Any]) -> None:
        info = plan["info"]
        assert self.data_dir is not None
        (self.data_dir / "platform.json").write_text(json.dumps(info, indent=2) + "\n")
        log.info("Slipway is up", extra=info)
        if plan["setup_link"] is not None:
            # First run: the one thing to do next, on its own line where the user looks, with
            # a token of this start's own that only the operator sees (also in the file).
            print(f"Slipway is up: to connect GitHub, open {plan['setup_link']}", flush=True)

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


def up() -> int:
    """`slipway up`: in the foreground until Ctrl-C or SIGTERM."""
    # Everything Slipway writes (control plane, logs, builds, keys) is its user's alone.
    os.umask(0o077)
    try:
        return Supervisor().run()
    except EmbeddedServiceError as exc:
        print(f"slipway: cannot start: {exc}", file=sys.stderr)
        return 1


def _runs(child: Child) -> bool:
    return child.process is not None and child.process.poll() is None


def _exit_code(child: Child) -> dict[str, object]:
    return {"exit_code": child.process.returncode if child.process is not None else None}
