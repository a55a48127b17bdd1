"""Each phase of a revision's run alone (app/rollout/phases/), on a real control plane and fakes.

The pipeline's own tests (test_pipeline.py) run the phases together; here a test arranges the
state a phase starts from, runs that one phase, and looks at what it left.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from app.deployments.revisions import transition
from app.feedback.reports import Redactor, load_ref
from app.kernel.errors import RevisionAbandoned
from app.kernel.models import Replica, ReplicaState, Revision, RevisionState
from app.replicas.retirement import Retirement
from app.replicas.routes import RouteTable
from app.rollout.admission import Admission, AdmissionLimits
from app.rollout.phases.admit import Admit
from app.rollout.phases.build import Build, Image
from app.rollout.phases.context import RevisionContext
from app.rollout.phases.deploy import Deploy, replica_count
from app.rollout.phases.fetch import Fetch
from app.rollout.phases.go_live import GoLive, Switch, decide
from app.rollout.phases.retire import Retire
from builders.errors import BuildCancelled
from manifests.containers import DeploymentType
from manifests.errors import ConfigError
from manifests.run import RunConfig
from tests.unit.world import AUTOSCALE, DOCKERFILE, SECRETS, Platform, route

TOML_PORT_3000 = {"Dockerfile": DOCKERFILE, "slipway.toml": "[deploy]\nport = 3000\n"}


# -- arranging a phase's starting point -----------------------------------------------------------
def context(platform: Platform, revision_id: str) -> RevisionContext:
    with platform.sessions() as session:
        ref = load_ref(session, revision_id)
    return RevisionContext(ref=ref, config=platform.config, redact=Redactor([]))


def move(platform: Platform, revision_id: str, to: RevisionState) -> None:
    with platform.sessions() as session:
        assert transition(session, revision_id, frozenset(RevisionState), to)


def admit(platform: Platform, **limits: int) -> Admit:
    return Admit(
        sessions=platform.sessions,
        admission=Admission(AdmissionLimits(**limits), platform.config.data_dir / "admission.lock"),
        reports=platform.reports,
        notifier=platform.notifier,
        clock=platform.clock,
    )


def build(platform: Platform) -> Build:
    return Build(sessions=platform.sessions, builder=platform.builder)


def deploy(platform: Platform) -> Deploy:
    return Deploy(
        sessions=platform.sessions,
        replicas=platform.replicas,
        secrets=SECRETS,
        clock=platform.clock,
    )


def routes(platform: Platform) -> RouteTable:
    return RouteTable(
        platform.sessions,
        platform.router,
        platform.config.hostname,
        platform.config.data_dir / "router.lock",
    )


def go_live(platform: Platform) -> GoLive:
    return GoLive(
        sessions=platform.sessions,
        routes=routes(platform),
        replicas=platform.replicas,
        reports=platform.reports,
        notifier=platform.notifier,
        clock=platform.clock,
    )


def retirement(platform: Platform) -> Retirement:
    return Retirement(sessions=platform.sessions, replicas=platform.replicas, clock=platform.clock)


def built(platform: Platform, revision_id: str) -> tuple[RevisionContext, Image]:
    """The revision fetched and built by its phases, now `building`."""
    ctx = context(platform, revision_id)
    move(platform, revision_id, RevisionState.building)
    return ctx, build(platform).run(ctx, Fetch(github=platform.client).run(ctx))


def deployed(platform: Platform, revision_id: str) -> RevisionContext:
    """The revision's replicas healthy (by the fetch, build and deploy phases), not routed."""
    ctx, image = built(platform, revision_id)
    assert deploy(platform).begin(ctx, image)
    deploy(platform).run(ctx, image)
    return ctx


def revision_numbered(number: int, state: RevisionState) -> Revision:
    return Revision(deployment_id="d", number=number, commit_sha="c", env_hash="", state=state)


def replica_of(platform: Platform, revision_id: str) -> Replica:
    with platform.sessions() as session:
        return session.exec(select(Replica).where(Replica.revision_id == revision_id)).one()


# -- admit ---------------------------------------------------------------------------------------
def test_admit_keeps_a_revision_queued_without_a_build_slot_and_says_so_once(
    platform: Platform,
) -> None:
    revision_id = platform.push()
    full = admit(platform, max_builds=0)

    assert full.run(context(platform, revision_id)) is RevisionState.queued
    shown = platform.everything_shown()
    assert full.run(context(platform, revision_id)) is RevisionState.queued

    assert platform.everything_shown() == shown  # the same reason is not said twice
    waiting = platform.revision(revision_id)
    assert waiting.state is RevisionState.queued
    assert waiting.wait_reason is not None and "Waiting for a build slot" in waiting.wait_reason
    assert "Waiting for a build slot" in platform.summary(revision_id)


def test_admit_starts_the_build_once_a_slot_frees_and_stops_saying_it_waits(
    platform: Platform,
) -> None:
    revision_id = platform.push()
    admit(platform, max_builds=0).run(context(platform, revision_id))

    assert admit(platform, max_builds=1).run(context(platform, revision_id)) is None

    started = platform.revision(revision_id)
    assert (started.state, started.wait_reason) == (RevisionState.building, None)
    assert started.build_started_at is not None


# -- fetch ---------------------------------------------------------------------------------------
def test_fetch_unpacks_the_commit_and_reads_its_slipway_toml(platform: Platform) -> None:
    revision_id = platform.push(TOML_PORT_3000)
    ctx = context(platform, revision_id)

    source = Fetch(github=platform.client).run(ctx)

    assert source.config.deploy.port == 3000
    assert source.plan.dockerfile.read_text() == DOCKERFILE
    assert "slipway: fetched source in" in ctx.log.path.read_text()


def test_fetch_refuses_a_commit_no_recipe_can_build(platform: Platform) -> None:
    ctx = context(platform, platform.push({"README.md": "# web\n"}))

    with pytest.raises(ConfigError, match="no Dockerfile at 'Dockerfile'"):
        Fetch(github=platform.client).run(ctx)


# -- build ---------------------------------------------------------------------------------------
def test_build_makes_the_revisions_image_and_how_it_runs(platform: Platform) -> None:
    revision_id = platform.push(TOML_PORT_3000)

    _, image = built(platform, revision_id)

    assert platform.builder.images[image.tag] == DOCKERFILE
    assert platform.builder.labels_of[image.tag]["dev.slipway.revision"] == revision_id
    assert (image.run.port, image.method) == (3000, "fake")


def test_build_stops_once_the_revision_is_cancelled(platform: Platform) -> None:
    revision_id = platform.push()
    platform.builder.during_build = lambda: move(platform, revision_id, RevisionState.cancelled)

    with pytest.raises(BuildCancelled):
        built(platform, revision_id)

    assert platform.builder.images == {}


# -- deploy --------------------------------------------------------------------------------------
def test_deploy_makes_the_replicas_healthy_without_routing_them(platform: Platform) -> None:
    revision_id = platform.push()

    deployed(platform, revision_id)

    revision = platform.revision(revision_id)
    assert revision.state is RevisionState.deploying
    assert revision.healthy_at is not None and revision.build_method == "fake"
    assert replica_of(platform, revision_id).state is ReplicaState.ready
    assert platform.router.routes is None
    assert platform.deployment().live_revision_id is None


def test_deploy_gives_up_once_a_teardown_cancelled_the_revision(platform: Platform) -> None:
    revision_id = platform.push()
    ctx, image = built(platform, revision_id)
    assert deploy(platform).begin(ctx, image)
    move(platform, revision_id, RevisionState.cancelled)

    with pytest.raises(RevisionAbandoned):
        deploy(platform).run(ctx, image)

    assert platform.runtime.of_revision(revision_id) == []


def test_a_rollout_starts_as_many_replicas_as_serve_now_within_its_bounds() -> None:
    run = RunConfig(port=8000, health_path="/", scale={"min": 2, "max": 4})
    kind = DeploymentType.production

    assert replica_count(kind, AUTOSCALE, run, serving=0, desired=1) == 2  # [scale] min
    assert replica_count(kind, AUTOSCALE, run, serving=3, desired=1) == 3  # as many as serve
    assert replica_count(kind, AUTOSCALE, run, serving=9, desired=9) == 4  # [scale] max
    development = DeploymentType.development
    assert replica_count(development, AUTOSCALE, run, serving=0, desired=1) == 1


# -- go live -------------------------------------------------------------------------------------
def test_go_live_refuses_a_revision_older_than_the_live_one() -> None:
    live = revision_numbered(2, RevisionState.live)
    older = revision_numbered(1, RevisionState.deploying)
    newer = revision_numbered(3, RevisionState.deploying)
    cancelled = revision_numbered(3, RevisionState.cancelled)

    assert decide(older, live) is Switch.newer_is_live
    assert decide(newer, live) is Switch.go_live
    assert decide(newer, None) is Switch.go_live
    assert decide(cancelled, live) is Switch.abandoned


def test_an_older_revision_reaching_go_live_ends_superseded_and_leaves_the_route(
    platform: Platform,
) -> None:
    first = platform.push()
    ctx = deployed(platform, first)
    second = platform.push()
    assert platform.pipeline.run(second) is RevisionState.live

    assert go_live(platform).run(ctx) is None

    assert platform.revision(first).state is RevisionState.superseded
    assert "superseded by revision #2" in (platform.revision(first).error or "")
    assert platform.router.routes == route(platform, second)
    assert platform.runtime.of_revision(first) == []


def test_go_live_switches_the_route_and_takes_the_old_replicas_out_of_it(
    platform: Platform,
) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    second = platform.push()
    ctx = deployed(platform, second)

    live = go_live(platform).run(ctx)

    assert live is not None and live.previous is not None and live.previous.id == first
    assert platform.router.routes == route(platform, second)
    assert platform.deployment().live_revision_id == second
    assert platform.revision(first).state is RevisionState.superseded
    old = replica_of(platform, first)
    assert old.state is ReplicaState.draining  # out of the route, not stopped: retire's to do
    assert platform.runtime.of_revision(first)[0].running


# -- retire --------------------------------------------------------------------------------------
def test_the_old_replicas_drain_and_stop_only_after_the_new_revision_is_live_and_idle(
    platform: Platform,
) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    second = platform.push()
    ctx = deployed(platform, second)
    rule = retirement(platform)

    assert rule.begin(platform.deployment().id).newly_draining == 0  # #2 is not live yet
    assert replica_of(platform, first).state is ReplicaState.ready

    go_live(platform).run(ctx)
    [container] = platform.runtime.of_revision(first)
    platform.router.load[f"127.0.0.1:{container.host_port}"] = 1  # a request still in flight
    rule.stop_drained(platform.deployment().id)
    assert platform.runtime.of_revision(first)[0].running

    platform.router.load.clear()  # the request is done
    rule.stop_drained(platform.deployment().id)
    assert platform.runtime.of_revision(first) == []
    assert replica_of(platform, first).state is ReplicaState.stopped


def test_retire_stops_the_replaced_revision_and_tells_github(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    second = platform.push()
    live = go_live(platform).run(deployed(platform, second))
    assert live is not None

    Retire(
        sessions=platform.sessions,
        retirement=retirement(platform),
        reports=platform.reports,
        runtime=platform.runtime,
    ).run(live)

    assert platform.runtime.of_revision(first) == []
    assert platform.runtime.of_revision(second)[0].running
    assert platform.deployment_state(platform.revision(first).commit_sha) == "inactive"
