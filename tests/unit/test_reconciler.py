"""The reconciler on fakes: dead replicas replaced, scaling followed, drained ones stopped.

The fake runtime's events reach the reconciler through the real follower, as in the worker: a
tick acts on what they said, and on everything at a resync.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import pytest
from sqlmodel import select

from app.api.schemas import DeploymentView
from app.kernel.errors import DatabaseError
from app.kernel.models import Deployment, Replica, ReplicaState, Revision, RevisionState
from app.kernel.ports import DatabaseLogin
from app.replicas.autoscaler import Reason, ScalerState
from app.replicas.engine_events import EngineEventFollower
from app.replicas.reconciler import RESYNC_SECONDS, crash_loop, is_crash_looping
from manifests.containers import DEPLOYMENT_LABEL
from manifests.run import RunConfig
from tests.support.platform import wait_for
from tests.unit.fakes import Container
from tests.unit.idle_cost import add_idle_deployments, tick_costs
from tests.unit.world import DOCKERFILE, HOST, Platform


@dataclass
class Following:
    follower: EngineEventFollower
    resyncs: list[int]


@pytest.fixture(autouse=True)
def events(platform: Platform) -> Iterator[Following]:
    """The runtime's events followed into whichever reconciler the platform has now (tests
    rebuild it with other settings)."""
    resyncs: list[int] = []
    lock = threading.Lock()

    def resync() -> None:
        with lock:
            resyncs.append(1)
        platform.reconciler.resync()

    follower = EngineEventFollower(
        platform.runtime,
        on_event=lambda deployment_id: platform.reconciler.changed(deployment_id),
        on_resync=resync,
        first_retry_seconds=0.01,
    )
    follower.start()
    wait_for("the runtime's events followed", lambda: resyncs, timeout=5, every=0.001)
    try:
        yield Following(follower, resyncs)
    finally:
        follower.stop()


def live(platform: Platform) -> str:
    revision_id = platform.push()
    assert platform.pipeline.run(revision_id) is RevisionState.live
    return revision_id


def routed(platform: Platform) -> tuple[str, ...]:
    return platform.router.upstreams(HOST) or ()


def address(container: Container) -> str:
    return f"127.0.0.1:{container.host_port}"


def replicas(platform: Platform, revision_id: str, state: ReplicaState) -> list[Replica]:
    with platform.sessions() as session:
        return list(
            session.exec(
                select(Replica).where(Replica.revision_id == revision_id, Replica.state == state)
            ).all()
        )


def load(platform: Platform, revision_id: str, per_replica: int) -> None:
    """What Caddy would report: `per_replica` requests in flight at each running replica."""
    platform.router.load = {address(c): per_replica for c in platform.runtime.running(revision_id)}


def tick(platform: Platform, seconds: float = 2.0) -> None:
    platform.runtime.events_delivered()
    platform.wall[0] += seconds
    platform.reconciler.reconcile()


def scaler_state(platform: Platform, deployment_id: str) -> str | None:
    with platform.sessions() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        return deployment.scaler_state


# -- events and resyncs ---------------------------------------------------------------------
def test_a_replica_that_dies_between_resyncs_is_replaced_at_the_next_tick(
    platform: Platform,
) -> None:
    revision_id = live(platform)
    tick(platform)  # the worker's first pass: a full resync
    [first] = platform.runtime.running(revision_id)

    platform.runtime.kill(first.id)  # its `die` event marks the deployment
    tick(platform)

    [second] = platform.runtime.running(revision_id)
    assert second.id != first.id
    assert routed(platform) == (address(second),)
    [dead] = replicas(platform, revision_id, ReplicaState.dead)
    assert dead.exit_reason == "killed (exit code 137)"


def test_a_death_whose_event_was_lost_is_found_by_the_resync(platform: Platform) -> None:
    revision_id = live(platform)
    tick(platform)
    [first] = platform.runtime.running(revision_id)
    platform.runtime.events_lost = True

    platform.runtime.kill(first.id)
    tick(platform)
    assert platform.runtime.running(revision_id) == []  # nothing told the reconciler yet

    waited = 2.0
    while not platform.runtime.running(revision_id):
        assert waited <= RESYNC_SECONDS, "the resync did not replace the dead replica"
        tick(platform)
        waited += 2.0
    [second] = platform.runtime.running(revision_id)
    assert routed(platform) == (address(second),)
    assert replicas(platform, revision_id, ReplicaState.dead)[0].exit_reason == (
        "killed (exit code 137)"
    )


def test_a_dropped_event_stream_is_reopened_and_followed_by_a_resync(
    platform: Platform, events: Following
) -> None:
    revision_id = live(platform)
    tick(platform)
    [first] = platform.runtime.running(revision_id)
    platform.runtime.events_lost = True
    platform.runtime.kill(first.id)  # while the stream is down
    platform.runtime.events_lost = False

    platform.runtime.cut_events()
    wait_for("the stream reopened", lambda: len(events.resyncs) == 2, timeout=5, every=0.001)
    tick(platform)  # right away, not a resync period later

    [second] = platform.runtime.running(revision_id)
    assert routed(platform) == (address(second),)


def test_idle_deployments_cost_no_write_and_no_engine_call_and_the_same_reads_per_tick(
    platform: Platform,
) -> None:
    add_idle_deployments(platform, 1)
    for _ in range(3):  # going live; the first resync
        tick(platform)
    one = tick_costs(platform, 10, lambda: tick(platform))
    add_idle_deployments(platform, 9)
    for _ in range(3):
        tick(platform)
    ten = tick_costs(platform, 10, lambda: tick(platform))

    for cost in one + ten:
        assert (cost.writes, cost.commits, cost.engine_calls) == (0, 0, 0), cost
        assert cost.router_calls <= 1  # one sample of Caddy's upstreams for all
    assert {c.statements for c in one} == {c.statements for c in ten}

    ticks = int(RESYNC_SECONDS / 2)  # a resync looks at each once, and writes nothing
    resync = tick_costs(platform, ticks, lambda: tick(platform))
    assert sum(c.writes + c.commits for c in resync) == 0
    assert sum(c.engine_calls for c in resync) == 1  # one listing of the replicas


def test_a_resync_reads_as_much_with_ten_idle_deployments_as_with_one(
    platform: Platform,
) -> None:
    """The periodic resync lists the runtime once and compares it with every recorded replica
    in the same two queries: it does not look at idle deployments one by one."""
    ticks = int(RESYNC_SECONDS / 2)  # one resync in each window
    add_idle_deployments(platform, 1)
    for _ in range(ticks):  # the start's full pass, then a steady state
        tick(platform)
    one = tick_costs(platform, ticks, lambda: tick(platform))
    add_idle_deployments(platform, 9)
    for _ in range(ticks):
        tick(platform)
    ten = tick_costs(platform, ticks, lambda: tick(platform))

    for window in (one, ten):
        assert sum(c.engine_calls for c in window) == 1  # the resync's one listing
        assert sum(c.writes + c.commits for c in window) == 0
    assert max(c.statements for c in one) == max(c.statements for c in ten)
    assert sum(c.statements for c in one) == sum(c.statements for c in ten)


def test_a_deployment_with_load_is_still_sampled_every_tick(
    platform: Platform,
) -> None:
    [busy, *idle] = add_idle_deployments(platform, 3)
    for _ in range(3):
        tick(platform)
    [revision_id] = [
        c.revision_id for c in platform.runtime.containers.values()
        if c.spec.labels.get(DEPLOYMENT_LABEL) == busy
    ]  # fmt: skip
    quiet = {d: scaler_state(platform, d) for d in idle}
    load(platform, revision_id, per_replica=4)  # below the target of 10: no scale-up

    times = []
    for _ in range(5):
        tick(platform)
        times.append(platform.wall[0])

    state = ScalerState.from_json(scaler_state(platform, busy))
    assert [(s.at, s.concurrency) for s in state.samples if s.at in times] == [
        (t, 4.0) for t in times
    ]
    assert {d: scaler_state(platform, d) for d in idle} == quiet  # nothing written


def test_a_killed_replica_leaves_the_route_and_is_replaced(platform: Platform) -> None:
    revision_id = live(platform)
    [first] = platform.runtime.running(revision_id)
    platform.runtime.kill(first.id)

    tick(platform)

    [second] = platform.runtime.running(revision_id)
    assert second.id != first.id
    assert routed(platform) == (address(second),)
    [dead] = replicas(platform, revision_id, ReplicaState.dead)
    assert dead.exit_reason == "killed (exit code 137)"
    assert first.id not in platform.runtime.containers  # removed, not left exited
    state = ScalerState.from_json(platform.deployment().scaler_state)
    assert Reason.replica_died in [d.reason for d in state.decisions]


def test_a_dead_replica_is_removed_only_once_the_route_no_longer_has_it(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the router stops dialling it, a dead replica's address must refuse at once (its
    holder keeps it), so that a request meeting it is retried elsewhere."""
    revision_id = live(platform)
    [first] = platform.runtime.running(revision_id)
    platform.runtime.kill(first.id)
    routed_when_removed: list[tuple[str, ...]] = []
    remove = platform.runtime.remove

    def watched(name: str) -> None:
        if name == first.spec.name:
            routed_when_removed.append(routed(platform))
        remove(name)

    monkeypatch.setattr(platform.runtime, "remove", watched)

    tick(platform)

    assert len(routed_when_removed) == 1
    assert address(first) not in routed_when_removed[0]
    assert first.id not in platform.runtime.containers


def test_an_out_of_memory_replica_says_so(platform: Platform) -> None:
    revision_id = live(platform)
    [first] = platform.runtime.running(revision_id)
    platform.runtime.kill(first.id, oom=True)

    tick(platform)

    [dead] = replicas(platform, revision_id, ReplicaState.dead)
    assert dead.exit_reason is not None and "out of memory" in dead.exit_reason


def test_a_replica_that_keeps_dying_backs_off_and_shows_crash_looping(
    platform: Platform,
) -> None:
    revision_id = live(platform)
    for _ in range(3):
        [running] = platform.runtime.running(revision_id)
        platform.runtime.kill(running.id, exit_code=3)
        tick(platform)
    # Three deaths: the next start waits for its backoff instead of following at once.
    assert len(replicas(platform, revision_id, ReplicaState.dead)) == 3

    with platform.sessions() as session:
        deployment = session.exec(select(Deployment)).one()
        loop = crash_loop(session, deployment, platform.clock.now)
        assert is_crash_looping(loop)
        assert loop is not None and loop.last_reason == "exited with code 3"
        view = DeploymentView.of(
            deployment,
            "octo/web",
            "http://web.localhost:8000/",
            crash_looping=is_crash_looping(loop),
            last_exit_reason=loop.last_reason,
        )
    assert (view.status, view.last_exit_reason) == ("crash-looping", "exited with code 3")


def test_load_on_production_scales_up_and_spreads_over_every_replica(
    platform: Platform,
) -> None:
    revision_id = live(platform)
    load(platform, revision_id, per_replica=35)

    tick(platform)

    running = platform.runtime.running(revision_id)
    assert len(running) == 4
    assert sorted(routed(platform)) == sorted(address(c) for c in running)
    assert platform.deployment().desired_replicas == 4
    assert len(replicas(platform, revision_id, ReplicaState.ready)) == 4


def test_it_stays_up_for_the_scale_down_delay_then_returns_to_one(platform: Platform) -> None:
    platform.autoscale = replace(platform.autoscale, scale_down_delay_seconds=30)
    platform.__post_init__()
    revision_id = live(platform)
    load(platform, revision_id, per_replica=35)
    tick(platform)
    assert len(platform.runtime.running(revision_id)) == 4

    platform.router.load = {}
    for _ in range(10):  # 20 s: inside the delay
        tick(platform)
        assert len(replicas(platform, revision_id, ReplicaState.ready)) == 4
    for _ in range(40):
        tick(platform)
        if len(replicas(platform, revision_id, ReplicaState.ready)) == 1:
            break
    assert len(replicas(platform, revision_id, ReplicaState.ready)) == 1
    tick(platform)  # drained (nothing in flight): stopped
    assert len(platform.runtime.running(revision_id)) == 1
    assert len(routed(platform)) == 1


def test_a_development_deployment_stays_at_one_replica_under_any_load(
    platform: Platform,
) -> None:
    head = platform.commit()
    [revision_id] = platform.pull_request_event("opened", 7, head).start_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.live
    load(platform, revision_id, per_replica=500)

    for _ in range(5):
        tick(platform)

    assert len(platform.runtime.running(revision_id)) == 1


def test_a_rollout_starts_as_many_replicas_as_serve_and_drains_the_old_ones(
    platform: Platform,
) -> None:
    first = live(platform)
    load(platform, first, per_replica=25)
    tick(platform)
    assert len(platform.runtime.running(first)) == 3
    old = {address(c) for c in platform.runtime.running(first)}
    platform.router.load = {}  # the old replicas finish what they had

    second = platform.push()
    assert platform.pipeline.run(second) is RevisionState.live

    new = platform.runtime.running(second)
    assert len(new) == 3
    assert sorted(routed(platform)) == sorted(address(c) for c in new)
    assert not old & set(routed(platform))
    assert platform.runtime.running(first) == []


def test_a_draining_replica_is_stopped_only_once_its_requests_are_done(
    platform: Platform,
) -> None:
    platform.autoscale = replace(platform.autoscale, scale_down_delay_seconds=0)
    platform.reconfigure(drain_timeout_seconds=3600)
    revision_id = live(platform)
    load(platform, revision_id, per_replica=15)
    tick(platform)
    assert len(platform.runtime.running(revision_id)) == 2
    newest = platform.runtime.running(revision_id)[-1]
    platform.router.load = {address(newest): 2}  # the load fell; two requests still in flight

    for _ in range(40):  # the stable window forgets the load, and one replica is enough
        tick(platform)
        if replicas(platform, revision_id, ReplicaState.draining):
            break
    [draining] = replicas(platform, revision_id, ReplicaState.draining)
    assert draining.endpoint == address(newest)
    assert address(newest) not in routed(platform)
    tick(platform)
    assert newest.id in platform.runtime.containers  # still finishing its requests

    platform.router.load = {}
    tick(platform)
    assert newest.id not in platform.runtime.containers
    assert len(platform.runtime.running(revision_id)) == 1


def test_replicas_of_a_removed_deployment_are_stopped(platform: Platform) -> None:
    head = platform.commit()
    [revision_id] = platform.pull_request_event("opened", 7, head).start_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.live
    with platform.sessions() as session:
        deployment = session.exec(
            select(Deployment).where(Deployment.pull_request_number == 7)
        ).one()
        deployment.removed_at = platform.clock.now
        deployment.live_revision_id = None
        session.commit()

    tick(platform)

    assert platform.runtime.running(revision_id) == []


def test_a_revision_whose_replicas_do_not_all_become_healthy_never_gets_traffic(
    platform: Platform,
) -> None:
    platform.reconfigure(health_timeout_seconds=1e-9)
    first = live(platform)
    load(platform, first, per_replica=25)
    tick(platform)
    serving = sorted(address(c) for c in platform.runtime.running(first))
    assert len(serving) == 3
    second = platform.push()

    def one_of_three_never_answers(host_port: int, path: str) -> bool:
        ours = [c.host_port for c in platform.runtime.running(second)]
        return host_port != max(ours, default=0)

    platform.health.answer = one_of_three_never_answers

    assert platform.pipeline.run(second) is RevisionState.failed

    assert sorted(routed(platform)) == serving
    assert platform.runtime.running(second) == []
    assert len(platform.runtime.running(first)) == 3


def test_a_torn_down_preview_leaves_no_replica_for_the_reconciler_to_bury(
    platform: Platform,
) -> None:
    head = platform.commit()
    [revision_id] = platform.pull_request_event("opened", 7, head).start_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.live
    platform.pull_request_event("closed", 7, head)  # the teardown removes everything

    tick(platform)

    assert replicas(platform, revision_id, ReplicaState.dead) == []
    assert len(replicas(platform, revision_id, ReplicaState.stopped)) == 1


def test_a_first_push_with_a_minimum_goes_live_on_that_many_replicas(platform: Platform) -> None:
    """`[scale] min` holds from the first request: the revision goes live on that many
    replicas, not on one the reconciler tops up whenever it next looks."""
    revision_id = platform.push(
        {"Dockerfile": DOCKERFILE, "slipway.toml": "[scale]\nmin = 2\n", "www/index.html": "hi"}
    )
    assert platform.pipeline.run(revision_id) is RevisionState.live

    assert len(platform.runtime.running(revision_id)) == 2
    assert len(replicas(platform, revision_id, ReplicaState.ready)) == 2
    assert len(routed(platform)) == 2


class QueueReader:
    """The deployments' databases as the run queue reader sees them: counts, or an error."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int] | Exception] = {}
        self.asked: list[str] = []

    def run_counts(self, deployment_id: str, login: DatabaseLogin) -> tuple[int, int]:
        self.asked.append(deployment_id)
        answer = self.counts.get(deployment_id, (0, 0))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def keep_only(self, deployment_ids: Iterable[str]) -> None:
        pass


def langgraph_live(platform: Platform) -> tuple[str, str]:
    """A live production deployment whose revision runs a LangGraph Server on pg."""
    revision_id = live(platform)
    with platform.sessions() as session:
        revision = session.get(Revision, revision_id)
        assert revision is not None and revision.run_config
        run = RunConfig.from_json(revision.run_config)
        revision.run_config = replace(run, langgraph_runtime="pg").to_json()
        session.add(revision)
        session.commit()
        return revision.deployment_id, revision_id


def test_background_runs_alone_scale_a_langgraph_deployment_at_the_next_tick(
    platform: Platform,
) -> None:
    reader = QueueReader()
    platform.run_queues = reader
    platform.__post_init__()
    deployment_id, revision_id = langgraph_live(platform)
    for _ in range(5):  # quiet: no longer looked at tick by tick
        tick(platform)
    assert reader.asked == [deployment_id] * 5, "read every tick, with no request in flight"
    assert len(platform.runtime.running(revision_id)) == 1

    reader.counts[deployment_id] = (20, 10)  # 30 runs: ceil(30 / 7.5) = 4
    tick(platform)

    assert len(platform.runtime.running(revision_id)) == 4
    state = ScalerState.from_json(scaler_state(platform, deployment_id))
    assert state.latest is not None and state.latest.queue_replicas == 4
    assert state.latest.stable_concurrency == 0


def test_a_failing_queue_read_leaves_the_deployment_to_its_requests(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    reader = QueueReader()
    platform.run_queues = reader
    platform.__post_init__()
    deployment_id, revision_id = langgraph_live(platform)
    reader.counts[deployment_id] = DatabaseError("too many connections for role")
    load(platform, revision_id, per_replica=35)

    tick(platform)

    assert len(platform.runtime.running(revision_id)) == 4, "scaled on requests alone"
    assert any(
        r.getMessage().startswith("run queue not read")
        and r.__dict__.get("deployment_id") == deployment_id
        for r in caplog.records
    )


def test_a_dockerfile_deployment_has_no_queue_read(platform: Platform) -> None:
    reader = QueueReader()
    platform.run_queues = reader
    platform.__post_init__()
    revision_id = live(platform)
    load(platform, revision_id, per_replica=5)
    for _ in range(3):
        tick(platform)
    assert reader.asked == []
