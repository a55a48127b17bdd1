"""Metrics over HTTP: a deployment's series as JSON, and everything in Prometheus' format.

Thin over app/replicas/metrics.py: the worker's sampler writes the points, these read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.api.health import READY_TIMEOUT_SECONDS, Readiness
from app.deployments.registry import get_deployment
from app.kernel.db import SessionFactory
from app.kernel.errors import InvalidRequest
from app.kernel.models import MetricPoint, ReplicaMetricPoint
from app.kernel.orders import LAST_FINISHED_KEY, TIMED_JOBS
from app.kernel.ports import Clock
from app.replicas.metrics import (
    COARSE_STEP_SECONDS,
    FINE_STEP_SECONDS,
    KEEP_FINE,
    replica_series,
    series,
)
from app.replicas.server_logs import moment_ns

STEPS = {"10s": FINE_STEP_SECONDS, "1m": COARSE_STEP_SECONDS}
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class MetricPointView(BaseModel):
    at: str
    requests: int
    requests_per_second: float
    errors: int
    """Answers with a 5xx status during the step."""
    error_rate: float
    """errors / requests (0 without requests)."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    in_flight: float
    replicas: int
    restarts: int
    pending_runs: int | None = None
    """A LangGraph deployment's runs waiting for a queue worker (None for other apps)."""
    running_runs: int | None = None
    """Its runs being worked on."""


class ReplicaUsageView(BaseModel):
    at: str
    cpu_cores: float | None
    """CPU used over the step, in cores (1.0: one core all the time); null for a replica's
    first read."""
    memory_bytes: int
    """In use at the step's end (10 s), or the minute's largest read (1 m); page cache the
    kernel may drop is not counted, as in `docker stats`."""


class ReplicaSeriesView(BaseModel):
    replica_id: str
    points: list[ReplicaUsageView]


class MetricSeriesView(BaseModel):
    deployment_id: str
    step_seconds: int
    points: list[MetricPointView]
    replicas: list[ReplicaSeriesView] = []
    """Each replica's CPU and memory over the same steps (a 10 s point only when the replica
    used CPU during it)."""


@get("/deployments/{deployment_id:str}/metrics", sync_to_thread=True)
def deployment_metrics(
    deployment_id: FromPath[str],
    sessions: NamedDependency[SessionFactory],
    clock: NamedDependency[Clock],
    since: FromQuery[str] = "1h",
    step: FromQuery[str | None] = None,
) -> MetricSeriesView:
    """The deployment's points since `since` (a time ago or an ISO 8601 time), at `step` 10s
    (kept an hour) or 1m (kept a week; the default beyond an hour). A 10 s step with nothing
    in it is absent: no requests, nothing in flight, no restart, no run queued or running."""
    now = clock()
    start = datetime.fromtimestamp(moment_ns(since, now) / 1e9, UTC)
    if step is None:
        step_seconds = FINE_STEP_SECONDS if now - start <= KEEP_FINE else COARSE_STEP_SECONDS
    elif step in STEPS:
        step_seconds = STEPS[step]
    else:
        raise InvalidRequest(f"step must be one of {', '.join(STEPS)}, not {step!r}")
    with sessions() as session:
        deployment = get_deployment(session, deployment_id)
    points = series(sessions, deployment.id, start, step_seconds)
    return MetricSeriesView(
        deployment_id=deployment.id,
        step_seconds=step_seconds,
        points=[_view(point) for point in points],
        replicas=_replica_views(replica_series(sessions, deployment.id, start, step_seconds)),
    )


def _replica_views(points: list[ReplicaMetricPoint]) -> list[ReplicaSeriesView]:
    by_replica: dict[str, list[ReplicaUsageView]] = {}
    for point in points:
        by_replica.setdefault(point.replica_id, []).append(
            ReplicaUsageView(
                at=_at(point.at), cpu_cores=point.cpu_cores, memory_bytes=point.memory_bytes
            )
        )
    return [ReplicaSeriesView(replica_id=r, points=p) for r, p in by_replica.items()]


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _view(point: MetricPoint) -> MetricPointView:
    return MetricPointView(
        at=_at(point.at),
        requests=point.requests,
        requests_per_second=round(point.requests / point.step_seconds, 3),
        errors=point.errors,
        error_rate=round(point.errors / point.requests, 4) if point.requests else 0.0,
        p50_ms=point.p50_ms,
        p95_ms=point.p95_ms,
        p99_ms=point.p99_ms,
        in_flight=point.in_flight,
        replicas=point.replicas,
        restarts=point.restarts,
        pending_runs=point.pending_runs,
        running_runs=point.running_runs,
    )


@get("/metrics", media_type=MediaType.TEXT)
async def prometheus_metrics(
    registry: NamedDependency[PrometheusExposition], ready: NamedDependency[Readiness]
) -> Response[Any]:
    """The platform's and the deployments' metrics in Prometheus' text format (a token is
    needed unless SLIPWAY_METRICS_PUBLIC is true)."""
    down, passes = await asyncio.gather(ready.down(), registry.last_passes())
    body = await asyncio.to_thread(registry.render, tuple(ready.checks), frozenset(down), passes)
    return Response(body, media_type=PROMETHEUS_TEXT)


class PrometheusExposition:
    """The scrape's text, with prometheus_client loaded at the first scrape rather than with
    the API: an install nobody scrapes does not carry it at rest (app/api/prometheus.py)."""

    def __init__(
        self, sessions: SessionFactory, queue: Callable[[], Redis | None] = lambda: None
    ) -> None:
        self._sessions = sessions
        self._queue = queue

    async def last_passes(self) -> dict[str, float]:
        """When a worker last finished each periodic job (the worker records it in Redis);
        nothing when Redis does not answer (`slipway_part_up{part="redis"}` says why)."""
        pool = self._queue()
        if pool is None:
            return {}
        try:
            values = await asyncio.wait_for(
                pool.mget([LAST_FINISHED_KEY.format(job) for job in TIMED_JOBS]),
                READY_TIMEOUT_SECONDS,
            )
        except (RedisError, OSError, TimeoutError):
            return {}
        found: dict[str, float] = {}
        for job, value in zip(TIMED_JOBS, values, strict=True):
            try:
                found[job] = float(value)
            except (TypeError, ValueError):
                continue
        return found

    def render(
        self,
        parts: tuple[str, ...] = (),
        down: frozenset[str] = frozenset(),
        last_passes: dict[str, float] | None = None,
    ) -> bytes:
        from prometheus_client import generate_latest

        from app.api.prometheus import ScrapeState, platform_registry

        state = ScrapeState(parts=parts, down=down, last_passes=last_passes or {})
        return generate_latest(platform_registry(self._sessions, state))
