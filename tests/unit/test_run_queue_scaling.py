"""A LangGraph deployment scales on its run queue as well as on its requests.

The decision is pure (app/replicas/autoscaler.py): the count is the larger of the concurrency's
and ceil((pending + running) / (N_JOBS_PER_WORKER x 0.75)), within the deployment type's
bounds, and it comes down by the same delay as any other count. The reading side
(app/replicas/run_queue.py) reads only LangGraph `pg` deployments, falls back to requests alone
when a read fails (for that deployment only), and keeps no secret of the env.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import DatabaseError
from app.kernel.models import Database, MetricPoint
from app.kernel.ports import DatabaseLogin
from app.replicas.autoscaler import (
    DEFAULT_JOBS_PER_WORKER,
    AutoscaleDefaults,
    Decision,
    Reason,
    RunQueue,
    Sample,
    ScalerState,
    ScalingPolicy,
    decide,
    jobs_per_worker,
    queue_replicas,
    scaling_policy,
)
from app.replicas.metrics import MetricsSampler
from app.replicas.run_queue import RunQueues
from manifests.config import ScaleConfig
from manifests.containers import DeploymentType
from manifests.run import RunConfig
from tests.support.rows import add_deployment, add_repository, add_revision

TICK = 2.0
START = 1_700_000_000.0
DEFAULTS = AutoscaleDefaults(
    target_concurrency=10.0,
    max_replicas=10,
    stable_window_seconds=60.0,
    panic_window_seconds=6.0,
    scale_down_delay_seconds=300.0,
)
LANGGRAPH = scaling_policy(DeploymentType.production, DEFAULTS, None, run_queue_env={})


class Deployment_:
    """A deployment under a perfect reconciler, given requests and a run queue each tick."""

    def __init__(self, policy: ScalingPolicy = LANGGRAPH) -> None:
        self.policy = policy
        self.replicas = 1
        self.now = START
        self.state = ScalerState()

    def tick(self, concurrency: float, queue: RunQueue | None) -> Decision:
        sample = Sample(self.now, concurrency, self.replicas, queue=queue)
        self.state, decision = decide(
            self.policy, self.state, sample, actual=self.replicas, now=self.now
        )
        self.replicas = decision.desired
        self.now += TICK
        return decision

    def run(self, concurrency: float, queue: RunQueue | None, seconds: float) -> list[Decision]:
        return [self.tick(concurrency, queue) for _ in range(round(seconds / TICK))]


def runs(total: int, pending: int = 0) -> RunQueue:
    return RunQueue(pending=pending, running=total - pending)


# -- the count ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "jobs", "replicas"),
    [
        (0, 10, 0),
        (1, 10, 1),
        (7, 10, 1),
        (8, 10, 2),
        (15, 10, 2),
        (16, 10, 3),
        (30, 10, 4),
        (15, 20, 1),
        (16, 20, 2),
        (3, 1, 4),
    ],
)
def test_the_queue_asks_for_a_replica_per_three_quarters_of_its_workers(
    total: int, jobs: int, replicas: int
) -> None:
    assert queue_replicas(runs(total), jobs) == replicas


def test_background_runs_alone_scale_up_at_the_first_tick_that_reads_them() -> None:
    deployment = Deployment_()
    deployment.run(0, runs(0), 60)
    assert deployment.replicas == 1

    decision = deployment.tick(0, runs(30, pending=20))

    assert decision.desired == 4
    assert decision.reason is Reason.scale_up
    assert decision.queue == RunQueue(pending=20, running=10)
    assert decision.queue_replicas == 4
    assert decision.stable_concurrency == 0


def test_requests_win_when_they_ask_for_more_than_the_queue() -> None:
    deployment = Deployment_()
    decisions = deployment.run(35, runs(3), 120)

    assert deployment.replicas == 4
    assert decisions[-1].queue_replicas == 1
    assert decisions[-1].stable_concurrency == pytest.approx(35)


def test_the_queue_wins_when_it_asks_for_more_than_the_requests() -> None:
    deployment = Deployment_()
    decisions = deployment.run(12, runs(45), 120)

    assert deployment.replicas == 6
    assert decisions[-1].queue_replicas == 6


def test_a_drained_queue_keeps_the_replicas_for_the_delay_then_they_go() -> None:
    deployment = Deployment_()
    deployment.run(0, runs(30), 30)
    assert deployment.replicas == 4
    last_asked = deployment.now - TICK

    during = deployment.run(0, runs(0), LANGGRAPH.scale_down_delay_seconds - TICK)
    assert {d.desired for d in during} == {4}
    assert during[-1].reason is Reason.waiting_for_delay

    after = deployment.run(0, runs(0), 30)
    assert deployment.replicas == 1
    first_lower = next(d for d in after if d.desired < 4)
    assert first_lower.at - last_asked >= LANGGRAPH.scale_down_delay_seconds
    assert first_lower.reason is Reason.scale_down
    assert first_lower.desired == 1, "in one decision, as far as the delay allows"


def test_a_queue_falling_in_steps_comes_down_in_the_same_steps_after_the_delay() -> None:
    deployment = Deployment_()
    deployment.run(0, runs(30), 30)
    deployment.run(0, runs(15), 30)  # asks for 2: the delay holds 4
    assert deployment.replicas == 4
    decisions = deployment.run(0, runs(0), LANGGRAPH.scale_down_delay_seconds + 60)
    order = [d.desired for d in decisions]
    assert order.index(2) < order.index(1) and 3 not in order


def test_an_unread_queue_leaves_the_count_to_the_requests_and_the_delay() -> None:
    deployment = Deployment_()
    deployment.run(0, runs(30), 10)
    assert deployment.replicas == 4

    unread = deployment.run(0, None, 60)

    assert {d.desired for d in unread} == {4}, "the delay holds what the queue asked for"
    assert all(d.queue is None and d.queue_replicas is None for d in unread)


def test_a_deployment_without_a_run_queue_ignores_one() -> None:
    plain = scaling_policy(DeploymentType.production, DEFAULTS, None)
    assert plain.jobs_per_worker is None
    deployment = Deployment_(plain)

    decision = deployment.tick(0, runs(100))

    assert decision.desired == 1
    assert decision.queue is None and decision.queue_replicas is None


# -- the bounds of the deployment's type ---------------------------------------------------


def test_a_development_deployment_runs_one_replica_whatever_its_queue() -> None:
    development = scaling_policy(DeploymentType.development, DEFAULTS, None, run_queue_env={})
    deployment = Deployment_(development)
    decisions = deployment.run(0, runs(500), 20)
    assert {d.desired for d in decisions} == {1}


def test_a_production_deployment_stops_at_the_platform_max_and_its_scale_max() -> None:
    deployment = Deployment_()
    decision = deployment.tick(0, runs(1000))
    assert decision.desired == 10
    assert decision.queue_replicas == 10

    capped = scaling_policy(
        DeploymentType.production, DEFAULTS, ScaleConfig(max=3), run_queue_env={}
    )
    decision = Deployment_(capped).tick(0, runs(30))
    assert (decision.desired, decision.queue_replicas) == (3, 3)


def test_a_scale_min_holds_with_an_empty_queue() -> None:
    policy = scaling_policy(
        DeploymentType.production, DEFAULTS, ScaleConfig(min=2), run_queue_env={}
    )
    deployment = Deployment_(policy)
    assert deployment.tick(0, runs(0)).desired == 2


# -- N_JOBS_PER_WORKER ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "jobs"),
    [({}, 10), ({"N_JOBS_PER_WORKER": "20"}, 20), ({"N_JOBS_PER_WORKER": " 4 "}, 4)],
)
def test_jobs_per_worker_is_read_from_the_env(env: dict[str, str], jobs: int) -> None:
    assert jobs_per_worker(env) == (jobs, None)
    policy = scaling_policy(DeploymentType.production, DEFAULTS, None, run_queue_env=env)
    assert policy.jobs_per_worker == jobs
    assert policy.notes == ()


@pytest.mark.parametrize("bad", ["ten", "", "2.5", "-3", "1e3", "99999999", "0x10"])
def test_a_bad_jobs_per_worker_counts_as_the_default_with_a_note(bad: str) -> None:
    jobs, note = jobs_per_worker({"N_JOBS_PER_WORKER": bad})
    assert jobs == DEFAULT_JOBS_PER_WORKER
    assert note is not None and "N_JOBS_PER_WORKER" in note and "10 runs per replica" in note

    policy = scaling_policy(
        DeploymentType.production, DEFAULTS, None, run_queue_env={"N_JOBS_PER_WORKER": bad}
    )
    assert policy.jobs_per_worker == DEFAULT_JOBS_PER_WORKER
    assert policy.notes == (note,)


def test_zero_jobs_per_worker_runs_no_queue_worker_so_the_queue_does_not_scale() -> None:
    jobs, note = jobs_per_worker({"N_JOBS_PER_WORKER": "0"})
    assert jobs is None
    assert note is not None and "no queue workers" in note
    policy = scaling_policy(
        DeploymentType.production, DEFAULTS, None, run_queue_env={"N_JOBS_PER_WORKER": "0"}
    )
    assert Deployment_(policy).tick(0, runs(100)).desired == 1


def test_a_long_bad_value_is_shortened_in_the_note() -> None:
    _, note = jobs_per_worker({"N_JOBS_PER_WORKER": "x" * 500})
    assert note is not None and len(note) < 200


def test_more_jobs_per_worker_need_fewer_replicas() -> None:
    policy = scaling_policy(
        DeploymentType.production, DEFAULTS, None, run_queue_env={"N_JOBS_PER_WORKER": "20"}
    )
    assert Deployment_(policy).tick(0, runs(30)).desired == 2


# -- the stored state ---------------------------------------------------------------------


def test_the_queue_survives_the_stored_state_and_an_older_state_still_loads() -> None:
    deployment = Deployment_()
    deployment.run(0, runs(30, pending=12), 6)
    loaded = ScalerState.from_json(deployment.state.to_json())
    assert loaded == deployment.state
    assert loaded.samples[-1].queue == RunQueue(pending=12, running=18)
    assert loaded.decisions[-1].queue_replicas == 4

    older = json.loads(deployment.state.to_json())
    for sample in older["samples"]:
        del sample["queue"]
    for decision in older["decisions"]:
        del decision["queue"], decision["queue_replicas"]
    assert ScalerState.from_json(json.dumps(older)).samples[-1].queue is None


def test_a_run_queue_counts_nothing_below_zero() -> None:
    with pytest.raises(ValueError):
        RunQueue(pending=-1, running=0)


# -- reading the queues ---------------------------------------------------------------------


class Reader:
    """A stand-in for the deployments' databases: counts by deployment, or an error."""

    def __init__(self, counts: dict[str, tuple[int, int] | Exception]) -> None:
        self.counts = counts
        self.asked: list[str] = []
        self.kept: list[set[str]] = []

    def run_counts(self, deployment_id: str, login: DatabaseLogin) -> tuple[int, int]:
        self.asked.append(deployment_id)
        assert login.role == f"role_{deployment_id}" and login.password == "pw"
        answer = self.counts[deployment_id]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def keep_only(self, deployment_ids: Iterable[str]) -> None:
        self.kept.append(set(deployment_ids))


SECRETS = SecretBox("unit-test-key")


@pytest.fixture
def live(sessions: SessionFactory) -> dict[str, str]:
    """Three production deployments: two LangGraph Servers on pg (one with
    N_JOBS_PER_WORKER = 20 among secrets), one Dockerfile app; live revision by deployment."""
    with sessions() as session:
        add_repository(session)
        runtimes = {"dep_a": "pg", "dep_b": "pg", "dep_c": None}
        for deployment_id in runtimes:
            add_deployment(session, deployment_id, slug=deployment_id[4:])
        for deployment_id, runtime in runtimes.items():
            env = {"N_JOBS_PER_WORKER": "20", "OPENAI_API_KEY": "sk-hidden"}
            add_revision(
                session,
                f"rev_{deployment_id}",
                deployment_id=deployment_id,
                run_config=RunConfig(port=8000, langgraph_runtime=runtime).to_json(),
                env_encrypted=SECRETS.encrypt(json.dumps(env))
                if deployment_id == "dep_b"
                else None,
            )
            session.add(
                Database(
                    deployment_id=deployment_id,
                    name=f"db_{deployment_id}",
                    role=f"role_{deployment_id}",
                    password_encrypted=SECRETS.encrypt("pw"),
                    provisioned_at=datetime(2026, 12, 7, tzinfo=UTC),
                )
            )
        session.commit()
    return {d: f"rev_{d}" for d in runtimes}


def test_only_langgraph_pg_deployments_are_read_and_their_env_is_not_kept(
    sessions: SessionFactory, live: dict[str, str]
) -> None:
    reader = Reader({"dep_a": (3, 4), "dep_b": (0, 0)})
    queues = RunQueues(sessions=sessions, secrets=SECRETS, reader=reader, wall=lambda: START)

    assert queues.read(live) == {"dep_a": RunQueue(3, 4), "dep_b": RunQueue(0, 0)}
    assert sorted(reader.asked) == ["dep_a", "dep_b"]
    assert reader.kept == [{"dep_a", "dep_b"}]
    assert queues.facts("rev_dep_b").env == {"N_JOBS_PER_WORKER": "20"}
    assert not queues.facts("rev_dep_c").queued
    assert queues.latest() == {"dep_a": RunQueue(3, 4), "dep_b": RunQueue(0, 0)}

    queues.read({"dep_b": "rev_dep_b"})  # dep_a has no ready replica any more
    assert reader.kept[-1] == {"dep_b"}
    assert set(queues.latest()) == {"dep_b"}


def test_a_failing_read_is_logged_with_the_deployment_and_tried_again_later(
    sessions: SessionFactory, live: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    now = [START]
    reader = Reader({"dep_a": DatabaseError("canceling statement due to statement timeout")})
    reader.counts["dep_b"] = (1, 2)
    queues = RunQueues(
        sessions=sessions, secrets=SECRETS, reader=reader, wall=lambda: now[0], retry_seconds=30
    )

    assert queues.read(live) == {"dep_b": RunQueue(1, 2)}, "the other deployment is read"
    [record] = [r for r in caplog.records if r.getMessage().startswith("run queue not read")]
    assert record.__dict__["deployment_id"] == "dep_a"
    assert "statement timeout" in record.__dict__["error"]

    now[0] += 10
    reader.asked.clear()
    queues.read(live)
    assert reader.asked == ["dep_b"], "not asked again before the retry"

    now[0] += 30
    reader.counts["dep_a"] = (0, 5)
    assert queues.read(live)["dep_a"] == RunQueue(0, 5)


def test_no_reader_reads_nothing(sessions: SessionFactory, live: dict[str, str]) -> None:
    queues = RunQueues(sessions=sessions, secrets=SECRETS, reader=None)
    assert queues.read(live) == {}


# -- the metric series -----------------------------------------------------------------------


def test_the_sampler_stores_the_queue_beside_the_requests(
    sessions: SessionFactory, live: dict[str, str]
) -> None:
    now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
    latest = {"dep_a": RunQueue(pending=6, running=10)}
    sampler = MetricsSampler(
        sessions=sessions,
        scrape=lambda: [""],
        hostname=lambda slug: f"{slug}.localhost",
        clock=lambda: now[0],
        run_queues=lambda: latest,
    )
    sampler.sample()
    for _ in range(6):
        now[0] += timedelta(seconds=10)
        sampler.sample()
    with sessions() as session:
        points = list(session.exec(select(MetricPoint)).all())
    fine = [p for p in points if p.step_seconds == 10]
    assert fine and {p.deployment_id for p in fine} == {"dep_a"}, "a queue is something"
    assert {(p.pending_runs, p.running_runs) for p in fine} == {(6, 10)}
    coarse = {p.deployment_id: p for p in points if p.step_seconds == 60}
    assert (coarse["dep_a"].pending_runs, coarse["dep_a"].running_runs) == (6, 10)
    assert coarse["dep_c"].pending_runs is None and coarse["dep_c"].running_runs is None
