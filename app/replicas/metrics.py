"""Deployment metrics: requests, 5xx answers, latency, in-flight requests, replicas and
restarts, and a LangGraph deployment's run queue (pending and running runs), as series of
points (10 s for the last hour, 1 min for a week).

The traffic comes from the router: Caddy counts requests per host (its `per_host` metrics),
and one read of its `/metrics` every FINE_STEP_SECONDS serves every deployment at once, so the
cost does not grow with a poll per deployment (issue 22). A deployment's hosts are its own
and its routed custom domains (app/deployments/domains.py), whose counts add up to its series
(and so to the idle rules' use, which reads these points). Latency quantiles are read off
Caddy's request-duration histogram, summed over codes and methods, the way Prometheus'
`histogram_quantile` does (linear within a bucket), so they are as fine as its buckets.
Replicas and restarts come from the control plane, which the reconciler keeps; each running
replica's CPU and memory from its runtime (`ReplicaResources`: on Docker, the kernel's cgroup
files where the platform sees them, else the engine's stats), a point per replica beside the
deployment's. CPU is a rate over two reads (the runtime counts CPU time since the start), so a
replica's first read is a baseline too. The run queue is the reconciler's last reading
(app/replicas/run_queue.py, every tick, in the same worker): the sampler asks no database of
its own.

The sampler keeps the previous read in memory: the first read after a worker starts is a
baseline, not a step (the worker reads once at its start). Caddy starts its counts again at
every configuration load (each route change: a deploy, a replica replaced), which its
`caddy_config_last_reload_success_timestamp_seconds` tells: a step across a load counts from the
load. The router adapter reads the counts just before each load it makes, and the sampler
takes those reads too, so nothing is lost across the loads of its own process (a load by
another worker process loses what came between the previous read and it: under 10 s).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from app.kernel.db import SessionFactory
from app.kernel.models import (
    RUNNING_REPLICA_STATES,
    Deployment,
    Domain,
    MetricPoint,
    Replica,
    ReplicaMetricPoint,
    ReplicaState,
    Revision,
)
from app.kernel.ports import Clock, ReplicaResources, ReplicaUsage
from app.replicas.autoscaler import RunQueue
from app.replicas.routes import ROUTED_DOMAIN_STATES

log = logging.getLogger(__name__)

FINE_STEP_SECONDS = 10
COARSE_STEP_SECONDS = 60
KEEP_FINE = timedelta(hours=1)
KEEP_COARSE = timedelta(days=7)
REQUESTS = "caddy_http_requests_total"
IN_FLIGHT = "caddy_http_requests_in_flight"
DURATION = "caddy_http_request_duration_seconds"
RELOADED = "caddy_config_last_reload_success_timestamp_seconds"
QUANTILES = (0.5, 0.95, 0.99)
_COUNT = f"{DURATION}_count"
_WANTED = frozenset({REQUESTS, IN_FLIGHT, _COUNT, f"{DURATION}_bucket"})
_KEPT_PREFIXES = (*sorted(_WANTED), RELOADED + " ")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
BUSY_CPU_SECONDS = 0.001
"""A replica's 10 s point is written when it used at least this much CPU in the step (an idle
replica costs one row a minute, as an idle deployment does)."""


@dataclass
class HostCounters:
    """One host's cumulative counts in one read of the router (they only grow, until the
    router restarts)."""

    requests: float = 0.0
    errors: float = 0.0
    in_flight: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    """Upper bound (seconds) → requests at most that long, cumulative as Prometheus keeps them."""


def parse_router_metrics(text: str) -> dict[str, HostCounters]:
    """Caddy's Prometheus text, per host (the `host` label its `per_host` option adds).

    Only the four series used are read, line by line: Caddy also writes request and response
    sizes and Go's own metrics, and prometheus_client's full parser took 120 ms every 10 s for
    100 hosts (1.2 % of a core at rest, bench/metrics_idle.py), this a tenth of it.
    """
    hosts: dict[str, HostCounters] = {}
    for line in text.splitlines():
        name, brace, rest = line.partition("{")
        if not brace or name not in _WANTED:
            continue
        labels_text, _, value_text = rest.rpartition("} ")
        labels = dict(_LABEL.findall(labels_text))
        host = labels.get("host")
        if not host:
            continue
        name_part, _, port = host.rpartition(":")
        if port.isdigit() and name_part:
            host = name_part  # counted under `Host` as sent, with the router's port
        try:
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue
        counters = hosts.setdefault(host, HostCounters())
        if name == REQUESTS:
            counters.requests += value
        elif name == IN_FLIGHT:
            counters.in_flight += value
        elif name == _COUNT:
            if labels.get("code", "")[:1] == "5":
                counters.errors += value
        else:
            bound = float(labels["le"]) if "le" in labels else math.inf
            counters.buckets[bound] = counters.buckets.get(bound, 0.0) + value
    return hosts


def reload_stamp(text: str) -> float | None:
    """When the router last loaded its configuration: Caddy starts its counts again at every
    load (each route change), so a step across one counts from the load."""
    for line in text.splitlines():
        if line.startswith(RELOADED + " "):
            try:
                return float(line.split()[1])
            except (ValueError, IndexError):
                return None
    return None


def difference(now: HostCounters, before: HostCounters | None) -> HostCounters:
    """What happened between two reads; a count that went down means the router restarted,
    and everything it counted since is new."""
    if before is None:
        return HostCounters(in_flight=now.in_flight)
    if now.requests < before.requests:
        return now
    return HostCounters(
        requests=now.requests - before.requests,
        errors=max(0.0, now.errors - before.errors),
        in_flight=now.in_flight,
        buckets={b: max(0.0, c - before.buckets.get(b, 0.0)) for b, c in now.buckets.items()},
    )


def added(a: HostCounters, b: HostCounters) -> HostCounters:
    return HostCounters(
        requests=a.requests + b.requests,
        errors=a.errors + b.errors,
        in_flight=max(a.in_flight, b.in_flight),
        buckets={k: a.buckets.get(k, 0.0) + b.buckets.get(k, 0.0) for k in a.buckets | b.buckets},
    )


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile in seconds of a cumulative histogram (Prometheus' histogram_quantile:
    linear within the bucket it falls in; the largest finite bound when it falls in +Inf)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class MetricsSampler:
    """Reads the router and the control plane every fine step; writes the points."""

    sessions: SessionFactory
    scrape: Callable[[], list[str]]
    """The router's metrics in Prometheus text (Caddy's admin `/metrics`): those read just
    before each route load since the last call, then now's."""
    hostname: Callable[[str], str]
    """A deployment's slug → the host the router serves it at."""
    clock: Clock
    run_queues: Callable[[], Mapping[str, RunQueue]] = dict
    """The LangGraph deployments' run queues as last read (those read lately only)."""
    _last: dict[str, HostCounters] = field(default_factory=dict)
    _minute: dict[str, HostCounters] = field(default_factory=dict)
    _minute_restarts: dict[str, int] = field(default_factory=dict)
    _minute_started: datetime | None = None
    _last_at: datetime | None = None
    _reloaded: float | None = None
    resources: ReplicaResources | None = None
    """Each running replica's CPU and memory (None: not measured)."""
    _usage: dict[str, ReplicaUsage] = field(default_factory=dict)
    """Each running replica's last read."""
    _minute_usage: dict[str, _MinuteUsage] = field(default_factory=dict)
    _last_read: tuple[str, dict[str, HostCounters], float | None] | None = None
    _baseline_read: bool = True
    """The next read is the worker's first: what it holds came before the sampler looked."""

    def sample(self) -> int:
        """One step; returns the points written."""
        now = self.clock()
        reads = self.scrape()
        replica_reads = self._read_replicas()
        since = self._last_at or now - timedelta(seconds=FINE_STEP_SECONDS)
        with self.sessions() as session:
            live = session.exec(
                select(Deployment.id, Deployment.slug).where(col(Deployment.removed_at).is_(None))
            ).all()
            deployment_ids = [deployment_id for deployment_id, _ in live]
            hosts = {self.hostname(slug): deployment_id for deployment_id, slug in live}
            hosts |= _routed_domains(session)
            replicas = _count_by_deployment(
                session.exec(
                    select(Revision.deployment_id, func.count())
                    .join(Replica, col(Replica.revision_id) == col(Revision.id))
                    .where(col(Replica.stopped_at).is_(None))
                    .group_by(col(Revision.deployment_id))
                ).all()
            )
            restarts = _count_by_deployment(
                session.exec(
                    select(Revision.deployment_id, func.count())
                    .join(Replica, col(Replica.revision_id) == col(Revision.id))
                    .where(
                        Replica.state == ReplicaState.dead,
                        col(Replica.stopped_at) > since,
                        col(Replica.stopped_at) <= now,
                    )
                    .group_by(col(Revision.deployment_id))
                ).all()
            )
            steps = _by_deployment(self._steps(reads, hosts), hosts)
            queues = self.run_queues()
            minute_done = self._minute_started is not None and now - self._minute_started >= (
                timedelta(seconds=COARSE_STEP_SECONDS) - timedelta(seconds=FINE_STEP_SECONDS / 2)
            )
            points: list[MetricPoint | ReplicaMetricPoint] = []
            points += self._replica_points(replica_reads, now, minute_done)
            for deployment_id in deployment_ids:
                step = steps.get(deployment_id, HostCounters())
                self._minute[deployment_id] = added(
                    self._minute.get(deployment_id, HostCounters()), step
                )
                self._minute_restarts[deployment_id] = self._minute_restarts.get(
                    deployment_id, 0
                ) + restarts.get(deployment_id, 0)
                queue = queues.get(deployment_id)
                if (
                    step.requests
                    or step.in_flight
                    or restarts.get(deployment_id)
                    or (queue is not None and queue.total)
                ):
                    points.append(
                        _point(
                            deployment_id,
                            now,
                            FINE_STEP_SECONDS,
                            step,
                            replicas.get(deployment_id, 0),
                            restarts.get(deployment_id, 0),
                            queue,
                        )
                    )
            if self._minute_started is None:
                self._minute_started = now
            elif minute_done:
                for deployment_id in deployment_ids:
                    points.append(
                        _point(
                            deployment_id,
                            now,
                            COARSE_STEP_SECONDS,
                            self._minute.get(deployment_id, HostCounters()),
                            replicas.get(deployment_id, 0),
                            self._minute_restarts.get(deployment_id, 0),
                            queues.get(deployment_id),
                        )
                    )
                self._minute, self._minute_restarts, self._minute_started = {}, {}, now
                _prune(session, now)
            session.add_all(points)
            session.commit()
        self._last_at = now
        return len(points)

    def _read_replicas(self) -> dict[tuple[str, str], ReplicaUsage]:
        """Each running replica's read, by (replica, deployment): its own short session, then
        the runtime (which may take a second, asking the engine) with no transaction open."""
        if self.resources is None:
            return {}
        with self.sessions() as session:
            running = {
                container_id: (replica_id, deployment_id)
                for replica_id, container_id, deployment_id in session.exec(
                    select(Replica.id, Replica.container_id, Revision.deployment_id)
                    .join(Revision, col(Replica.revision_id) == col(Revision.id))
                    .where(
                        col(Replica.stopped_at).is_(None),
                        col(Replica.container_id).is_not(None),
                        col(Replica.state).in_(RUNNING_REPLICA_STATES),
                    )
                ).all()
                if container_id
            }
        reads = self.resources.usage(running) if running else {}
        return {running[ref]: reading for ref, reading in reads.items()}

    def _replica_points(
        self, reads: dict[tuple[str, str], ReplicaUsage], now: datetime, minute_done: bool
    ) -> list[ReplicaMetricPoint]:
        """Each running replica's CPU and memory: a 10 s point when it used CPU in the step,
        and at the minute's end a 1 min point (CPU over the minute, its largest memory read)."""
        points: list[ReplicaMetricPoint] = []
        usage: dict[str, ReplicaUsage] = {}
        for (replica_id, deployment_id), reading in reads.items():
            before = self._usage.get(replica_id)
            usage[replica_id] = reading
            minute = self._minute_usage.setdefault(
                replica_id, _MinuteUsage(start=before or reading)
            )
            minute.peak = max(minute.peak, reading.memory_bytes)
            if before is not None and reading.cpu_seconds - before.cpu_seconds >= BUSY_CPU_SECONDS:
                points.append(
                    ReplicaMetricPoint(
                        deployment_id=deployment_id,
                        replica_id=replica_id,
                        at=now,
                        step_seconds=FINE_STEP_SECONDS,
                        cpu_cores=cores(before, reading),
                        memory_bytes=reading.memory_bytes,
                    )
                )
            if minute_done:
                points.append(
                    ReplicaMetricPoint(
                        deployment_id=deployment_id,
                        replica_id=replica_id,
                        at=now,
                        step_seconds=COARSE_STEP_SECONDS,
                        cpu_cores=cores(minute.start, reading),
                        memory_bytes=minute.peak,
                    )
                )
                self._minute_usage[replica_id] = _MinuteUsage(start=reading)
        self._usage = usage
        self._minute_usage = {k: v for k, v in self._minute_usage.items() if k in usage}
        return points

    def _steps(self, reads: list[str], hosts: Iterable[str]) -> dict[str, HostCounters]:
        """What each host counted since the last sample, over the reads in time order (the
        ones taken just before each route load, then now's). Counts begin again at each load
        (Caddy's reload stamp tells): across one, a read holds everything since the load. The
        worker's first read is the baseline; a host first seen later (a custom domain routed
        from now, by the load that started its count) counts from zero."""
        steps = {host: HostCounters() for host in hosts}
        for text in reads:
            read, stamp = self._parsed(text)
            reloaded = self._reloaded is not None and stamp != self._reloaded
            self._reloaded = stamp
            unseen = None if self._baseline_read else HostCounters()
            self._baseline_read = False
            for host in steps:
                current = read.get(host, HostCounters())
                before = self._last.get(host, unseen)
                step = current if reloaded and before is not None else difference(current, before)
                self._last[host] = current
                steps[host] = added(steps[host], step)
                steps[host].in_flight = current.in_flight
        return steps

    def _parsed(self, text: str) -> tuple[dict[str, HostCounters], float | None]:
        """The counts and reload stamp of a read. Only the lines used are kept (Caddy also
        writes sizes and Go's own metrics); when they are the same as the last read's (no
        request anywhere since: the router at rest), that read's counts are used again instead
        of parsed anew (~17 ms for 100 hosts, against ~2 ms to compare; issue 22)."""
        kept = "\n".join(line for line in text.splitlines() if line.startswith(_KEPT_PREFIXES))
        if self._last_read is not None and self._last_read[0] == kept:
            return self._last_read[1], self._last_read[2]
        read, stamp = parse_router_metrics(kept), reload_stamp(kept)
        self._last_read = (kept, read, stamp)
        return read, stamp


@dataclass
class _MinuteUsage:
    start: ReplicaUsage
    """The read the minute's CPU is counted from (the previous minute's last)."""
    peak: int = 0
    """The largest memory read of the minute."""


def cores(before: ReplicaUsage, after: ReplicaUsage) -> float | None:
    """CPU used between two reads, in cores (None without time between them; a count that
    went down, a runtime that started counting again, counts from zero)."""
    seconds = after.read_at - before.read_at
    if seconds <= 0:
        return None
    used = after.cpu_seconds - before.cpu_seconds
    if used < 0:
        used = after.cpu_seconds
    return round(used / seconds, 4)


def _point(
    deployment_id: str,
    at: datetime,
    step_seconds: int,
    counts: HostCounters,
    replicas: int,
    restarts: int,
    queue: RunQueue | None = None,
) -> MetricPoint:
    latencies = [quantile(counts.buckets, q) for q in QUANTILES]
    p50, p95, p99 = (None if s is None else round(s * 1000, 3) for s in latencies)
    return MetricPoint(
        deployment_id=deployment_id,
        at=at,
        step_seconds=step_seconds,
        requests=round(counts.requests),
        errors=round(counts.errors),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        in_flight=counts.in_flight,
        replicas=replicas,
        restarts=restarts,
        pending_runs=queue.pending if queue is not None else None,
        running_runs=queue.running if queue is not None else None,
    )


def _routed_domains(session: Session) -> dict[str, str]:
    """The custom domains the router serves (app/replicas/routes.py routes the same states),
    each → its deployment: Caddy counts them under their own names."""
    return {
        name: deployment_id
        for name, deployment_id in session.exec(
            select(Domain.name, Domain.deployment_id)
            .join(Deployment, col(Deployment.id) == col(Domain.deployment_id))
            .where(
                col(Domain.state).in_(ROUTED_DOMAIN_STATES),
                col(Deployment.removed_at).is_(None),
            )
        ).all()
    }


def _by_deployment(
    steps: Mapping[str, HostCounters], hosts: Mapping[str, str]
) -> dict[str, HostCounters]:
    """Each deployment's step over all its hosts (its own and its custom domains): requests,
    errors and the histogram add up, and so do the requests in flight at once on each."""
    found: dict[str, HostCounters] = {}
    for host, step in steps.items():
        deployment_id = hosts[host]
        before = found.get(deployment_id)
        if before is None:
            found[deployment_id] = step
        else:
            found[deployment_id] = added(before, step)
            found[deployment_id].in_flight = before.in_flight + step.in_flight
    return found


def _count_by_deployment(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    return {deployment_id: int(count) for deployment_id, count in rows}


def _prune(session: Session, now: datetime) -> None:
    session.execute(
        delete(MetricPoint).where(
            col(MetricPoint.step_seconds) == FINE_STEP_SECONDS,
            col(MetricPoint.at) < now - KEEP_FINE,
        )
    )
    session.execute(
        delete(MetricPoint).where(
            col(MetricPoint.step_seconds) == COARSE_STEP_SECONDS,
            col(MetricPoint.at) < now - KEEP_COARSE,
        )
    )
    for step, keep in ((FINE_STEP_SECONDS, KEEP_FINE), (COARSE_STEP_SECONDS, KEEP_COARSE)):
        session.execute(
            delete(ReplicaMetricPoint).where(
                col(ReplicaMetricPoint.step_seconds) == step,
                col(ReplicaMetricPoint.at) < now - keep,
            )
        )


def series(
    sessions: SessionFactory, deployment_id: str, since: datetime, step_seconds: int
) -> list[MetricPoint]:
    """The deployment's points of one step since a time, oldest first."""
    with sessions() as session:
        return list(
            session.exec(
                select(MetricPoint)
                .where(
                    MetricPoint.deployment_id == deployment_id,
                    MetricPoint.step_seconds == step_seconds,
                    col(MetricPoint.at) >= since,
                )
                .order_by(col(MetricPoint.at))
            ).all()
        )


def request_counts(
    session: Session, deployment_ids: Sequence[str], since: datetime, step_seconds: int
) -> dict[str, list[int]]:
    """Requests per step of many deployments since a time, oldest first, by deployment: the
    few columns a list's sparklines need, in one query."""
    rows = session.exec(
        select(MetricPoint.deployment_id, MetricPoint.requests)
        .where(
            col(MetricPoint.deployment_id).in_(list(deployment_ids)),
            MetricPoint.step_seconds == step_seconds,
            col(MetricPoint.at) >= since,
        )
        .order_by(col(MetricPoint.deployment_id), col(MetricPoint.at))
    ).all()
    found: dict[str, list[int]] = {}
    for deployment_id, requests in rows:
        found.setdefault(deployment_id, []).append(requests)
    return found


def replica_series(
    sessions: SessionFactory, deployment_id: str, since: datetime, step_seconds: int
) -> list[ReplicaMetricPoint]:
    """The deployment's replicas' points of one step since a time, oldest first."""
    with sessions() as session:
        return list(
            session.exec(
                select(ReplicaMetricPoint)
                .where(
                    ReplicaMetricPoint.deployment_id == deployment_id,
                    ReplicaMetricPoint.step_seconds == step_seconds,
                    col(ReplicaMetricPoint.at) >= since,
                )
                .order_by(col(ReplicaMetricPoint.at), col(ReplicaMetricPoint.replica_id))
            ).all()
        )
