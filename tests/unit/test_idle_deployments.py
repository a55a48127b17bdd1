"""The usage tick over the services: requests through the router (as the metrics sampler counted
them) and traces make a day used, the owners get one GitHub issue after the notice days, it
closes on use, deletion after the delete days drops the database and the route, and `keep`
exempts a deployment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, Router
from litestar.testing import TestClient
from sqlmodel import select

from app.access.tokens import Caller
from app.adapters.langsmith import LangSmithProjects
from app.api.deployments import DeploymentController
from app.deployments.idle import IdleRules
from app.kernel.models import Deployment, Domain, RevisionState, UsageDay
from app.kernel.settings import Settings
from manifests.tracing import LangSmith, Tracing
from tests.support.fake_langsmith import FakeLangSmith
from tests.support.platform import wait_for
from tests.unit.dashboard_site import constant
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


def noticed(platform: Platform) -> Deployment:
    """A live deployment, first looked at, then unused past the notice (8 days): noticed."""
    deployment = live(platform)
    platform.usage.tick()
    days_later(platform, 8)
    assert platform.usage.tick().noticed == [deployment.id]
    return deployment


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


OPERATOR = "json://ops.example.com/hook/OPERATOR-TOKEN"


@dataclass
class Channels:
    """The notification channels' sender: what it was given, (title, body) each."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, url: str, *, title: str, body: str, tenant: bool) -> None:
        self.sent.append((title, body))


@pytest.fixture
def channels(idle: Platform) -> Channels:
    """The operator's channel (SLIPWAY_NOTIFY) on the idle platform."""
    recorder = Channels()
    idle.channels = recorder
    idle.notify = (OPERATOR,)
    idle.__post_init__()
    return recorder


def issue_creations(platform: Platform) -> int:
    path = f"/repos/{platform.full_name}/issues"
    return sum(1 for call in platform.github.requests if call == ("POST", path))


def delivered(platform: Platform) -> bool:
    """The idle notice was recorded sent on a channel (as the worker's drain records it)."""
    return any(
        row.event == "idle_notice" and row.state == "sent"
        for row in platform.notifications.history(platform.deployment().id)
    )


def api(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> TestClient[Litestar]:
    """The deployments API over the platform, at its clock, with these idle rules."""
    monkeypatch.setattr("app.api.deployments.utcnow", lambda: platform.clock.now)
    values = {
        "sessions": platform.sessions,
        "settings": Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            idle_day_seconds=RULES.day_seconds,
            idle_notice_days=RULES.notice_days,
            idle_delete_days=RULES.delete_days,
            **settings,
        ),
        "operations": platform.operations,
        # What the controller's other routes take: none of these tests calls them.
        **dict.fromkeys(("follows", "notices", "pipeline_config", "queue", "secrets")),
    }
    app = Litestar(
        route_handlers=[Router(path="/api", route_handlers=[DeploymentController])],
        dependencies={name: constant(value) for name, value in values.items()},
    )
    return TestClient(app=app)


def idle_view(client: TestClient[Litestar], deployment: Deployment) -> dict[str, Any]:
    answer = client.get(f"/api/deployments/{deployment.id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["idle"])


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
    deployment = noticed(idle)
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
    deployment = noticed(idle)
    idle.operations.keep(deployment.id, True, ALICE)
    assert idle.usage.tick().withdrawn == [deployment.id]
    days_later(idle, 100)
    report = idle.usage.tick()
    assert report.deleted == [] and report.noticed == []
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "closed"


def test_a_route_load_between_two_samples_loses_no_request(idle: Platform) -> None:
    deployment = noticed(idle)
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


def test_deleting_a_deployment_leaves_its_tracing_project(idle: Platform) -> None:
    with FakeLangSmith(KEY) as fake:
        settings = LangSmith(endpoint=fake.url, api_key=KEY)
        idle.tracing_service = LangSmithProjects(settings)
        idle.reconfigure(tracing=Tracing(langsmith=settings))
        deployment = live(idle)
        idle.tracing_projects.ensure_missing()
        fake.runs["r1"] = {"id": "r1", "session_name": deployment.slug, "start_time": "x"}
        [project] = fake.projects.values()
        done = idle.operations.delete(deployment.id, deployment.slug, ALICE)
        idle.carry_out(done.outcome)
        assert idle.deployment_by_id(deployment.id).torn_down_at is not None
        assert list(fake.projects.values()) == [project]  # the project and its traces stay
        assert fake.runs_in(deployment.slug)
        assert [call for call in fake.requests if call[0] == "DELETE"] == []
        fake.assert_no_errors()


def test_without_issues_the_channels_carry_the_notice_and_the_deletion_keeps_its_date(
    idle: Platform, channels: Channels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = live(idle)
    idle.github.turn_issues(idle.full_name, on=False)  # GitHub answers 410 to every issue call
    idle.usage.tick()
    days_later(idle, 8)
    assert idle.usage.tick().noticed == [deployment.id]
    wait_for("the notice delivered to the operator's channel", lambda: delivered(idle), 10)
    [(title, body)] = channels.sent
    assert title == f"{deployment.slug}: unused for 7 days" and "deleted on" in body
    with api(idle, tmp_path, monkeypatch) as client:
        shown = idle_view(client, deployment)
        error = shown["notice_error"]
        assert "HTTP 410" in error and "Issues are disabled" in error  # GitHub's own words
        assert shown["notice_issue"] is None and shown["delete_held"] is None
        assert shown["notice_retry_at"] is not None

    # Not retried every tick: once a day.
    for _ in range(3):
        days_later(idle, 0.3)
        assert idle.usage.tick().noticed == []
    assert issue_creations(idle) == 1
    days_later(idle, 0.2)
    assert idle.usage.tick().noticed == [deployment.id]
    assert issue_creations(idle) == 2
    assert len(channels.sent) == 1  # the channels carried it: told once

    # Deleted 21 days after the channel carried the notice, and the channels are told.
    days_later(idle, 19.5)
    assert idle.usage.tick().deleted == []
    days_later(idle, 0.5)
    report = idle.usage.tick()
    assert report.deleted == [deployment.id]
    wait_for("the deletion on the operator's channel", lambda: len(channels.sent) == 2, 10)
    title, body = channels.sent[1]
    assert title == f"{deployment.slug}: deleted"
    assert "Slipway's idle rules deleted" in body
    assert re.search(r"its database: unused for 2[89] days", body)  # 28, and the day begun
    assert idle.github.issues(idle.full_name) == []


def test_a_notice_no_channel_carried_holds_the_deletion_and_the_api_says_why(
    idle: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = live(idle)
    idle.github.turn_issues(idle.full_name, on=False)
    idle.usage.tick()
    days_later(idle, 8)
    assert idle.usage.tick().noticed == [deployment.id]
    for _ in range(40):  # ten days past the deletion date, a tick every quarter day
        days_later(idle, 0.25)
        assert idle.usage.tick().deleted == []
    assert issue_creations(idle) == 11  # the first try and one a day since, not 41
    assert idle.deployment_by_id(deployment.id).deleted_at is None
    with api(idle, tmp_path, monkeypatch) as client:
        shown = idle_view(client, deployment)
    held = shown["delete_held"]
    assert held is not None and "reached no one" in held and "HTTP 410" in held
    assert "no notification channel is configured" in held

    # Issues on again: the next daily try opens the issue, and the deletion is 21 days later.
    idle.github.turn_issues(idle.full_name, on=True)
    while idle.usage.tick().noticed == []:
        days_later(idle, 0.25)
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "open" and "deleted on" in issue["body"]
    with api(idle, tmp_path, monkeypatch) as client:
        shown = idle_view(client, deployment)
    assert shown["notice_issue"] == issue["number"] and shown["delete_held"] is None
    assert shown["notice_error"] is None
    days_later(idle, 20.9)
    assert idle.usage.tick().deleted == []
    days_later(idle, 0.1)
    assert idle.usage.tick().deleted == [deployment.id]
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "closed" and "deleted" in issue["title"]


def test_deleting_through_the_api_closes_an_open_notice(idle: Platform) -> None:
    deployment = noticed(idle)
    idle.operations.delete(deployment.id, deployment.slug, ALICE)
    assert idle.usage.tick().withdrawn == [deployment.id]
    [issue] = idle.github.issues(idle.full_name)
    assert issue["state"] == "closed" and "It was deleted." in issue["body"]
    assert idle.usage.tick().withdrawn == []  # closed once


def test_the_list_shows_each_deployment_as_its_own_page_does(
    idle: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeLangSmith(KEY) as fake:
        deployment = live(idle)
        idle.usage.tick()
        days_later(idle, 8)
        idle.usage.tick()
        with api(
            idle, tmp_path, monkeypatch, langsmith_api_key=KEY, langsmith_endpoint=fake.url
        ) as client:
            [listed] = client.get("/api/deployments").json()
            own = client.get(f"/api/deployments/{deployment.id}").json()
    assert listed["idle"] == own["idle"] and listed["idle"]["notice_issue"] is not None
    assert listed["tracing"] == own["tracing"]
    assert listed["tracing"]["project"] == deployment.slug
