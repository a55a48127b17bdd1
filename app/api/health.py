"""`/healthz` and `/readyz`: is this API process alive, and can the platform do its work.

`/healthz` stays a liveness check (the process answers: a supervisor or an orchestrator
restarts it when it does not), so a Redis outage never gets the API restarted for nothing.
`/readyz` asks each part the platform needs, at once and each within READY_TIMEOUT_SECONDS,
and answers 503 naming what is down: a load balancer stops sending there, a person sees
which part to look at. Neither needs a token, and neither says more than up or down and why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from arq.connections import ArqRedis
from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import text

from app.adapters.caddy import CaddyRouter
from app.adapters.docker_output import DockerOutputs
from app.kernel.db import SessionFactory

READY_TIMEOUT_SECONDS = 3.0
"""Per part: a part slower than this is down for a load balancer's purposes."""

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Readiness:
    """The parts `/readyz` asks, by the name it reports them under."""

    checks: dict[str, Check]

    async def down(self) -> dict[str, str]:
        """Each part that did not answer, with why (empty: all up)."""
        names = list(self.checks)
        results = await asyncio.gather(
            *(_within(self.checks[name]()) for name in names), return_exceptions=True
        )
        return {
            name: _why(result)
            for name, result in zip(names, results, strict=True)
            if isinstance(result, BaseException)
        }


async def _within(check: Awaitable[None]) -> None:
    await asyncio.wait_for(check, READY_TIMEOUT_SECONDS)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def readiness(
    sessions: SessionFactory,
    queue: Callable[[], ArqRedis | None],
    router: CaddyRouter | None,
    engine: DockerOutputs,
) -> Readiness:
    """The control plane's database, the job queue (Redis), the router (Caddy's admin API)
    and the Docker engine, each asked the cheapest question it answers."""

    async def database() -> None:
        def ask() -> None:
            with sessions() as session:
                session.execute(text("SELECT 1"))

        await asyncio.to_thread(ask)

    async def redis() -> None:
        pool = queue()
        if pool is None:
            raise RuntimeError("the job queue is not connected yet")
        await pool.ping()

    async def caddy() -> None:
        if router is None:
            raise RuntimeError("no router configured (SLIPWAY_CADDY_ADMIN_URL)")
        await asyncio.to_thread(router.in_flight)

    async def docker() -> None:
        await asyncio.to_thread(engine.ping)

    return Readiness(
        {
            "control-plane database": database,
            "redis": redis,
            "router": caddy,
            "docker engine": docker,
        }
    )


@get("/healthz", media_type=MediaType.JSON)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(ready: NamedDependency[Readiness]) -> Response[dict[str, object]]:
    down = await ready.down()
    if down:
        return Response(
            {"status": "unavailable", "down": down}, status_code=HTTP_503_SERVICE_UNAVAILABLE
        )
    return Response({"status": "ready", "checked": list(ready.checks)}, status_code=HTTP_200_OK)
