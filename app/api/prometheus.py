"""The Prometheus collector behind GET /metrics (loaded at the first scrape: app/api/metrics.py).

The platform's own counts and each deployment's newest minute, read from the control plane
when scraped; nothing is kept between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select

from app.kernel.db import SessionFactory
from app.kernel.models import (
    Deployment,
    MetricPoint,
    Replica,
    ReplicaMetricPoint,
    Revision,
    RevisionState,
)
from app.replicas.metrics import COARSE_STEP_SECONDS


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
            usage = _replica_usage(session)
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
            "pending_runs": "A LangGraph deployment's runs waiting for a queue worker.",
            "running_runs": "A LangGraph deployment's runs being worked on.",
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
            if point.pending_runs is not None:
                families["pending_runs"].add_metric(slug, point.pending_runs)
            if point.running_runs is not None:
                families["running_runs"].add_metric(slug, point.running_runs)
            for quantile, value in (
                ("0.5", point.p50_ms),
                ("0.95", point.p95_ms),
                ("0.99", point.p99_ms),
            ):
                if value is not None:
                    latency.add_metric([*slug, quantile], value / 1000)
        yield from families.values()
        yield latency
        cpu = GaugeMetricFamily(
            "slipway_replica_cpu_cores",
            "CPU a running replica used over its last sample, in cores.",
            labels=["deployment", "replica"],
        )
        memory = GaugeMetricFamily(
            "slipway_replica_memory_bytes",
            "Memory a running replica uses (without the page cache the kernel may drop).",
            labels=["deployment", "replica"],
        )
        for replica_id, latest in usage.items():
            if latest.deployment_id not in slugs:
                continue
            labels = [slugs[latest.deployment_id], replica_id]
            if latest.cpu_cores is not None:
                cpu.add_metric(labels, latest.cpu_cores)
            memory.add_metric(labels, latest.memory_bytes)
        yield cpu
        yield memory


def _replica_usage(session: Session) -> dict[str, ReplicaMetricPoint]:
    """Each running replica's newest point (its 10 s one where a minute's end wrote both)."""
    newest = (
        select(ReplicaMetricPoint.replica_id, func.max(ReplicaMetricPoint.at).label("at"))
        .join(Replica, col(Replica.id) == col(ReplicaMetricPoint.replica_id))
        .where(col(Replica.stopped_at).is_(None))
        .group_by(col(ReplicaMetricPoint.replica_id))
        .subquery()
    )
    rows = session.exec(
        select(ReplicaMetricPoint)
        .join(
            newest,
            (col(ReplicaMetricPoint.replica_id) == newest.c.replica_id)
            & (col(ReplicaMetricPoint.at) == newest.c.at),
        )
        .order_by(col(ReplicaMetricPoint.step_seconds).desc())
    ).all()
    return {point.replica_id: point for point in rows}


def platform_registry(sessions: SessionFactory) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(sessions))
    return registry
