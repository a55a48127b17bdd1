"""The reconciler on fakes: dead replicas replaced, scaling followed, drained ones stopped."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlmodel import select

from app.api.schemas import DeploymentView
from app.autoscaler import Reason, ScalerState
from app.models import Deployment, Replica, ReplicaState, RevisionState
from app.reconciler import crash_loop, is_crash_looping
from tests.unit.fakes import Container
from tests.unit.world import HOST, Platform


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
    platform.wall[0] += seconds
    platform.reconciler.reconcile()


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
