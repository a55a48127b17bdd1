"""The Prometheus collector behind GET /metrics (loaded at the first scrape: app/api/metrics.py).

The platform's own counts and each deployment's newest minute, read from the control plane
when scraped; nothing is kept between scrapes. Beside them, what an operator alerts on that
the platform knows already: revisions by state (failed ones among them), builds waiting and
running, the notification outbox's backlog, when the worker last finished a reconciler pass
and a metrics sample (from Redis, where the worker records them), and whether each part
`/readyz` asks answers (asked at the scrape, as `/readyz` asks them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case
from sqlmodel import Session, col, func, select

from app.kernel.db import SessionFactory
from app.kernel.models import (
    Deployment,
    MetricPoint,
    Notification,
    Replica,
    ReplicaMetricPoint,
    Revision,
    RevisionState,
)
from app.replicas.metrics import COARSE_STEP_SECONDS


@dataclass(frozen=True)
class ScrapeState:
    """What the scrape asked outside the control plane's database, before collecting."""

    parts: tuple[str, ...] = ()
    """The parts `/readyz` asks, by its names."""
    down: frozenset[str] = frozenset()
    """Those that did not answer."""
    last_passes: Mapping[str, float] = field(default_factory=dict)
    """Periodic job → when a worker last finished one (Unix seconds); absent: never, or Redis
    did not answer."""


PASS_METRICS = {
    "reconcile": (
        "slipway_reconcile_last_pass_timestamp_seconds",
        "When a worker last finished a reconciler pass (every few seconds when it runs).",
    ),
    "sample_metrics": (
        "slipway_metrics_last_sample_timestamp_seconds",
        "When a worker last finished a metrics sample (every 10 s unless METRICS is false).",
    ),
}


class PlatformCollector(Collector):
    """The platform's own counts and each deployment's newest minute, read when scraped."""

    def __init__(self, sessions: SessionFactory, state: ScrapeState | None = None) -> None:
        self._sessions = sessions
        self._state = state or ScrapeState()

    def collect(self) -> Iterator[Metric]:
        yield from self._platform()
        yield from self._deployments()

    def _platform(self) -> Iterator[Metric]:
        """The control plane's health and backlogs."""
        waiting = col(Notification.sent_at).is_(None) & col(Notification.gave_up_at).is_(None)
        with self._sessions() as session:
            pending, given_up, oldest = session.exec(
                select(
                    func.count(case((waiting, 1))),
                    func.count(col(Notification.gave_up_at)),
                    func.min(case((waiting, col(Notification.created_at)))),
                )
            ).one()
        parts = GaugeMetricFamily(
            "slipway_part_up",
            "1 when the part answers as /readyz asks it (control-plane database, redis, "
            "router, docker engine), else 0.",
            labels=["part"],
        )
        for part in self._state.parts:
            parts.add_metric([part], 0 if part in self._state.down else 1)
        yield parts
        for job, (name, text) in PASS_METRICS.items():
            at = self._state.last_passes.get(job)
            if at is not None:
                yield GaugeMetricFamily(name, text, value=at)
        yield GaugeMetricFamily(
            "slipway_notifications_pending",
            "Notifications recorded and not yet sent (being retried, or waiting their turn).",
            value=pending,
        )
        yield GaugeMetricFamily(
            "slipway_notifications_given_up",
            "Notifications given up after NOTIFY_MAX_ATTEMPTS sends (kept a while, then pruned).",
            value=given_up,
        )
        if oldest is not None:
            yield GaugeMetricFamily(
                "slipway_notifications_oldest_pending_timestamp_seconds",
                "When the oldest notification still to send was recorded.",
                value=_moment(oldest).timestamp(),
            )

    def _deployments(self) -> Iterator[Metric]:
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
        revisions = GaugeMetricFamily(
            "slipway_revisions",
            "Revisions by state (every state, 0 included: failed ones only grow).",
            labels=["state"],
        )
        by_state = {RevisionState(state): int(count) for state, count in states}
        for state in RevisionState:
            revisions.add_metric([state.value], by_state.get(state, 0))
        yield revisions
        yield GaugeMetricFamily(
            "slipway_builds_queued",
            "Revisions waiting for a build slot (MAX_CONCURRENT_BUILDS) or a worker.",
            value=by_state.get(RevisionState.queued, 0),
        )
        yield GaugeMetricFamily(
            "slipway_builds_running",
            "Revisions being built now.",
            value=by_state.get(RevisionState.building, 0),
        )
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


def _moment(value: datetime | str) -> datetime:
    """A MIN over a CASE comes back as the database keeps it (SQLite: text, no zone)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def platform_registry(
    sessions: SessionFactory, state: ScrapeState | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(sessions, state))
    return registry
