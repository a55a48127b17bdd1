"""One revision from queued to live (or failed), with fakes at every port and a real control plane.

Revisions are made the way production makes them: a push delivery applied by
app.deliveries.handlers. The fakes keep what users would see: GitHub's check runs, running
containers, the router's routes.
"""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from app.feedback.reports import REDACTED
from app.kernel.models import Database, Replica, Revision, RevisionState
from app.rollout.pipeline import KEEP_IMAGES
from manifests.containers import Confinement, LogRotation
from tests.support.fake_github import CheckRun
from tests.unit.world import DOCKERFILE, URL, Platform, WorkerKilled, route


# -- success ----------------------------------------------------------------------------------
def test_a_revision_goes_live_behind_its_hostname(platform: Platform) -> None:
    first = platform.push()

    assert platform.pipeline.run(first) is RevisionState.live

    revision = platform.revision(first)
    assert revision.state is RevisionState.live
    assert revision.image is not None
    assert revision.image.startswith(f"slipway/{revision.deployment_id}:{first}-")
    assert platform.builder.images[revision.image] == DOCKERFILE
    assert platform.deployment().live_revision_id == first
    assert platform.router.routes == route(platform, first)
    [container] = platform.runtime.of_revision(first)
    assert container.running
    assert container.spec.image == revision.image
    run = platform.check_run(first)
    assert (run.status, run.conclusion, run.output["title"]) == (
        "completed",
        "success",
        f"Live at {URL}",
    )
    assert platform.deployment_state(revision.commit_sha) == "success"
    log = platform.config.log_path(revision).read_text()
    assert f"slipway: live at {URL}" in log


def test_the_replica_gets_its_port_database_and_user_env(platform: Platform) -> None:
    platform.push()
    platform.set_env({"GREETING": "hello", "PORT": "1"})
    second = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": "[deploy]\nport = 3000\n"})

    platform.pipeline.run(second)

    [container] = platform.runtime.of_revision(second)
    env = container.spec.env
    assert env["GREETING"] == "hello"
    assert env["PORT"] == "3000"  # Slipway's PORT wins over the user's
    assert container.spec.port == 3000
    assert env["SLIPWAY_REVISION"] == second
    assert env["SLIPWAY_DEPLOYMENT"] == "web"
    [(name, (role, password))] = platform.databases.databases.items()
    assert env["DATABASE_URI"] == platform.databases.container_uri(name, role, password)


def test_the_replica_is_confined_and_on_its_deployments_own_network(platform: Platform) -> None:
    first = platform.push()

    assert platform.pipeline.run(first) is RevisionState.live

    [container] = platform.runtime.of_revision(first)
    confinement = container.spec.confinement
    assert confinement.cap_drop == ("ALL",) and confinement.cap_add == ()
    assert confinement.security_opts == ("no-new-privileges",)
    assert confinement.pids_limit == 1024
    assert (confinement.logs.max_size, confinement.logs.max_files) == ("10m", 3)
    deployment_id = platform.deployment().id
    assert container.spec.network == f"slipway-net-{deployment_id}"
    assert platform.runtime.networks == {
        container.spec.network: {"dev.slipway.deployment": deployment_id}
    }


def test_the_next_revision_joins_the_same_network(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    network = platform.runtime.network_of(first)
    second = platform.push()

    assert platform.pipeline.run(second) is RevisionState.live

    assert platform.runtime.network_of(second) == network
    assert list(platform.runtime.networks) == [network]


def test_the_configured_confinement_reaches_the_replica(platform: Platform) -> None:
    confinement = Confinement(pids_limit=64, logs=LogRotation(max_size="1m", max_files=2))
    platform.reconfigure(confinement=confinement)
    first = platform.push()

    platform.pipeline.run(first)

    assert platform.runtime.of_revision(first)[0].spec.confinement == confinement


def test_the_health_path_from_slipway_toml_is_the_one_checked(platform: Platform) -> None:
    platform.reconfigure(health_timeout_seconds=1e-9)  # a wrong path fails at once
    platform.health.answer = lambda host_port, path: path == "/up"  # / answers 500
    first = platform.push(
        {"Dockerfile": DOCKERFILE, "slipway.toml": '[deploy]\nhealth_path = "/up"\n'}
    )

    assert platform.pipeline.run(first) is RevisionState.live


def test_a_second_revision_supersedes_the_first_and_keeps_the_database(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    first_uri = platform.runtime.of_revision(first)[0].spec.env["DATABASE_URI"]

    second = platform.push()
    assert platform.pipeline.run(second) is RevisionState.live

    assert platform.revision(first).state is RevisionState.superseded
    assert platform.revision(second).state is RevisionState.live
    assert platform.runtime.of_revision(first) == []
    assert platform.router.routes == route(platform, second)
    assert platform.runtime.of_revision(second)[0].spec.env["DATABASE_URI"] == first_uri
    assert platform.databases.times_ensured == 1
    assert len(platform.databases.databases) == 1
    assert platform.deployment_state(platform.revision(first).commit_sha) == "inactive"
    with platform.sessions() as session:
        stopped = session.exec(select(Replica).where(Replica.revision_id == first)).one()
        assert stopped.stopped_at is not None


def late_revision(platform: Platform) -> tuple[str, list[str]]:
    """Revision #1 finishes its health check only after #2, pushed meanwhile, went live.

    Returns #1 and a list that holds #2 once #1 has run.
    """
    first = platform.push()
    newer: list[str] = []

    def while_first_is_starting(host_port: int, path: str) -> bool:
        if not newer:
            newer.append(platform.push())
            platform.health.answer = None
            assert platform.pipeline.run(newer[0]) is RevisionState.live
        return True

    platform.health.answer = while_first_is_starting
    return first, newer


def test_an_older_revision_finishing_late_never_takes_the_route(platform: Platform) -> None:
    first, newer = late_revision(platform)

    platform.pipeline.run(first)

    [second] = newer
    assert platform.revision(first).state is RevisionState.superseded
    assert platform.router.routes == route(platform, second)
    assert platform.runtime.of_revision(first) == []
    assert platform.deployment().live_revision_id == second


def test_an_older_revision_finishing_late_ends_superseded_without_an_error(
    platform: Platform,
) -> None:
    first, _ = late_revision(platform)

    assert platform.pipeline.run(first) is RevisionState.superseded

    log = platform.config.log_path(platform.revision(first)).read_text()
    assert "failed" not in log


def test_an_engine_error_after_the_route_switch_never_stops_the_live_replica(
    platform: Platform,
) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    platform.runtime.stuck.add(first)  # the engine fails to remove #1's replica
    second = platform.push()

    platform.pipeline.run(second)

    assert platform.revision(second).state is RevisionState.live
    assert len(platform.runtime.of_revision(second)) == 1
    assert platform.router.routes == route(platform, second)


# -- failure ----------------------------------------------------------------------------------
def test_a_build_failure_keeps_the_live_revision_serving(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    platform.builder.failure = "the Docker build failed (exit code 1)"
    platform.builder.output = ["#5 [2/2] RUN make", "#5 ERROR: process did not complete"]

    second = platform.push()
    assert platform.pipeline.run(second) is RevisionState.failed

    failed = platform.revision(second)
    assert failed.state is RevisionState.failed
    assert failed.error == "the Docker build failed (exit code 1)"
    assert platform.revision(first).state is RevisionState.live
    assert platform.deployment().live_revision_id == first
    assert platform.router.routes == route(platform, first)
    assert platform.runtime.of_revision(second) == []
    run = platform.check_run(second)
    assert (run.status, run.conclusion) == ("completed", "failure")
    summary = platform.summary(second)
    assert "Revision #2 failed: the Docker build failed (exit code 1)" in summary
    assert f"keeps serving {URL}" in summary
    assert "#5 ERROR: process did not complete" in summary
    assert platform.deployment_state(failed.commit_sha) == "failure"


LANGGRAPH_AGENT = "from langgraph.graph import StateGraph\n\ngraph = StateGraph(dict).compile()\n"
FAILS_BEFORE_ANY_BUILD = {
    # case: (the commit's files, words of the reason, the annotation: path, line)
    "no-dockerfile": ({"index.html": "never served\n"}, "no Dockerfile at 'Dockerfile'", None),
    "bad-config": (
        {
            "Dockerfile": DOCKERFILE,
            "slipway.toml": '[deploy]\nport = "eighty"\nhelth_path = "/"\n',
        },
        "slipway.toml is invalid: deploy.port: Input should be a valid integer",
        None,
    ),
    "langgraph-invalid-json": (
        {
            "langgraph.json": '{\n  "graphs": {"agent": "./agent.py:graph",}\n}\n',
            "agent.py": LANGGRAPH_AGENT,
        },
        "not valid JSON",
        ("langgraph.json", 2),
    ),
    "langgraph-unknown-graph-file": (
        {
            "langgraph.json": (
                '{\n  "dependencies": ["."],\n  "graphs": {"agent": "./agnet.py:graph"}\n}\n'
            ),
            "agent.py": LANGGRAPH_AGENT,
        },
        "does not exist",
        ("langgraph.json", 3),
    ),
    "langgraph-missing-attribute": (
        {
            "langgraph.json": (
                '{\n  "dependencies": ["."],\n  "graphs": {"agent": "./agent.py:app"}\n}\n'
            ),
            "agent.py": LANGGRAPH_AGENT,
        },
        "does not define at module level",
        ("agent.py", 1),
    ),
    "langgraph-bad-python-version": (
        {
            "langgraph.json": '{\n  "python_version": "3.8",\n  "dependencies": ["."],\n'
            '  "graphs": {"agent": "./agent.py:graph"}\n}\n',
            "agent.py": LANGGRAPH_AGENT,
        },
        "3.8",
        ("langgraph.json", 2),
    ),
}


@pytest.mark.parametrize("case", sorted(FAILS_BEFORE_ANY_BUILD))
def test_a_commit_that_cannot_be_built_fails_before_any_build_saying_why_on_github(
    platform: Platform, case: str
) -> None:
    files, reason, annotated = FAILS_BEFORE_ANY_BUILD[case]
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    images = dict(platform.builder.images)

    second = platform.push(files)
    assert platform.pipeline.run(second) is RevisionState.failed

    error = platform.revision(second).error or ""
    # The revision's error names the first problem; one on another file is on the check run.
    assert reason in error or (annotated is not None and annotated[0] != "langgraph.json")
    assert platform.builder.images == images  # no build started
    assert platform.router.routes == route(platform, first)  # the live revision keeps serving
    run = platform.check_run(second)
    title, summary = run.output["title"] or "", run.output["summary"] or ""
    assert run.conclusion == "failure"
    assert reason in title + summary
    assert f"keeps serving {URL}" in summary
    if annotated is not None:
        path, line = annotated
        [annotation] = [a for a in run.annotations if a["path"] == path and a["start_line"] == line]
        assert reason in annotation["message"]
        assert annotation["annotation_level"] == "failure"
    assert platform.deployment_state(platform.revision(second).commit_sha) == "failure"


def test_a_first_revision_that_fails_serves_nothing(platform: Platform) -> None:
    platform.builder.failure = "the Docker build failed (exit code 2)"
    first = platform.push()

    platform.pipeline.run(first)

    assert platform.router.routes is None
    assert "Nothing is served yet" in platform.summary(first)
    assert platform.databases.databases == {}


def test_a_commit_without_a_dockerfile_fails_with_the_fix(platform: Platform) -> None:
    first = platform.push({"README.md": "# web\n"})

    assert platform.pipeline.run(first) is RevisionState.failed

    error = platform.revision(first).error
    assert error is not None and "no Dockerfile at 'Dockerfile'" in error
    assert "[build] dockerfile" in error
    assert platform.builder.images == {}


def test_a_commit_github_will_not_serve_as_a_tarball_fails_the_revision(platform: Platform) -> None:
    first = platform.push_commit("f" * 40)  # GitHub has no such commit (any more)

    assert platform.pipeline.run(first) is RevisionState.failed

    error = platform.revision(first).error
    assert error is not None and "GitHub refused to download the tarball" in error
    platform.expect_refusals("f" * 40)


def test_a_container_that_exits_fails_with_its_exit_code_and_output(platform: Platform) -> None:
    platform.runtime.exit_code = 3
    platform.runtime.output = lambda spec: "Traceback (most recent call last):\nKeyError: 'API'\n"
    first = platform.push()

    assert platform.pipeline.run(first) is RevisionState.failed

    error = platform.revision(first).error
    assert error is not None and "exited with code 3" in error
    assert platform.runtime.of_revision(first) == []
    assert "KeyError: 'API'" in platform.summary(first)
    assert platform.router.routes is None


def test_a_replica_that_never_answers_fails_the_health_check(platform: Platform) -> None:
    # The deadline passes at the first unanswered probe: no waiting in this test.
    platform.reconfigure(health_timeout_seconds=1e-9)
    platform.health.healthy = False
    first = platform.push()

    assert platform.pipeline.run(first) is RevisionState.failed

    error = platform.revision(first).error
    assert error is not None and "never answered its health check" in error
    assert platform.runtime.of_revision(first) == []


def test_a_router_refusing_the_route_fails_the_revision(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    platform.router.failure = "the router (Caddy) refused the configuration (HTTP 400): bad"
    second = platform.push()

    assert platform.pipeline.run(second) is RevisionState.failed

    assert platform.revision(first).state is RevisionState.live
    assert platform.runtime.of_revision(second) == []
    assert platform.deployment().live_revision_id == first


def test_secrets_never_reach_github(platform: Platform) -> None:
    secret = "sk-live-0123456789abcdef"
    platform.push()
    platform.set_env({"API_KEY": secret})
    platform.runtime.exit_code = 1
    platform.runtime.output = lambda spec: (
        f"API_KEY={spec.env['API_KEY']}\nconnecting to {spec.env['DATABASE_URI']}\nfatal\n"
    )
    revision_id = platform.push()

    platform.pipeline.run(revision_id)

    [(_, (_, password))] = platform.databases.databases.items()
    shown = platform.everything_shown()
    assert secret not in shown
    assert password not in shown
    assert REDACTED in platform.summary(revision_id)


def test_a_failed_build_log_is_redacted_on_github(platform: Platform) -> None:
    secret = "sk-live-0123456789abcdef"
    platform.push()
    platform.set_env({"API_KEY": secret})
    platform.builder.failure = f"the Docker build failed: bad key {secret}"
    platform.builder.output = [f"#4 0.3 using key {secret}"]
    revision_id = platform.push()

    platform.pipeline.run(revision_id)

    assert secret not in platform.everything_shown()
    error = platform.revision(revision_id).error
    assert error is not None and secret not in error


# -- GitHub down, cancellation, retries ------------------------------------------------------------
def test_a_revision_goes_live_while_github_refuses_its_reports(platform: Platform) -> None:
    platform.refuse_reports()
    first = platform.push()

    assert platform.pipeline.run(first) is RevisionState.live

    assert platform.router.routes == route(platform, first)
    assert platform.check_runs() == []
    platform.expect_refusals("403 needs checks: write", "403 needs deployments: write")


def test_a_revision_fails_cleanly_while_github_is_down(platform: Platform) -> None:
    first = platform.push()
    platform.github.unreachable = True

    assert platform.pipeline.run(first) is RevisionState.failed

    error = platform.revision(first).error
    assert error is not None and "GitHub did not answer" in error
    assert platform.runtime.containers == {}


def test_a_revision_cancelled_before_it_runs_does_nothing(platform: Platform) -> None:
    first = platform.push()
    second = platform.push()  # cancels #1 while it is still queued

    assert platform.pipeline.run(first) is RevisionState.cancelled

    assert platform.revision(first).state is RevisionState.cancelled
    assert platform.builder.images == {}
    assert platform.runtime.containers == {}
    assert platform.router.routes is None
    run = platform.check_run(first)
    assert (run.status, run.conclusion) == ("completed", "cancelled")
    assert "superseded by revision #2" in str(run.output["title"])
    assert platform.revision(second).state is RevisionState.queued


def test_a_push_during_the_build_cancels_it(platform: Platform) -> None:
    first = platform.push()
    newer: list[str] = []
    platform.builder.during_build = lambda: newer.append(platform.push())

    assert platform.pipeline.run(first) is RevisionState.cancelled

    assert platform.revision(first).state is RevisionState.cancelled
    assert platform.runtime.containers == {}
    platform.builder.during_build = None
    assert platform.pipeline.run(newer[0]) is RevisionState.live


def test_running_a_live_revision_again_changes_nothing(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    containers = dict(platform.runtime.containers)
    shown = platform.everything_shown()
    routes = platform.router.routes

    assert platform.pipeline.run(first) is RevisionState.live

    assert platform.runtime.containers == containers
    assert platform.everything_shown() == shown
    assert platform.router.routes == routes
    assert platform.databases.times_ensured == 1


def test_running_a_failed_revision_again_changes_nothing(platform: Platform) -> None:
    platform.builder.failure = "the Docker build failed (exit code 1)"
    first = platform.push()
    platform.pipeline.run(first)
    shown = platform.everything_shown()
    platform.builder.failure = None

    assert platform.pipeline.run(first) is RevisionState.failed

    assert platform.everything_shown() == shown
    assert platform.runtime.containers == {}


def test_a_run_retried_after_the_worker_died_mid_deploy_goes_live(platform: Platform) -> None:
    first = platform.push()
    platform.health.answer = _die
    with pytest.raises(WorkerKilled):
        platform.pipeline.run(first)
    assert platform.revision(first).state is RevisionState.deploying
    platform.health.answer = None

    assert platform.pipeline.run(first) is RevisionState.live

    assert platform.router.routes == route(platform, first)
    assert len(platform.runtime.of_revision(first)) == 1


def test_a_retried_run_leaves_no_dead_replica_in_the_routes(platform: Platform) -> None:
    first = platform.push()
    platform.health.answer = _die
    with pytest.raises(WorkerKilled):
        platform.pipeline.run(first)
    platform.health.answer = None
    platform.pipeline.run(first)

    platform.pipeline.sync_routes()  # what the worker does every minute and at start

    assert platform.router.routes == route(platform, first)


def test_a_run_retried_after_the_worker_died_at_the_route_switch_stops_the_old_replica(
    platform: Platform,
) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    second = platform.push()
    platform.github.on_check_run_update = _die_when_live
    with pytest.raises(WorkerKilled):
        platform.pipeline.run(second)
    platform.github.on_check_run_update = None
    assert platform.revision(first).state is RevisionState.superseded

    platform.pipeline.run(second)

    assert platform.runtime.of_revision(first) == []


def _die(host_port: int, path: str) -> bool:
    raise WorkerKilled


def _die_when_live(check_run: CheckRun) -> None:
    if check_run.conclusion == "success":
        raise WorkerKilled


def test_sync_routes_restores_every_live_deployment(platform: Platform) -> None:
    first = platform.push()
    platform.pipeline.run(first)
    platform.router.routes = []  # Caddy restarted with an empty config

    platform.pipeline.sync_routes()

    assert platform.router.routes == route(platform, first)


def test_only_the_latest_images_are_kept(platform: Platform) -> None:
    revisions = []
    for _ in range(KEEP_IMAGES + 2):
        revisions.append(platform.push())
        platform.pipeline.run(revisions[-1])

    kept = {platform.revision(r).image for r in revisions[-KEEP_IMAGES:]}
    assert set(platform.builder.images) == kept
    assert all(platform.revision(r).image is None for r in revisions[:-KEEP_IMAGES])


def test_an_image_built_for_a_revision_cancelled_during_its_build_is_removed(
    platform: Platform,
) -> None:
    first = platform.push()
    platform.builder.after_build = platform.push  # the newer push lands as the build finishes

    assert platform.pipeline.run(first) is RevisionState.cancelled

    assert platform.builder.images == {}


def test_the_database_is_recorded_once_per_deployment(platform: Platform) -> None:
    for _ in range(3):
        platform.pipeline.run(platform.push())

    with platform.sessions() as session:
        [database] = session.exec(select(Database)).all()
        assert database.provisioned_at is not None
        live = session.exec(select(Revision).where(col(Revision.state) == RevisionState.live)).all()
        assert len(live) == 1
    assert platform.databases.times_ensured == 1
