"""The preview lifecycle a repository chooses: previews only for labelled pull requests, and env
that a production deployment's previews get over its own.

The decision is a pure function (`previews.decide`), tested alone first; then the whole path
with fakes at every port, as a user would see it: revisions, routes, databases, the comment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.access.tokens import Caller
from app.deliveries.pull_request import HANDLED_ACTIONS
from app.deployments.environment import EnvChange, EnvScope
from app.deployments.previews import PreviewSettings, Verdict, decide
from app.kernel.errors import ConflictError, InvalidRequest
from app.kernel.models import Database, Deployment, RevisionState
from app.kernel.orders import TeardownOrder, WorkOrder
from manifests.config import parse_repository_config
from manifests.errors import ConfigError
from tests.unit.world import DOCKERFILE, Platform

PREVIEW_HOST = "pr-7--web.localhost"
BY_LABEL = PreviewSettings(by_label=True)
LABEL_TOML = '[previews]\ntrigger = "label"\n'
ALICE = Caller(name="alice", read_only=False)
ROOT = Path(__file__).resolve().parents[2]


# -- the decision, alone ----------------------------------------------------------------------
@pytest.mark.parametrize("action", ["opened", "reopened", "synchronize", "ready_for_review"])
def test_every_pr_builds_whatever_the_labels(action: str) -> None:
    assert decide(PreviewSettings(), action=action, labels=[]).verdict is Verdict.build


@pytest.mark.parametrize("action", ["labeled", "unlabeled"])
def test_every_pr_ignores_labels_even_the_preview_label(action: str) -> None:
    decision = decide(PreviewSettings(), action=action, labels=[], changed_label="preview")

    assert decision.verdict is Verdict.ignore
    assert "every pull request" in decision.why


def test_the_label_trigger_builds_a_labelled_pull_request() -> None:
    labelled = decide(
        BY_LABEL, action="labeled", labels=["bug", "preview"], changed_label="preview"
    )
    pushed = decide(BY_LABEL, action="synchronize", labels=["preview"])

    assert labelled.verdict is Verdict.build
    assert pushed.verdict is Verdict.build


def test_the_label_matches_in_any_case_as_github_does() -> None:
    settings = PreviewSettings(by_label=True, label="Deploy Me")

    decision = decide(settings, action="labeled", labels=["deploy me"], changed_label="DEPLOY ME")

    assert decision.verdict is Verdict.build


def test_taking_the_label_off_removes_and_says_how_to_bring_it_back() -> None:
    decision = decide(BY_LABEL, action="unlabeled", labels=["bug"], changed_label="preview")

    assert decision.verdict is Verdict.remove
    assert decision.note is not None
    assert "`preview` label was taken off" in decision.note
    assert "labelling it again" in decision.note


def test_a_label_cannot_break_out_of_its_code_span_in_the_comment() -> None:
    settings = PreviewSettings(by_label=True, label="a`**b**`")

    decision = decide(settings, action="unlabeled", labels=[], changed_label="a`**b**`")

    assert decision.note is not None
    assert decision.note.count("`") == 2
    assert "`a'**b**'`" in decision.note


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_without_the_label_a_pull_request_has_no_preview(action: str) -> None:
    decision = decide(BY_LABEL, action=action, labels=["bug"])

    assert decision.verdict is Verdict.remove
    assert 'trigger = "label"' in decision.why


@pytest.mark.parametrize("action", ["labeled", "unlabeled"])
def test_another_label_changes_nothing(action: str) -> None:
    labels = ["preview", "bug"] if action == "labeled" else ["preview"]

    decision = decide(BY_LABEL, action=action, labels=labels, changed_label="bug")

    assert decision.verdict is Verdict.ignore


def test_previews_turned_off_win_over_the_label() -> None:
    settings = PreviewSettings(enabled=False, by_label=True)

    decision = decide(settings, action="labeled", labels=["preview"], changed_label="preview")

    assert decision.verdict is Verdict.remove
    assert "turned off" in decision.why


def test_a_labelled_draft_still_waits_when_drafts_are_off() -> None:
    settings = PreviewSettings(drafts=False, by_label=True)

    decision = decide(
        settings, action="labeled", labels=["preview"], changed_label="preview", draft=True
    )

    assert decision.verdict is Verdict.wait


# -- slipway.toml ------------------------------------------------------------------------------
def test_the_trigger_and_label_parse_with_every_pr_by_default() -> None:
    assert parse_repository_config("").previews.trigger == "every-pr"
    assert parse_repository_config("").previews.label == "preview"

    config = parse_repository_config('[previews]\ntrigger = "label"\nlabel = "deploy-me"\n')

    assert config.previews.trigger == "label"
    assert config.previews.label == "deploy-me"


def test_an_unknown_trigger_is_reported_on_its_line() -> None:
    text = '[build]\ncontext = "."\n\n[previews]\nenabled = true\ntrigger = "on-label"\n'

    with pytest.raises(ConfigError) as raised:
        parse_repository_config(text)

    [annotation] = raised.value.annotations
    assert annotation.start_line == 6
    assert "previews.trigger" in annotation.message
    assert "every-pr" in annotation.message and "label" in annotation.message


@pytest.mark.parametrize("label", ["", "  ", " preview", "x" * 51])
def test_a_label_github_could_not_have_is_refused(label: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_repository_config(f'[previews]\ntrigger = "label"\nlabel = "{label}"\n')

    [annotation] = raised.value.annotations
    assert annotation.start_line == 3
    assert "previews.label" in annotation.message


# -- the App is told what the label trigger needs ----------------------------------------------
def test_the_app_manifest_subscribes_to_the_event_that_carries_labels() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text(encoding="utf-8"))

    assert "pull_request" in manifest["default_events"]  # labeled/unlabeled are its actions
    assert manifest["default_permissions"]["pull_requests"] in {"read", "write"}
    assert {"labeled", "unlabeled"} <= HANDLED_ACTIONS


# -- the label trigger, the whole path -----------------------------------------------------------
def database_name(platform: Platform, deployment_id: str) -> str | None:
    with platform.sessions() as session:
        database = session.get(Database, deployment_id)
        return database.name if database is not None else None


def labelled_repository(platform: Platform) -> str:
    """A pull request #7 opened without the label on a repository with the label trigger."""
    head = platform.commit({"Dockerfile": DOCKERFILE, "slipway.toml": LABEL_TOML})
    opened = platform.pull_request_event("opened", 7, head)
    assert opened.start_revisions == opened.announce_revisions == []
    return head


def test_an_unlabelled_pull_request_gets_no_preview_check_run_or_comment(
    platform: Platform,
) -> None:
    head = labelled_repository(platform)

    assert platform.comments_on(7) == []
    assert platform.check_runs(head) == []
    assert platform.router.upstreams(PREVIEW_HOST) is None


def test_labelled_unlabelled_and_labelled_again(platform: Platform) -> None:
    labelled_repository(platform)

    # labelled: built, routed, commented.
    [first] = platform.label_event("labeled", 7).start_revisions
    assert platform.pipeline.run(first) is RevisionState.live
    assert platform.router.upstreams(PREVIEW_HOST) is not None
    preview = platform.preview_deployment(7)
    first_database = database_name(platform, preview.id)
    assert first_database in platform.databases.databases
    [body] = platform.comments_on(7)
    assert "✅ Live" in body

    # unlabelled: removed as on close; the pull request stays open; the comment says why.
    unlabelled = platform.label_event("unlabeled", 7)
    assert unlabelled.teardowns
    assert platform.router.upstreams(PREVIEW_HOST) is None
    assert platform.preview_deployment(7).removed_at is not None
    assert first_database not in platform.databases.databases
    assert platform.runtime.of_revision(first) == []
    [body] = platform.comments_on(7)
    assert "🗑️ **Removed**" in body
    assert "`preview` label was taken off" in body
    assert "Reopening" not in body

    # labelled again: a new revision at the same address, with a new database.
    [again] = platform.label_event("labeled", 7).start_revisions
    assert again != first
    assert platform.pipeline.run(again) is RevisionState.live
    assert platform.preview_deployment(7).slug == "pr-7--web"
    assert platform.router.upstreams(PREVIEW_HOST) is not None
    assert database_name(platform, preview.id) in platform.databases.databases
    [body] = platform.comments_on(7)
    assert "✅ Live" in body


def test_another_label_neither_builds_nor_removes(platform: Platform) -> None:
    labelled_repository(platform)
    [first] = platform.label_event("labeled", 7).start_revisions
    platform.pipeline.run(first)

    put_on = platform.label_event("labeled", 7, "bug")
    taken_off = platform.label_event("unlabeled", 7, "bug")

    assert put_on.start_revisions == taken_off.start_revisions == []
    assert put_on.teardowns == taken_off.teardowns == []
    assert platform.router.upstreams(PREVIEW_HOST) is not None


def test_a_push_to_a_labelled_pull_request_replaces_its_revision(platform: Platform) -> None:
    labelled_repository(platform)
    [first] = platform.label_event("labeled", 7).start_revisions
    platform.pipeline.run(first)

    head = platform.commit({"Dockerfile": DOCKERFILE, "slipway.toml": LABEL_TOML, "v": "2"})
    [second] = platform.pull_request_event("synchronize", 7, head).start_revisions

    assert platform.pipeline.run(second) is RevisionState.live


def test_switching_a_repository_to_the_label_trigger_removes_an_unlabelled_preview(
    platform: Platform,
) -> None:
    [first] = platform.pull_request_event("opened", 7, platform.commit()).start_revisions
    platform.pipeline.run(first)

    head = platform.commit({"Dockerfile": DOCKERFILE, "slipway.toml": LABEL_TOML})
    pushed = platform.pull_request_event("synchronize", 7, head)

    assert pushed.start_revisions == []
    assert platform.router.upstreams(PREVIEW_HOST) is None
    [body] = platform.comments_on(7)
    assert "does not carry the `preview` label" in body


def test_a_labelled_fork_pull_request_still_waits_for_approval(platform: Platform) -> None:
    head = platform.commit({"Dockerfile": DOCKERFILE, "slipway.toml": LABEL_TOML})
    platform.pull_request_event("opened", 7, head, fork="stranger/web")

    labelled = platform.label_event("labeled", 7)

    assert labelled.start_revisions == []
    [revision_id] = labelled.announce_revisions
    assert platform.pipeline.run(revision_id) is RevisionState.queued
    assert platform.builder.images == {}


def test_a_labelled_closed_pull_request_gets_no_preview(platform: Platform) -> None:
    head = labelled_repository(platform)
    platform.pull_request_event("closed", 7, head)

    late = platform.label_event("labeled", 7)

    assert late.start_revisions == late.announce_revisions == []


# -- env for previews ----------------------------------------------------------------------------
def production_live(platform: Platform, deployment_id: str) -> str:
    with platform.sessions() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None and deployment.live_revision_id is not None
        return deployment.live_revision_id


def live_production_with_env(platform: Platform) -> str:
    revision = platform.push()
    assert platform.pipeline.run(revision) is RevisionState.live
    deployment = platform.deployment()
    done = platform.operations.change_env(
        deployment.id, EnvChange(set={"MODE": "live"}, secrets={"API_KEY": "sk-live"}), ALICE
    )
    platform.carry_out(done.outcome)
    [revision] = done.outcome.start_revisions
    assert platform.pipeline.run(revision) is RevisionState.live
    return deployment.id


def test_preview_overrides_reach_the_next_preview_revision_and_not_production(
    platform: Platform,
) -> None:
    production_id = live_production_with_env(platform)
    [first] = platform.pull_request_event("opened", 7, platform.commit()).start_revisions
    platform.pipeline.run(first)
    production_revisions = len(platform.runtime.containers)

    done = platform.operations.change_env(
        production_id,
        EnvChange(set={"MODE": "sandbox", "EXTRA": "1"}, secrets={"API_KEY": "sk-test"}),
        ALICE,
        EnvScope.previews,
    )
    platform.carry_out(done.outcome)

    # No revision of production, and nothing rebuilt: previews get it at their next revision.
    assert done.revision is None
    assert done.outcome.start_revisions == []
    assert "next revision" in done.outcome.summary
    assert len(platform.runtime.containers) == production_revisions
    [production] = platform.runtime.of_revision(production_live(platform, production_id))
    assert production.spec.env["MODE"] == "live"
    assert production.spec.env["API_KEY"] == "sk-live"
    assert "EXTRA" not in production.spec.env
    [old] = platform.runtime.of_revision(first)
    assert old.spec.env["MODE"] == "live"

    head = platform.commit({"Dockerfile": DOCKERFILE, "v": "2"})
    [second] = platform.pull_request_event("synchronize", 7, head).start_revisions
    assert platform.pipeline.run(second) is RevisionState.live
    [container] = platform.runtime.of_revision(second)
    assert container.spec.env["MODE"] == "sandbox"
    assert container.spec.env["API_KEY"] == "sk-test"
    assert container.spec.env["EXTRA"] == "1"


def test_preview_overrides_are_listed_by_scope_and_secrets_stay_names(
    platform: Platform,
) -> None:
    production_id = live_production_with_env(platform)

    platform.operations.change_env(
        production_id,
        EnvChange(set={"MODE": "sandbox"}, secrets={"API_KEY": "sk-test"}),
        ALICE,
        EnvScope.previews,
    )

    own, overrides = platform.operations.env_with_overrides(production_id)
    assert own.variables == {"MODE": "live"}
    assert overrides is not None
    assert overrides.variables == {"MODE": "sandbox"}
    assert overrides.secrets == ["API_KEY"]
    stored = platform.deployment()
    assert stored.preview_env_encrypted is not None
    assert "sk-test" not in stored.preview_env_encrypted  # encrypted at rest


def test_a_fork_preview_gets_neither_production_env_nor_overrides(platform: Platform) -> None:
    production_id = live_production_with_env(platform)
    platform.operations.change_env(
        production_id, EnvChange(set={"EXTRA": "1"}), ALICE, EnvScope.previews
    )
    outcome = platform.pull_request_event("opened", 7, platform.commit(), fork="stranger/web")
    [revision_id] = outcome.announce_revisions
    platform.set_permission("maintainer", "maintain")
    platform.press(revision_id, "requested_action", "maintainer", "deploy-preview")

    assert platform.pipeline.run(revision_id) is RevisionState.live

    [container] = platform.runtime.of_revision(revision_id)
    assert {k for k in container.spec.env if not k.startswith("SLIPWAY_")} == {
        "PORT",
        "DATABASE_URI",
    }


def test_only_a_production_deployment_takes_the_previews_scope(platform: Platform) -> None:
    live_production_with_env(platform)
    [first] = platform.pull_request_event("opened", 7, platform.commit()).start_revisions
    platform.pipeline.run(first)
    preview = platform.preview_deployment(7)

    with pytest.raises(ConflictError):
        platform.operations.change_env(
            preview.id, EnvChange(set={"A": "1"}), ALICE, EnvScope.previews
        )


def test_a_bad_override_changes_nothing(platform: Platform) -> None:
    production_id = live_production_with_env(platform)

    with pytest.raises(InvalidRequest):
        platform.operations.change_env(
            production_id,
            EnvChange(set={"GOOD": "1", "DATABASE_URI": "postgres://elsewhere"}),
            ALICE,
            EnvScope.previews,
        )

    _, overrides = platform.operations.env_with_overrides(production_id)
    assert overrides is not None and overrides.values == {}


def test_a_late_teardown_of_the_unlabelled_preview_spares_the_relabelled_one(
    platform: Platform,
) -> None:
    """arq delivers at least once: the unlabel's teardown job may run again (or late) after
    the label is back, and must not take the new revision down."""
    labelled_repository(platform)
    [first] = platform.label_event("labeled", 7).start_revisions
    platform.pipeline.run(first)
    platform.label_event("unlabeled", 7)
    [again] = platform.label_event("labeled", 7).start_revisions
    preview = platform.preview_deployment(7)

    late = WorkOrder("the unlabel's teardown, again", teardowns=[TeardownOrder(preview.id, True)])
    platform.carry_out(late)

    assert platform.pipeline.run(again) is RevisionState.live
    assert platform.router.upstreams(PREVIEW_HOST) is not None
    assert platform.preview_deployment(7).removed_at is None
