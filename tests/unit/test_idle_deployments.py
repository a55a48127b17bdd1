"""The usage tick over the services: requests through the router (as the metrics sampler counted
them) and traces make a day used, the owners get one GitHub issue after the notice days, it
closes on use, deletion after the delete days drops the database and the route, and `keep`
exempts a deployment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from app.access.tokens import Caller
from app.adapters.langsmith import LangSmithProjects
from app.deployments.idle import IdleRules
from app.kernel.models import Deployment, Domain, RevisionState, UsageDay
from manifests.tracing import LangSmith, Tracing
from tests.support.fake_langsmith import FakeLangSmith
from tests.unit.world import Platform

DAY = 1000.0
RULES = IdleRules(day_seconds=DAY, notice_days=7, delete_days=28)
ALICE = Caller(name="alice", read_only=False)
KEY = "lsv2_pt_idle-key"


@pytest.fixture
def idle(platform: Platform) -> Platform:
    platform.idle = RULES
    platform.__post_init__()
    return platform


def live(platform: Platform) -> Deployment:
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    platform.metrics.sample()  # the worker's first read: the baseline
    return platform.deployment()


def requests(platform: Platform, deployment: Deployment, count: int = 1) -> None:
    """Requests through the router, then the sampler's next step (every 10 s in the worker)."""
    platform.router.serve(hostname(platform, deployment), count)
    platform.metrics.sample()


def day_requests(platform: Platform, deployment: Deployment) -> dict[int, int]:
    with platform.sessions() as session:
        rows = session.exec(select(UsageDay).where(UsageDay.deployment_id == deployment.id))
        return {row.day: row.requests for row in rows}


def days_later(platform: Platform, days: float) -> None:
    platform.clock.now += timedelta(seconds=DAY * days)


def hostname(platform: Platform, deployment: Deployment) -> str:
    return platform.config.hostname(deployment.slug)


def test_seven_unused_days_open_one_issue_a_request_closes_it(idle: Platform) -> None:
    deployment = live(idle)
    idle.usage.tick()  # first look: counted from now
    days_later(idle, 7)
    assert idle.usage.tick().noticed == []
    days_later(idle, 1)
    assert idle.usage.tick().noticed == [deployment.id]
    assert idle.usage.tick().noticed == []  # one issue, not one a tick
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "open" and deployment.slug in issue["title"]
    assert "deleted on" in issue["body"]

    requests(idle, deployment)
    report = idle.usage.tick()
    assert report.used == 1 and report.withdrawn == [deployment.id]
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "closed"

    # A later idle spell reopens the same issue.
    days_later(idle, 9)
    idle.usage.tick()
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "open"


def test_twenty_eight_unused_days_delete_it_as_the_api_does(idle: Platform) -> None:
    deployment = live(idle)
    idle.usage.tick()
    days_later(idle, 8)
    assert idle.usage.tick().noticed == [deployment.id]
    days_later(idle, 20.9)
    assert idle.usage.tick().deleted == []
    days_later(idle, 0.1)
    report = idle.usage.tick()
    assert report.deleted == [deployment.id]
    for order in report.orders:
        idle.carry_out(order)
    gone = idle.deployment_by_id(deployment.id)
    assert gone.deleted_at is not None and gone.torn_down_at is not None
    assert idle.databases.databases == {}  # dropped
    assert idle.router.upstreams(hostname(idle, deployment)) is None  # no route: 404
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "closed" and "deleted" in issue["title"]


def test_keep_exempts_a_deployment_and_closes_its_notice(idle: Platform) -> None:
    deployment = live(idle)
    idle.usage.tick()
    days_later(idle, 8)
    assert idle.usage.tick().noticed == [deployment.id]
    idle.operations.keep(deployment.id, True, ALICE)
    assert idle.usage.tick().withdrawn == [deployment.id]
    days_later(idle, 100)
    report = idle.usage.tick()
    assert report.deleted == [] and report.noticed == []
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "closed"


def test_a_route_load_between_two_samples_loses_no_request(idle: Platform) -> None:
    deployment = live(idle)
    idle.usage.tick()
    days_later(idle, 8)
    assert idle.usage.tick().noticed == [deployment.id]
    idle.router.serve(hostname(idle, deployment), 2)
    idle.router.apply(idle.router.routes or [])  # a route change: Caddy's counts start again
    assert idle.router.served == {}
    idle.metrics.sample()  # now's read says 0; the read before the load says 2

    report = idle.usage.tick()
    assert report.used == 1 and report.withdrawn == [deployment.id]
    assert list(day_requests(idle, deployment).values()) == [2]
    assert idle.usage.tick().used == 0  # a point is counted once


def test_requests_on_either_side_of_a_load_all_count_on_their_day(idle: Platform) -> None:
    deployment = live(idle)
    idle.usage.tick()
    requests(idle, deployment, 3)
    idle.router.serve(hostname(idle, deployment), 4)
    idle.router.apply(idle.router.routes or [])
    requests(idle, deployment, 5)
    assert idle.usage.tick().used == 1
    days_later(idle, 1)
    requests(idle, deployment, 1)
    assert idle.usage.tick().used == 1
    assert sorted(day_requests(idle, deployment).values()) == [1, 12]


def test_requests_only_through_a_custom_domain_are_a_use(idle: Platform) -> None:
    """A deployment reached only at its own domain serves its users: not idle."""
    deployment = live(idle)
    with idle.sessions() as session:
        session.add(Domain(name="www.example.com", deployment_id=deployment.id, state="active"))
        session.commit()
    idle.usage.tick()
    days_later(idle, 8)
    assert idle.usage.tick().noticed == [deployment.id]
    idle.router.serve("www.example.com", 2)
    idle.metrics.sample()

    report = idle.usage.tick()
    assert report.used == 1 and report.withdrawn == [deployment.id]
    assert list(day_requests(idle, deployment).values()) == [2]


def test_requests_before_the_first_look_are_not_counted_after_it(idle: Platform) -> None:
    deployment = live(idle)
    requests(idle, deployment, 3)  # sampled before the rules first looked at it
    assert idle.usage.tick().used == 0
    assert idle.usage.tick().used == 0
    assert day_requests(idle, deployment) == {}


def test_a_trace_is_a_use(idle: Platform) -> None:
    with FakeLangSmith(KEY) as fake:
        settings = LangSmith(endpoint=fake.url, api_key=KEY)
        idle.tracing_service = LangSmithProjects(settings)
        idle.reconfigure(tracing=Tracing(langsmith=settings))
        deployment = live(idle)
        idle.tracing_projects.ensure_missing()
        idle.usage.tick()
        days_later(idle, 8)
        assert idle.usage.tick().noticed == [deployment.id]
        run_at = idle.clock.now.isoformat()
        fake.runs["r1"] = {"id": "r1", "session_name": deployment.slug, "start_time": run_at}
        days_later(idle, 0.1)
        report = idle.usage.tick()
        assert report.used == 1 and report.withdrawn == [deployment.id]
        fake.assert_no_errors()
