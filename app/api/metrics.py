"""Metrics over HTTP: a deployment's series as JSON, and everything in Prometheus' format.

Thin over app/replicas/metrics.py: the worker's sampler writes the points, these read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlmodel import col, func, select

from app.deployments.registry import get_deployment
from app.kernel.db import SessionFactory
from app.kernel.errors import InvalidRequest
from app.kernel.models import Deployment, MetricPoint, Replica, Revision, RevisionState
from app.kernel.ports import Clock
from app.replicas.metrics import COARSE_STEP_SECONDS, FINE_STEP_SECONDS, KEEP_FINE, series
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


class MetricSeriesView(BaseModel):
    deployment_id: str
    step_seconds: int
    points: list[MetricPointView]


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
    in it is absent: no requests, nothing in flight, no restart."""
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
    )


def _view(point: MetricPoint) -> MetricPointView:
    return MetricPointView(
        at=point.at.isoformat().replace("+00:00", "Z"),
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
    )


class PlatformCollector(Collector):
    """The platform's own counts and each deployment's newest minute, read when scraped."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        with self._sessions() as session:
            slugs = dict(
                session.exec(
                    select(Deployment.id, Deployment.slug).where(
                        col(Deployment.removed_at).is_(None)
                    )
                ).all()
            )
            newest = session.exec(
                select(MetricPoint.deployment_id, func.max(MetricPoint.at))
                .where(MetricPoint.step_seconds == COARSE_STEP_SECONDS)
                .group_by(col(MetricPoint.deployment_id))
            ).all()
            points = [
                session.exec(
                    select(MetricPoint).where(
                        MetricPoint.deployment_id == deployment_id,
                        MetricPoint.step_seconds == COARSE_STEP_SECONDS,
                        MetricPoint.at == at,
                    )
                ).first()
                for deployment_id, at in newest
                if deployment_id in slugs
            ]
            replicas = session.exec(
                select(func.count()).select_from(Replica).where(col(Replica.stopped_at).is_(None))
            ).one()
            states = session.exec(
                select(Revision.state, func.count()).group_by(col(Revision.state))
            ).all()
        yield GaugeMetricFamily(
            "slipway_deployments", "Deployments that are not removed.", value=len(slugs)
        )
        yield GaugeMetricFamily("slipway_replicas", "Replicas running now.", value=replicas)
        revisions = GaugeMetricFamily("slipway_revisions", "Revisions by state.", labels=["state"])
        for state, count in states:
            revisions.add_metric([RevisionState(state).value], count)
        yield revisions
        gauges = {
            "requests_per_second": "Requests per second over the last minute.",
            "errors_per_second": "5xx answers per second over the last minute.",
            "in_flight_requests": "Requests in flight at the last sample.",
            "replicas": "The deployment's replicas at the last sample.",
            "restarts": "Replicas that died during the last minute.",
        }
        families = {
            name: GaugeMetricFamily(f"slipway_deployment_{name}", text, labels=["deployment"])
            for name, text in gauges.items()
        }
        latency = GaugeMetricFamily(
            "slipway_deployment_latency_seconds",
            "Request latency over the last minute, by quantile (from the router).",
            labels=["deployment", "quantile"],
        )
        for point in points:
            if point is None:
                continue
            slug = [slugs[point.deployment_id]]
            step = point.step_seconds
            families["requests_per_second"].add_metric(slug, point.requests / step)
            families["errors_per_second"].add_metric(slug, point.errors / step)
            families["in_flight_requests"].add_metric(slug, point.in_flight)
            families["replicas"].add_metric(slug, point.replicas)
            families["restarts"].add_metric(slug, point.restarts)
            for quantile, value in (
                ("0.5", point.p50_ms),
                ("0.95", point.p95_ms),
                ("0.99", point.p99_ms),
            ):
                if value is not None:
                    latency.add_metric([*slug, quantile], value / 1000)
        yield from families.values()
        yield latency


@get("/metrics", media_type=MediaType.TEXT)
async def prometheus_metrics(registry: NamedDependency[CollectorRegistry]) -> Response[Any]:
    """The platform's and the deployments' metrics in Prometheus' text format (a token is
    needed unless SLIPWAY_METRICS_PUBLIC is true)."""
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=PROMETHEUS_TEXT)


def platform_registry(sessions: SessionFactory) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(sessions))
    return registry
