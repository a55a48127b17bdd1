"""Deployment metrics from the router's per-host counts: steps are differences between reads,
latency quantiles come off the histogram, an idle deployment writes one point a minute, and
old points go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from app.kernel.db import SessionFactory
from app.kernel.models import Domain, MetricPoint, Replica, ReplicaState
from app.replicas.metrics import (
    MetricsSampler,
    difference,
    parse_router_metrics,
    quantile,
)
from tests.support.rows import add_deployment, add_web_revision

HOST = "web.localhost"
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf")


def caddy_text(hosts: dict[str, tuple[int, int, list[int]]]) -> str:
    """Caddy's metrics as it writes them: per host, requests and 5xx, and the cumulative
    counts of the duration histogram's buckets (of the 200 answers; 5xx all under 5 ms)."""
    lines = [
        "# HELP caddy_http_requests_total Counter of HTTP(S) requests made.",
        "# TYPE caddy_http_requests_total counter",
    ]
    for host, (requests, _, _) in hosts.items():
        lines.append(
            f'caddy_http_requests_total{{handler="reverse_proxy",host="{host}",server="srv0"}} '
            f"{requests}"
        )
    lines += [
        "# HELP caddy_http_request_duration_seconds Histogram of round-trip request durations.",
        "# TYPE caddy_http_request_duration_seconds histogram",
    ]
    for host, (_requests, errors, buckets) in hosts.items():
        for code, counts in (("200", buckets), ("503", [errors] * len(BOUNDS))):
            labels = f'code="{code}",handler="reverse_proxy",host="{host}",method="GET"'
            for bound, count in zip(BOUNDS, counts, strict=True):
                lines.append(
                    f'caddy_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count}'
                )
            lines.append(f"caddy_http_request_duration_seconds_sum{{{labels}}} 1.0")
            lines.append(f"caddy_http_request_duration_seconds_count{{{labels}}} {counts[-1]}")
    lines.append('caddy_http_requests_in_flight{handler="reverse_proxy",host="_other"} 0')
    return "\n".join(lines) + "\n"


def test_the_routers_text_is_read_per_host_with_its_errors_and_histogram() -> None:
    read = parse_router_metrics(
        caddy_text({HOST: (10, 2, [0, 4, 8, 8, 8, 8, 8, 8, 8]), "b.localhost": (1, 0, [1] * 9)})
    )

    web = read[HOST]
    assert (web.requests, web.errors) == (10, 2)
    assert web.buckets[0.01] == 4 + 2 and web.buckets[float("inf")] == 10
    assert set(read) == {HOST, "b.localhost", "_other"}


def test_quantiles_interpolate_within_the_bucket_they_fall_in() -> None:
    # 100 requests: 50 under 10 ms, 40 between 10 and 50 ms, 10 between 100 ms and 1 s.
    buckets = {0.01: 50, 0.05: 90, 0.1: 90, 1.0: 100, float("inf"): 100}

    assert quantile(buckets, 0.5) == pytest.approx(0.01)
    assert quantile(buckets, 0.7) == pytest.approx(0.03)
    assert quantile(buckets, 0.95) == pytest.approx(0.55)
    assert quantile({0.1: 0, float("inf"): 0}, 0.5) is None
    assert quantile({0.1: 1, float("inf"): 10}, 0.99) == pytest.approx(0.1)  # past the last bound


def test_a_step_is_the_difference_and_a_router_restart_starts_again() -> None:
    before = parse_router_metrics(caddy_text({HOST: (10, 1, [5, 9, 9, 9, 9, 9, 9, 9, 9])}))[HOST]
    after = parse_router_metrics(caddy_text({HOST: (25, 2, [5, 20, 23, 23, 23, 23, 23, 23, 23])}))[
        HOST
    ]

    step = difference(after, before)
    assert (step.requests, step.errors) == (15, 1)
    assert step.buckets[0.005] == 1  # the new 5xx, all under 5 ms
    restarted = parse_router_metrics(caddy_text({HOST: (3, 0, [3] * 9)}))[HOST]
    assert difference(restarted, after).requests == 3
    assert difference(after, None).requests == 0  # a first read is a baseline


class Router:
    def __init__(self) -> None:
        self.text = caddy_text({})
        self.before_loads: list[str] = []
        """Reads the router adapter took just before its loads, since the last sample."""

    def __call__(self) -> list[str]:
        kept, self.before_loads = self.before_loads, []
        return [*kept, self.text]


@pytest.fixture
def deployment(sessions: SessionFactory) -> str:
    with sessions() as session:
        add_web_revision(session)
        add_deployment(session, "dep_idle", slug="idle", branch="idle")
        session.add(
            Replica(id="rep_1", revision_id="rev_1", container_name="web-1-a", container_port=8000)
        )
        session.add(
            Replica(id="rep_2", revision_id="rev_1", container_name="web-1-b", container_port=8000)
        )
        session.commit()
    return "dep_web"


def test_the_sampler_writes_busy_steps_every_ten_seconds_and_every_deployment_each_minute(
    sessions: SessionFactory, deployment: str
) -> None:
    now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
    router = Router()
    sampler = MetricsSampler(
        sessions=sessions,
        scrape=router,
        hostname=lambda slug: f"{slug}.localhost",
        clock=lambda: now[0],
    )
    sampler.sample()  # the baseline
    for step in range(1, 7):  # a minute of 10 s steps, traffic in the first three only
        now[0] += timedelta(seconds=10)
        if step <= 3:
            total = step * 100
            router.text = caddy_text({HOST: (total, step, [0, total - step * 10, *[total] * 7])})
        if step == 2:
            with sessions() as session:
                dead = session.get(Replica, "rep_2")
                assert dead is not None
                dead.state, dead.stopped_at = ReplicaState.dead, now[0] - timedelta(seconds=3)
                session.add(dead)
                session.commit()
        sampler.sample()

    with sessions() as session:
        points = session.exec(select(MetricPoint).order_by(col(MetricPoint.at))).all()
    fine = [p for p in points if p.step_seconds == 10]
    coarse = {p.deployment_id: p for p in points if p.step_seconds == 60}
    assert [(p.requests, p.errors) for p in fine] == [(100, 1), (100, 1), (100, 1)]
    assert [p.restarts for p in fine] == [0, 1, 0] and fine[-1].replicas == 1
    assert fine[0].p50_ms is not None and 5 <= fine[0].p50_ms <= 10
    assert set(coarse) == {"dep_web", "dep_idle"}  # the idle one too, once a minute
    assert (coarse["dep_web"].requests, coarse["dep_web"].errors) == (300, 3)
    assert coarse["dep_web"].restarts == 1
    assert coarse["dep_idle"].requests == 0 and coarse["dep_idle"].p50_ms is None


def test_points_older_than_they_are_kept_go(sessions: SessionFactory, deployment: str) -> None:
    now = [datetime(2026, 12, 7, 10, 0, tzinfo=UTC)]
    with sessions() as session:
        session.add(
            MetricPoint(
                deployment_id=deployment,
                at=now[0] - timedelta(hours=2),
                step_seconds=10,
                requests=1,
            )
        )
        session.add(
            MetricPoint(
                deployment_id=deployment, at=now[0] - timedelta(days=8), step_seconds=60, requests=1
            )
        )
        session.add(
            MetricPoint(
                deployment_id=deployment, at=now[0] - timedelta(days=6), step_seconds=60, requests=1
            )
        )
        session.commit()
    sampler = MetricsSampler(
        sessions=sessions, scrape=Router(), hostname=lambda s: s, clock=lambda: now[0]
    )
    for _ in range(7):
        sampler.sample()
        now[0] += timedelta(seconds=10)

    with sessions() as session:
        kept = session.exec(select(MetricPoint).where(MetricPoint.requests == 1)).all()
    assert [(p.step_seconds, now[0] - p.at > timedelta(days=5)) for p in kept] == [(60, True)]


def test_requests_sent_with_the_routers_port_in_host_count_for_the_host() -> None:
    read = parse_router_metrics(
        caddy_text({HOST: (10, 0, [10] * 9), f"{HOST}:8000": (5, 1, [4] * 9)})
    )

    assert (read[HOST].requests, read[HOST].errors) == (15, 1)
    assert f"{HOST}:8000" not in read


def test_a_step_across_a_router_reload_counts_from_the_reload(
    sessions: SessionFactory, deployment: str
) -> None:
    now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
    router = Router()
    sampler = MetricsSampler(
        sessions=sessions, scrape=router, hostname=lambda s: f"{s}.localhost", clock=lambda: now[0]
    )
    reload = "caddy_config_last_reload_success_timestamp_seconds {}\n"
    router.text = reload.format(1.0) + caddy_text({HOST: (50, 0, [50] * 9)})
    sampler.sample()  # the baseline
    now[0] += timedelta(seconds=10)
    # A route change loaded a new configuration at 60 (read just before), then 20 more.
    router.before_loads = [reload.format(1.0) + caddy_text({HOST: (60, 0, [60] * 9)})]
    router.text = reload.format(2.0) + caddy_text({HOST: (20, 0, [20] * 9)})
    sampler.sample()
    now[0] += timedelta(seconds=10)
    # A load by another process (no read before it): counts from the load.
    router.text = reload.format(3.0) + caddy_text({HOST: (7, 0, [7] * 9)})
    sampler.sample()

    with sessions() as session:
        points = session.exec(select(MetricPoint).order_by(col(MetricPoint.at))).all()
    assert [p.requests for p in points] == [30, 7]


def test_a_router_at_rest_is_not_parsed_again_each_step(
    sessions: SessionFactory, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: the read every 10 s parsed ~4,000 lines for 100 hosts (~17 ms) to find the
    same counts; Go's own metrics change at every read, the requests' do not at rest."""
    import app.replicas.metrics as metrics

    parsed: list[str] = []

    def counting(text: str) -> dict[str, metrics.HostCounters]:
        parsed.append(text)
        return parse_router_metrics(text)

    monkeypatch.setattr(metrics, "parse_router_metrics", counting)
    now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
    router = Router()
    sampler = MetricsSampler(
        sessions=sessions, scrape=router, hostname=lambda s: f"{s}.localhost", clock=lambda: now[0]
    )
    counts = caddy_text({HOST: (50, 0, [50] * 9)})
    for gc_runs in range(4):  # at rest: only Go's numbers move
        router.text = f"go_gc_duration_seconds_count {gc_runs}\n" + counts
        sampler.sample()
        now[0] += timedelta(seconds=10)
    assert len(parsed) == 1
    router.text = "go_gc_duration_seconds_count 9\n" + caddy_text({HOST: (80, 0, [80] * 9)})
    sampler.sample()
    assert len(parsed) == 2

    with sessions() as session:
        points = session.exec(select(MetricPoint).where(MetricPoint.step_seconds == 10)).all()
    assert [p.requests for p in points] == [30]


def test_a_deployments_custom_domains_count_in_its_series(
    sessions: SessionFactory, deployment: str
) -> None:
    """The router serves a deployment's routed custom domains beside its own host and counts
    them under their own names: they are the deployment's traffic too. A domain whose DNS does
    not point here yet is not routed (Caddy counts its requests, if any, under `_other`)."""
    with sessions() as session:
        session.add(Domain(name="www.example.com", deployment_id=deployment, state="active"))
        session.add(Domain(name="shop.example.com", deployment_id=deployment, state="issuing"))
        session.add(Domain(name="later.example.com", deployment_id=deployment))  # pending-dns
        session.commit()
    now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
    router = Router()
    sampler = MetricsSampler(
        sessions=sessions, scrape=router, hostname=lambda s: f"{s}.localhost", clock=lambda: now[0]
    )
    sampler.sample()  # the baseline
    now[0] += timedelta(seconds=10)
    router.text = caddy_text(
        {
            HOST: (10, 1, [10] * 9),
            "www.example.com:8000": (20, 2, [0, 20, *[20] * 7]),
            "shop.example.com": (5, 0, [5] * 9),
            "later.example.com": (1000, 0, [1000] * 9),
        }
    )
    sampler.sample()

    with sessions() as session:
        [point] = session.exec(select(MetricPoint).where(MetricPoint.step_seconds == 10)).all()
    assert (point.deployment_id, point.requests, point.errors) == (deployment, 35, 3)
    assert point.p50_ms is not None and 5 <= point.p50_ms <= 10  # most went to the domain
