"""Pull-request previews, every branch of the lifecycle, with fakes at every port.

A pull request against the default branch gets a development deployment with its own database
at pr-<n>--<slug>; new commits replace its revision; closing it leaves nothing behind.
"""

from __future__ import annotations

import logging

import pytest
from sqlmodel import col, select

from app.feedback.comments import MARKER
from app.kernel.errors import TeardownIncomplete
from app.kernel.models import (
    Database,
    PullRequest,
    PullRequestState,
    Replica,
    Revision,
    RevisionState,
)
from manifests.containers import DEPLOYMENT_LABEL, DeploymentType
from tests.support.fake_github import (
    ZERO_SHA,
    check_run_payload,
    check_suite_payload,
    installation_payload,
    installation_repositories_payload,
    push_payload,
)
from tests.unit.world import DOCKERFILE, INSTALLATION, Platform

PREVIEW_HOST = "pr-7--web.localhost"
PREVIEW_URL = "http://pr-7--web.localhost:8000/"


def revisions_of(platform: Platform, deployment_id: str) -> list[Revision]:
    with platform.sessions() as session:
        return list(
            session.exec(
                select(Revision)
                .where(Revision.deployment_id == deployment_id)
                .order_by(col(Revision.number))
            ).all()
        )


def database_of(platform: Platform, deployment_id: str) -> Database | None:
    with platform.sessions() as session:
        return session.get(Database, deployment_id)


def open_and_run(platform: Platform, number: int = 7, **files: str) -> str:
    """Open a pull request and run its first revision; returns the revision id."""
    head = platform.commit({"Dockerfile": DOCKERFILE, **files})
    outcome = platform.pull_request_event("opened", number, head)
    [revision_id] = outcome.start_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.live
    return revision_id


# -- opened -----------------------------------------------------------------------------------
def test_an_opened_pull_request_gets_a_development_preview_with_its_own_database(
    platform: Platform,
) -> None:
    production = platform.push()
    platform.pipeline.run(production)

    preview_revision = open_and_run(platform)

    preview = platform.preview_deployment(7)
    assert preview.slug == "pr-7--web"
    assert preview.environment == "pr-7"
    assert preview.type is DeploymentType.development
    assert platform.router.upstreams(PREVIEW_HOST) == (
        f"127.0.0.1:{platform.port_of(preview_revision)}",
    )
    assert platform.router.upstreams("web.localhost") is not None
    [container] = platform.runtime.of_revision(preview_revision)
    assert container.spec.limits.cpus == 1.0
    assert container.spec.limits.memory_bytes == 1024**3
    production_db = database_of(platform, platform.revision(production).deployment_id)
    preview_db = database_of(platform, preview.id)
    assert production_db is not None and preview_db is not None
    assert preview_db.name != production_db.name
    assert preview_db.role != production_db.role


def test_the_preview_reports_to_a_transient_github_environment(platform: Platform) -> None:
    revision_id = open_and_run(platform)

    [deployment] = platform.github_deployments()
    assert deployment.environment == "pr-7"
    assert deployment.production_environment is False
    assert deployment.transient_environment is True
    assert platform.deployment_state(platform.revision(revision_id).commit_sha) == ("success")
    [status] = [s for s in deployment.statuses if s["state"] == "success"]
    assert status["environment_url"] == PREVIEW_URL


def test_the_comment_follows_the_revision_to_live(platform: Platform) -> None:
    open_and_run(platform)

    [body] = platform.comments_on(7)
    assert MARKER in body
    assert "✅ Live" in body
    assert PREVIEW_URL in body


def test_a_pull_request_before_any_push_still_gets_the_production_slug(platform: Platform) -> None:
    open_and_run(platform)

    assert platform.preview_deployment(7).slug == "pr-7--web"


def test_a_redelivered_opened_makes_nothing_new(platform: Platform) -> None:
    head = platform.commit()
    first = platform.pull_request_event("opened", 7, head)
    again = platform.pull_request_event("opened", 7, head)

    assert len(first.start_revisions) == 1
    assert again.start_revisions == []
    assert len(revisions_of(platform, platform.preview_deployment(7).id)) == 1


def test_a_pull_request_against_another_branch_gets_no_preview(platform: Platform) -> None:
    outcome = platform.pull_request_event("opened", 7, platform.commit(), base="release")

    assert outcome.start_revisions == []
    assert "not the default branch" in outcome.summary


def test_previews_turned_off_in_slipway_toml_make_nothing(platform: Platform) -> None:
    head = platform.commit(
        {"Dockerfile": DOCKERFILE, "slipway.toml": "[previews]\nenabled = false\n"}
    )

    outcome = platform.pull_request_event("opened", 7, head)

    assert outcome.start_revisions == []
    assert "turned off" in outcome.summary
    assert platform.comments_on(7) == []


def test_drafts_wait_for_ready_for_review_when_slipway_toml_says_so(platform: Platform) -> None:
    head = platform.commit(
        {"Dockerfile": DOCKERFILE, "slipway.toml": "[previews]\ndrafts = false\n"}
    )

    drafted = platform.pull_request_event("opened", 7, head, draft=True)
    ready = platform.pull_request_event("ready_for_review", 7, head)

    assert drafted.start_revisions == []
    assert len(ready.start_revisions) == 1


def test_drafts_are_previewed_by_default(platform: Platform) -> None:
    outcome = platform.pull_request_event("opened", 7, platform.commit(), draft=True)

    assert len(outcome.start_revisions) == 1


def test_skip_deploy_in_the_head_commit_makes_no_revision(platform: Platform) -> None:
    head = platform.commit(message="Fix a typo [skip deploy]")

    outcome = platform.pull_request_event("opened", 7, head)

    assert outcome.start_revisions == []
    assert "[skip deploy]" in outcome.summary


def test_skip_ci_in_a_pushed_commit_makes_no_revision(platform: Platform) -> None:
    sha = platform.commit()
    payload = push_payload(
        platform.repository,
        INSTALLATION,
        "refs/heads/main",
        ZERO_SHA,
        sha,
        message="Docs only [skip ci]",
    )

    outcome = platform.deliver("push", payload)

    assert outcome.start_revisions == []
    with platform.sessions() as session:
        assert session.exec(select(Revision)).all() == []


# -- synchronize ------------------------------------------------------------------------------
def test_a_new_commit_replaces_the_preview_and_keeps_its_database(platform: Platform) -> None:
    first = open_and_run(platform)
    preview = platform.preview_deployment(7)
    database = database_of(platform, preview.id)

    [second] = platform.pull_request_event("synchronize", 7, platform.commit()).start_revisions
    assert platform.pipeline.run(second) is RevisionState.live

    assert platform.revision(first).state is RevisionState.superseded
    assert platform.router.upstreams(PREVIEW_HOST) == (f"127.0.0.1:{platform.port_of(second)}",)
    assert database_of(platform, preview.id) == database
    assert len(platform.comments_on(7)) == 1
    assert f"`{platform.revision(second).commit_sha[:7]}`" in platform.comments_on(7)[0]


def test_a_second_synchronize_cancels_the_one_still_queued(platform: Platform) -> None:
    open_and_run(platform)
    [queued] = platform.pull_request_event("synchronize", 7, platform.commit()).start_revisions
    [newest] = platform.pull_request_event("synchronize", 7, platform.commit()).start_revisions

    assert platform.revision(queued).state is RevisionState.cancelled
    assert platform.pipeline.run(queued) is RevisionState.cancelled
    assert platform.pipeline.run(newest) is RevisionState.live
    assert len(platform.comments_on(7)) == 1


# -- closed -----------------------------------------------------------------------------------
def networks_of(platform: Platform, deployment_id: str) -> list[str]:
    return [
        name
        for name, labels in platform.runtime.networks.items()
        if labels.get(DEPLOYMENT_LABEL) == deployment_id
    ]


def assert_nothing_left(platform: Platform, deployment_id: str) -> None:
    assert platform.router.upstreams(PREVIEW_HOST) is None
    assert database_of(platform, deployment_id) is None
    assert not any(
        c.spec.labels.get("dev.slipway.deployment") == deployment_id
        for c in platform.runtime.containers.values()
    )
    assert not [tag for tag in platform.runtime.images if deployment_id in tag]
    assert networks_of(platform, deployment_id) == []
    builds = platform.config.builds_dir
    assert not builds.exists() or list(builds.iterdir()) == []
    with platform.sessions() as session:
        running = session.exec(
            select(Replica)
            .join(Revision, col(Revision.id) == col(Replica.revision_id))
            .where(Revision.deployment_id == deployment_id, col(Replica.stopped_at).is_(None))
        ).all()
        assert running == []


def test_a_preview_runs_on_a_network_of_its_own_not_productions(platform: Platform) -> None:
    production = platform.push()
    platform.pipeline.run(production)
    preview_revision = open_and_run(platform)
    preview = platform.preview_deployment(7)
    production_id = platform.revision(production).deployment_id

    assert networks_of(platform, preview.id) == [platform.runtime.network_of(preview_revision)]
    assert networks_of(platform, production_id) == [platform.runtime.network_of(production)]
    assert platform.runtime.network_of(preview_revision) != platform.runtime.network_of(production)


def test_closing_removes_everything_and_says_so(platform: Platform) -> None:
    production = platform.push()
    platform.pipeline.run(production)
    open_and_run(platform)
    preview = platform.preview_deployment(7)
    assert len(platform.databases.databases) == 2

    platform.pull_request_event("closed", 7, platform.revision(production).commit_sha, merged=True)

    assert_nothing_left(platform, preview.id)
    assert len(platform.databases.databases) == 1  # production's is untouched
    assert platform.runtime.network_of(production) in platform.runtime.networks
    assert platform.router.upstreams("web.localhost") is not None
    preview_deployments = [d for d in platform.github_deployments() if d.environment == "pr-7"]
    assert preview_deployments
    for github_deployment in preview_deployments:
        assert github_deployment.state == "inactive"
    [body] = platform.comments_on(7)
    assert "🗑️ **Removed**" in body
    assert "when the pull request was merged" in body
    assert PREVIEW_URL not in body


def test_closing_during_the_build_never_lets_it_go_live(platform: Platform) -> None:
    head = platform.commit()
    [revision_id] = platform.pull_request_event("opened", 7, head).start_revisions
    platform.builder.during_build = lambda: platform.pull_request_event("closed", 7, head)

    assert platform.pipeline.run(revision_id) is RevisionState.cancelled

    assert_nothing_left(platform, platform.preview_deployment(7).id)
    assert platform.check_runs(head)[-1].conclusion == "cancelled"


def test_closing_while_the_replica_starts_never_lets_it_go_live(
    platform: Platform,
) -> None:
    head = platform.commit()
    [revision_id] = platform.pull_request_event("opened", 7, head).start_revisions
    closed: list[bool] = []

    def close_then_answer(host_port: int, path: str) -> bool:
        if not closed:
            closed.append(True)
            platform.pull_request_event("closed", 7, head)
        return True

    platform.health.answer = close_then_answer

    assert platform.pipeline.run(revision_id) is RevisionState.cancelled

    assert_nothing_left(platform, platform.preview_deployment(7).id)


def test_a_synchronize_after_closed_does_nothing(platform: Platform) -> None:
    open_and_run(platform)
    platform.pull_request_event("closed", 7, platform.commit())

    late = platform.pull_request_event("synchronize", 7, platform.commit())

    assert late.start_revisions == []
    assert platform.preview_deployment(7).removed_at is not None


def test_reopening_starts_afresh_at_the_same_address_with_a_new_database(
    platform: Platform,
) -> None:
    first = open_and_run(platform)
    head = platform.revision(first).commit_sha
    old_database = database_of(platform, platform.preview_deployment(7).id)
    platform.pull_request_event("closed", 7, head)

    [again] = platform.pull_request_event("reopened", 7, head).start_revisions
    assert platform.pipeline.run(again) is RevisionState.live

    assert again != first
    preview = platform.preview_deployment(7)
    assert preview.slug == "pr-7--web"
    assert preview.removed_at is None
    new_database = database_of(platform, preview.id)
    assert new_database is not None and old_database is not None
    assert new_database.password_encrypted != old_database.password_encrypted
    assert len(platform.comments_on(7)) == 1
    assert "✅ Live" in platform.comments_on(7)[0]


# -- the App leaving --------------------------------------------------------------------------
def test_uninstalling_removes_previews_and_stops_production_keeping_its_data(
    platform: Platform,
) -> None:
    production = platform.push()
    platform.pipeline.run(production)
    open_and_run(platform)
    preview = platform.preview_deployment(7)
    production_id = platform.revision(production).deployment_id
    production_db = database_of(platform, production_id)

    platform.deliver(
        "installation",
        installation_payload("deleted", INSTALLATION, "octo", [platform.repository]),
    )

    assert_nothing_left(platform, preview.id)
    assert platform.router.upstreams("web.localhost") is None
    assert platform.runtime.of_revision(production) == []
    assert networks_of(platform, production_id) == []
    assert database_of(platform, production_id) == production_db
    with platform.sessions() as session:
        pull_request = session.exec(select(PullRequest)).one()
        assert pull_request.state is PullRequestState.closed

    # Reinstalled, the same commit pushed again comes back with its data.
    platform.deliver(
        "installation",
        installation_payload("created", INSTALLATION, "octo", [platform.repository]),
    )
    sha = platform.revision(production).commit_sha
    outcome = platform.deliver(
        "push", push_payload(platform.repository, INSTALLATION, "refs/heads/main", ZERO_SHA, sha)
    )
    [back] = outcome.start_revisions
    assert platform.pipeline.run(back) is RevisionState.live
    assert platform.router.upstreams("web.localhost") is not None
    assert database_of(platform, production_id) == production_db
    assert networks_of(platform, production_id) == [platform.runtime.network_of(back)]


def test_a_repository_removed_from_the_app_loses_its_previews(
    platform: Platform,
) -> None:
    open_and_run(platform)
    preview = platform.preview_deployment(7)

    platform.deliver(
        "installation_repositories",
        installation_repositories_payload(
            "removed", INSTALLATION, "octo", added=[], removed=[platform.repository]
        ),
    )

    assert_nothing_left(platform, preview.id)


# -- forks ------------------------------------------------------------------------------------
def test_a_fork_pull_request_is_not_built_before_approval(platform: Platform) -> None:
    head = platform.commit()

    outcome = platform.pull_request_event("opened", 7, head, fork="stranger/web")

    assert outcome.start_revisions == []
    [revision_id] = outcome.announce_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.queued
    assert platform.builder.images == {}
    assert "✋ Waiting for approval" in platform.comments_on(7)[0]


def fork_revision(platform: Platform, number: int = 7) -> str:
    outcome = platform.pull_request_event("opened", number, platform.commit(), fork="stranger/web")
    [revision_id] = outcome.announce_revisions
    return revision_id


def test_the_fork_check_run_asks_for_approval_with_a_button(platform: Platform) -> None:
    revision_id = fork_revision(platform)

    run = platform.check_run(revision_id)
    assert run.status == "completed"
    assert run.conclusion == "action_required"
    assert run.actions == [
        {
            "label": "Deploy preview",
            "description": "Build and run this fork's commit",
            "identifier": "deploy-preview",
        }
    ]
    assert "maintainer" in str(run.output["title"])
    assert platform.github_deployments() == []  # nothing to deploy yet


def test_a_press_by_a_reader_is_refused_and_says_by_whom(platform: Platform) -> None:
    revision_id = fork_revision(platform)
    platform.set_permission("curious", "read")

    outcome = platform.press(revision_id, "requested_action", "curious", "deploy-preview")

    assert outcome.start_revisions == outcome.approved_revisions == []
    run = platform.check_run(revision_id)
    assert run.conclusion == "action_required"
    assert "@curious" in str(run.output["summary"]) and "`read`" in str(run.output["summary"])
    assert platform.pipeline.run(revision_id) is RevisionState.queued
    assert platform.builder.images == {}


def test_a_press_by_a_writer_builds_it_with_only_its_own_env(platform: Platform) -> None:
    revision_id = fork_revision(platform)
    platform.set_permission("maintainer", "maintain")

    outcome = platform.press(revision_id, "requested_action", "maintainer", "deploy-preview")

    assert outcome.approved_revisions == [revision_id]
    sha = platform.revision(revision_id).commit_sha
    approval, _ = platform.check_runs(sha)
    assert approval.conclusion == "neutral"
    assert approval.actions == []
    assert platform.pipeline.run(revision_id) is RevisionState.live
    _, build = platform.check_runs(sha)
    assert build.conclusion == "success"
    [container] = platform.runtime.of_revision(revision_id)
    assert {k for k in container.spec.env if not k.startswith("SLIPWAY_")} == {
        "PORT",
        "DATABASE_URI",
    }
    assert "✅ Live" in platform.comments_on(7)[0]


def test_a_new_fork_commit_waits_for_approval_again(platform: Platform) -> None:
    revision_id = fork_revision(platform)
    platform.set_permission("maintainer", "write")
    platform.press(revision_id, "requested_action", "maintainer", "deploy-preview")
    platform.pipeline.run(revision_id)

    outcome = platform.pull_request_event("synchronize", 7, platform.commit(), fork="stranger/web")

    [waiting] = outcome.announce_revisions
    assert outcome.start_revisions == []
    assert platform.pipeline.run(waiting) is RevisionState.queued
    assert "✋ Waiting for approval" in platform.comments_on(7)[0]
    assert len(platform.comments_on(7)) == 1


def test_a_second_press_after_approval_changes_nothing(platform: Platform) -> None:
    revision_id = fork_revision(platform)
    platform.set_permission("maintainer", "admin")
    platform.press(revision_id, "requested_action", "maintainer", "deploy-preview")
    platform.pipeline.run(revision_id)

    again = platform.deliver(
        "check_run",
        check_run_payload(
            "requested_action",
            platform.repository,
            INSTALLATION,
            platform.github.check_run_json(
                platform.full_name, int(str(platform.revision(revision_id).check_run_id))
            ),
            sender="maintainer",
            requested_action_identifier="deploy-preview",
        ),
    )

    assert again.approved_revisions == []


# -- re-run -----------------------------------------------------------------------------------
def test_a_rerun_of_a_failed_push_builds_it_again_with_a_new_check_run(platform: Platform) -> None:
    platform.set_permission("octo-dev", "write")
    platform.builder.failure = "step 3 failed: the network flaked"
    failed = platform.push()
    assert platform.pipeline.run(failed) is RevisionState.failed
    platform.builder.failure = None

    outcome = platform.press(failed, "rerequested", "octo-dev")

    [again] = outcome.start_revisions
    assert again != failed
    assert platform.revision(again).commit_sha == platform.revision(failed).commit_sha
    assert platform.revision(again).check_run_id != platform.revision(failed).check_run_id
    assert platform.pipeline.run(again) is RevisionState.live
    assert platform.check_run(again).conclusion == "success"


def test_a_rerun_of_a_preview_builds_its_head_again(platform: Platform) -> None:
    platform.set_permission("octo-dev", "write")
    first = open_and_run(platform)

    [again] = platform.press(first, "rerequested", "octo-dev").start_revisions

    assert platform.pipeline.run(again) is RevisionState.live
    assert platform.revision(first).state is RevisionState.superseded
    assert len(platform.comments_on(7)) == 1


def test_a_rerun_of_a_commit_that_is_no_longer_the_head_does_nothing(platform: Platform) -> None:
    platform.set_permission("octo-dev", "write")
    first = open_and_run(platform)
    platform.pull_request_event("synchronize", 7, platform.commit())

    outcome = platform.press(first, "rerequested", "octo-dev")

    assert outcome.start_revisions == []
    assert "the pull request's head is now" in outcome.summary


def test_a_rerun_on_a_closed_pull_request_does_nothing(platform: Platform) -> None:
    platform.set_permission("octo-dev", "write")
    first = open_and_run(platform)
    platform.pull_request_event("closed", 7, platform.revision(first).commit_sha)

    outcome = platform.press(first, "rerequested", "octo-dev")

    assert outcome.start_revisions == []
    assert "removed" in outcome.summary


def test_a_rerun_of_an_older_production_commit_does_nothing(platform: Platform) -> None:
    platform.set_permission("octo-dev", "write")
    first = platform.push()
    platform.pipeline.run(first)
    platform.pipeline.run(platform.push())

    outcome = platform.press(first, "rerequested", "octo-dev")

    assert outcome.start_revisions == []
    assert "roll" in outcome.summary


def test_a_rerequested_check_suite_rebuilds_its_commit(platform: Platform) -> None:
    platform.set_permission("octo-dev", "write")
    platform.builder.failure = "flaky"
    failed = platform.push()
    platform.pipeline.run(failed)
    platform.builder.failure = None

    outcome = platform.deliver(
        "check_suite",
        check_suite_payload(
            "rerequested",
            platform.repository,
            INSTALLATION,
            head_sha=platform.revision(failed).commit_sha,
            head_branch="main",
            sender="octo-dev",
        ),
    )

    [again] = outcome.start_revisions
    assert platform.pipeline.run(again) is RevisionState.live


def test_a_rerun_by_someone_without_write_permission_does_nothing(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    platform.builder.failure = "flaky"
    failed = platform.push()
    platform.pipeline.run(failed)
    platform.builder.failure = None
    platform.set_permission("drive-by", "read")

    with caplog.at_level(logging.INFO, logger="app.deliveries"):
        outcome = platform.press(failed, "rerequested", "drive-by")
        suite = platform.deliver(
            "check_suite",
            check_suite_payload(
                "rerequested",
                platform.repository,
                INSTALLATION,
                head_sha=platform.revision(failed).commit_sha,
                head_branch="main",
                sender="drive-by",
            ),
        )

    for refused in (outcome, suite):
        assert refused.start_revisions == [] and refused.announce_revisions == []
        assert "@drive-by has read permission" in refused.summary
    with platform.sessions() as session:
        assert session.exec(select(Revision.id)).all() == [failed]
    refusals = [r for r in caplog.records if r.getMessage() == "re-run refused"]
    assert len(refusals) == 2
    assert {(r.__dict__["login"], r.__dict__["role"]) for r in refusals} == {("drive-by", "read")}


def test_a_rerun_asks_github_for_the_permission_at_each_press(platform: Platform) -> None:
    platform.builder.failure = "flaky"
    failed = platform.push()
    platform.pipeline.run(failed)
    platform.set_permission("octo-dev", "write")
    [again] = platform.press(failed, "rerequested", "octo-dev").start_revisions
    platform.pipeline.run(again)

    platform.set_permission("octo-dev", "triage")  # demoted since
    outcome = platform.press(again, "rerequested", "octo-dev")

    assert outcome.start_revisions == [] and "triage permission" in outcome.summary


def test_a_teardown_the_engine_refuses_does_the_rest_and_finishes_when_retried(
    platform: Platform,
) -> None:
    revision_id = open_and_run(platform)
    preview = platform.preview_deployment(7)
    platform.runtime.stuck.add(revision_id)

    with pytest.raises(TeardownIncomplete, match="could not stop its replicas"):
        platform.teardown.remove(preview.id, drop_database=True, reason="closed")

    assert platform.router.upstreams(PREVIEW_HOST) is None
    assert networks_of(platform, preview.id) != []  # its replica is still on it
    assert database_of(platform, preview.id) is None
    platform.runtime.stuck.clear()
    platform.teardown.remove(preview.id, drop_database=True, reason="closed")
    assert_nothing_left(platform, preview.id)


def test_turning_previews_off_removes_the_preview_and_says_why(platform: Platform) -> None:
    open_and_run(platform)
    preview = platform.preview_deployment(7)
    head = platform.commit(
        {"Dockerfile": DOCKERFILE, "slipway.toml": "[previews]\nenabled = false\n"}
    )

    outcome = platform.pull_request_event("synchronize", 7, head)

    assert outcome.start_revisions == []
    assert_nothing_left(platform, preview.id)
    [body] = platform.comments_on(7)
    assert "was removed because slipway.toml turned previews off" in body
    assert "Reopening" not in body
