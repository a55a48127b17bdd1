"""What people do to deployments through the API, on the domain service with fakes at every port:
env and secrets, deployments of other branches, deploys of a ref, rollbacks and deletes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from app.access.tokens import Caller
from app.deployments.environment import EnvChange
from app.deployments.operations import NewDeployment
from app.feedback.reports import REDACTED
from app.kernel.errors import ConflictError, InvalidRequest, NotFoundError
from app.kernel.models import Database, Deployment, RevisionState
from app.rollout.recovery import LostTeardown
from manifests.containers import DeploymentType
from manifests.run import RunConfig
from tests.support.fake_github import ZERO_SHA, push_payload
from tests.unit.world import DOCKERFILE, INSTALLATION, Platform

ALICE = Caller(name="alice", read_only=False)
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nbm90IGEgcmVhbCBrZXk=\n"
    "-----END PRIVATE KEY-----\n"
)


def live_production(platform: Platform) -> str:
    revision = platform.push()
    assert platform.pipeline.run(revision) is RevisionState.live
    return revision


def run_started(platform: Platform, started: list[str]) -> str:
    [revision_id] = started
    assert platform.pipeline.run(revision_id) is RevisionState.live
    return revision_id


def push_to(platform: Platform, branch: str, files: dict[str, str] | None = None) -> list[str]:
    sha = platform.commit(files)
    payload = push_payload(platform.repository, INSTALLATION, f"refs/heads/{branch}", ZERO_SHA, sha)
    platform.set_branch(branch, sha)
    return platform.deliver("push", payload).start_revisions


# -- env and secrets ----------------------------------------------------------------------------
def test_an_env_change_makes_a_new_revision_of_the_live_commit_that_sees_it(
    platform: Platform,
) -> None:
    first = live_production(platform)
    deployment = platform.deployment()

    done = platform.operations.change_env(
        deployment.id,
        EnvChange(
            set={"GREETING": "hello"}, secrets={"OPENAI_API_KEY": "sk-live-123456", "PEM": PEM}
        ),
        ALICE,
    )
    platform.carry_out(done.outcome)

    assert done.revision is not None
    second = run_started(platform, done.outcome.start_revisions)
    assert platform.revision(second).commit_sha == platform.revision(first).commit_sha
    assert platform.revision(second).requested_by == "alice"
    [container] = platform.runtime.of_revision(second)
    assert container.spec.env["GREETING"] == "hello"
    assert container.spec.env["OPENAI_API_KEY"] == "sk-live-123456"
    assert container.spec.env["PEM"] == PEM  # line breaks intact
    env = platform.operations.env(deployment.id)
    assert env.variables == {"GREETING": "hello"}
    assert env.secrets == ["OPENAI_API_KEY", "PEM"]


def test_a_secret_printed_by_the_build_never_reaches_the_check_run(platform: Platform) -> None:
    live_production(platform)
    deployment = platform.deployment()
    platform.builder.output = ["#4 RUN echo $TOKEN", "#4 0.1 tok-9f8e7d6c5b"]
    platform.builder.failure = "the Docker build failed (exit code 1)"

    done = platform.operations.change_env(
        deployment.id, EnvChange(secrets={"TOKEN": "tok-9f8e7d6c5b"}), ALICE
    )
    platform.carry_out(done.outcome)
    [revision_id] = done.outcome.start_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.failed

    summary = platform.summary(revision_id)
    assert "tok-9f8e7d6c5b" not in summary and REDACTED in summary


def test_unset_makes_another_revision_without_the_variable(platform: Platform) -> None:
    live_production(platform)
    deployment_id = platform.deployment().id
    done = platform.operations.change_env(deployment_id, EnvChange(set={"A": "1", "B": "2"}), ALICE)
    run_started(platform, done.outcome.start_revisions)

    done = platform.operations.change_env(deployment_id, EnvChange(unset=["A"]), ALICE)
    third = run_started(platform, done.outcome.start_revisions)

    [container] = platform.runtime.of_revision(third)
    assert "A" not in container.spec.env and container.spec.env["B"] == "2"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (EnvChange(set={"1BAD": "x"}), "1BAD"),
        (EnvChange(set={"GOOD": "x", "PORT": "9"}), "PORT"),
        (EnvChange(secrets={"DATABASE_URI": "x"}), "DATABASE_URI"),
        (EnvChange(set={"SLIPWAY_REVISION": "x"}), "SLIPWAY_REVISION"),
        (EnvChange(set={"BIG": "x" * (64 * 1024 + 1)}), "BIG"),
        (EnvChange(set={"NUM": 5}), "NUM"),  # type: ignore[dict-item]
        (EnvChange(set={"TWICE": "a"}, unset=["TWICE"]), "TWICE"),
    ],
)
def test_a_bad_change_names_the_key_and_changes_nothing(
    platform: Platform, change: EnvChange, named: str
) -> None:
    live_production(platform)
    deployment_id = platform.deployment().id
    platform.operations.change_env(deployment_id, EnvChange(set={"KEEP": "me"}), ALICE)
    revisions_before = len(platform.check_runs())

    with pytest.raises(InvalidRequest, match=named):
        platform.operations.change_env(deployment_id, change, ALICE)

    assert platform.operations.env(deployment_id).variables == {"KEEP": "me"}
    assert len(platform.check_runs()) == revisions_before


def test_a_change_that_changes_nothing_makes_no_revision(platform: Platform) -> None:
    live_production(platform)
    deployment_id = platform.deployment().id
    platform.operations.change_env(deployment_id, EnvChange(set={"A": "1"}), ALICE)

    again = platform.operations.change_env(deployment_id, EnvChange(set={"A": "1"}), ALICE)

    assert again.revision is None and again.outcome.start_revisions == []


def test_same_repository_previews_get_productions_env_and_forks_none(platform: Platform) -> None:
    live_production(platform)
    production = platform.deployment()
    platform.operations.change_env(
        production.id, EnvChange(set={"MODE": "demo"}, secrets={"API_KEY": "key-123456"}), ALICE
    )

    own = platform.pull_request_event("opened", 5, platform.commit())
    fork = platform.pull_request_event("opened", 6, platform.commit(), fork="stranger/web")
    platform.press(fork.announce_revisions[0], "requested_action", "maintainer", "deploy-preview")

    [own_revision] = own.start_revisions
    platform.pipeline.run(own_revision)
    [own_container] = platform.runtime.of_revision(own_revision)
    assert own_container.spec.env["MODE"] == "demo"
    assert own_container.spec.env["API_KEY"] == "key-123456"
    with pytest.raises(ConflictError, match="production"):
        platform.operations.change_env(
            platform.preview_deployment(5).id, EnvChange(set={"X": "1"}), ALICE
        )
    [fork_revision] = fork.announce_revisions
    assert platform.revision(fork_revision).env_encrypted is None


# -- deployments of other branches ----------------------------------------------------------------
def test_a_deployment_of_a_branch_follows_that_branch_only(platform: Platform) -> None:
    live_production(platform)
    sha = platform.commit()
    platform.set_branch("staging", sha)

    done = platform.operations.create(
        NewDeployment(repository="octo/web", branch="staging", name="web-staging"), ALICE
    )
    platform.carry_out(done.outcome)

    assert done.deployment.type is DeploymentType.development
    first = run_started(platform, done.outcome.start_revisions)
    assert platform.revision(first).commit_sha == sha
    [staging_push] = push_to(platform, "staging")
    assert platform.revision(staging_push).deployment_id == done.deployment.id
    [main_push] = push_to(platform, "main")
    assert platform.revision(main_push).deployment_id != done.deployment.id
    assert platform.router.routes and any(
        r.hostname.startswith("web-staging.") for r in platform.router.routes
    )


def test_deploy_on_push_false_deploys_only_on_request(platform: Platform) -> None:
    live_production(platform)
    platform.set_branch("release", platform.commit())
    done = platform.operations.create(
        NewDeployment(
            repository="octo/web",
            branch="release",
            name="web-release",
            type=DeploymentType.production,
            deploy_on_push=False,
        ),
        ALICE,
    )
    assert done.revision is None

    assert push_to(platform, "release") == []

    deployed = platform.operations.deploy(done.deployment.id, "release", ALICE)
    assert deployed.revision is not None
    assert deployed.revision.commit_sha == platform.commits.tip("release")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("Web", InvalidRequest),
        ("-web", InvalidRequest),
        ("a" * 64, InvalidRequest),
        ("pr-3--web", InvalidRequest),
        ("pr-3", InvalidRequest),
        ("www", InvalidRequest),  # reserved
        ("admin", InvalidRequest),
        ("web", ConflictError),  # production's slug
    ],
)
def test_a_deployment_name_must_be_a_free_dns_label(
    platform: Platform, name: str, error: type[Exception]
) -> None:
    live_production(platform)
    platform.set_branch("staging", platform.commit())

    with pytest.raises(error):
        platform.operations.create(
            NewDeployment(repository="octo/web", branch="staging", name=name), ALICE
        )


def test_unknown_repositories_and_refs_are_refused(platform: Platform) -> None:
    live_production(platform)
    with pytest.raises(InvalidRequest, match="not connected"):
        platform.operations.create(
            NewDeployment(repository="octo/other", branch="main", name="other"), ALICE
        )
    with pytest.raises(InvalidRequest, match="no branch, tag or commit 'nope'"):
        platform.operations.deploy(platform.deployment().id, "nope", ALICE)
    platform.expect_refusals("commits/nope")


# -- rollback --------------------------------------------------------------------------------------
def test_a_rollback_runs_the_old_image_and_env_without_a_build(platform: Platform) -> None:
    first = live_production(platform)
    deployment_id = platform.deployment().id
    done = platform.operations.change_env(deployment_id, EnvChange(set={"V": "2"}), ALICE)
    run_started(platform, done.outcome.start_revisions)
    builds = len(platform.builder.images)

    done = platform.operations.rollback(deployment_id, 1, ALICE)
    platform.carry_out(done.outcome)
    third = run_started(platform, done.outcome.start_revisions)

    assert len(platform.builder.images) == builds + 1  # a new tag of the same image, no build
    rolled = platform.revision(third)
    assert rolled.rollback_of == first and rolled.build_method == "reused"
    [container] = platform.runtime.of_revision(third)
    assert "V" not in container.spec.env
    assert platform.operations.env(deployment_id).variables == {}
    assert "reusing its image" in platform.config.log_path(rolled).read_text()


def test_a_rollback_runs_as_recorded_not_as_the_images_labels_say(platform: Platform) -> None:
    """A Dockerfile's LABEL lines are the tenant's: one naming Slipway's keys (a state dir that
    spells a bind mount of the host's /, another port) changes nothing on a rollback."""
    first = live_production(platform)
    deployment_id = platform.deployment().id
    image = platform.revision(first).image
    assert image is not None
    platform.builder.labels_of[image] = {
        **platform.builder.labels_of[image],
        "dev.slipway.state-dir": "/x,type=bind,source=/,target=/host",
        "dev.slipway.port": "9999",
    }
    run_started(platform, [platform.push()])

    done = platform.operations.rollback(deployment_id, 1, ALICE)
    platform.carry_out(done.outcome)
    rolled = run_started(platform, done.outcome.start_revisions)

    assert platform.revision(rolled).build_method == "reused"
    [container] = platform.runtime.of_revision(rolled)
    assert container.spec.volumes == {}
    recorded = platform.revision(first).run_config
    assert recorded is not None
    assert container.spec.port == RunConfig.from_json(recorded).port != 9999


def test_a_rollback_to_a_pruned_image_builds_that_commit_again(platform: Platform) -> None:
    first = live_production(platform)
    deployment_id = platform.deployment().id
    image = platform.revision(first).image
    assert image is not None
    run_started(platform, [platform.push()])
    platform.runtime.remove_image(image)

    done = platform.operations.rollback(deployment_id, 1, ALICE)
    rolled = run_started(platform, done.outcome.start_revisions)

    log = platform.config.log_path(platform.revision(rolled)).read_text()
    assert "built again" in log and platform.revision(rolled).build_method == "fake"


def test_a_rollback_to_a_revision_that_does_not_exist_is_refused(platform: Platform) -> None:
    live_production(platform)
    with pytest.raises(NotFoundError, match="#7"):
        platform.operations.rollback(platform.deployment().id, 7, ALICE)


# -- delete ----------------------------------------------------------------------------------------
def test_delete_needs_the_slug_and_then_removes_everything(platform: Platform) -> None:
    live_production(platform)
    deployment = platform.deployment()

    with pytest.raises(InvalidRequest, match="'web'"):
        platform.operations.delete(deployment.id, "wrong", ALICE)
    done = platform.operations.delete(deployment.id, "web", ALICE)
    platform.carry_out(done.outcome)

    assert platform.router.routes == []
    assert platform.runtime.containers == {} or not any(
        c.running for c in platform.runtime.containers.values()
    )
    assert platform.databases.databases == {}
    with platform.sessions() as session:
        assert session.exec(select(Database)).all() == []
        stored = session.get(Deployment, deployment.id)
        assert stored is not None and stored.deleted_at is not None and stored.torn_down_at
    # Nothing brings it back: a push to the default branch makes no revision.
    assert push_to(platform, "main") == []
    # Its repository can take its name back (another one must wait: see test_names.py).
    platform.set_branch("main", platform.commit({"Dockerfile": DOCKERFILE}))
    again = platform.operations.create(
        NewDeployment(repository="octo/web", branch="main", name="web"), ALICE
    )
    assert again.deployment.slug == "web"


def test_a_deletion_whose_teardown_was_lost_is_resumed_by_recovery(platform: Platform) -> None:
    live_production(platform)
    deployment = platform.deployment()
    platform.operations.delete(deployment.id, "web", ALICE)  # its work order never ran

    assert platform.recovery.unfinished_teardowns() == []  # not yet: teardowns take seconds
    platform.clock.now += timedelta(minutes=11)
    assert platform.recovery.unfinished_teardowns() == [
        LostTeardown(deployment.id, drop_database=True, reason="the deployment was deleted")
    ]

    platform.teardown.remove(deployment.id, drop_database=True, reason="resumed")
    assert platform.recovery.unfinished_teardowns() == []
    assert platform.databases.databases == {}


def test_a_rollback_uses_an_earlier_rollbacks_image_of_the_same_commit(platform: Platform) -> None:
    first = live_production(platform)
    deployment_id = platform.deployment().id
    run_started(platform, [platform.push()])
    again = run_started(
        platform, platform.operations.rollback(deployment_id, 1, ALICE).outcome.start_revisions
    )
    image = platform.revision(first).image
    assert image is not None
    platform.runtime.remove_image(image)  # pruned: only the rollback's tag of it is left

    done = platform.operations.rollback(deployment_id, 1, ALICE)
    rolled = run_started(platform, done.outcome.start_revisions)

    assert platform.revision(rolled).build_method == "reused"
    kept = platform.revision(again).image
    assert kept is not None
    assert kept in platform.config.log_path(platform.revision(rolled)).read_text()
