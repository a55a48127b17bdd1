"""A preview's `[previews] idle_ttl`: unused that long (no request through the router, no trace),
it is removed as closing its pull request removes it, the comment says so and how to bring it
back, and a new commit or the preview label put on the pull request does. The rules are pure
(`preview_removal_at`, `decide`), tested alone first; then the whole path over the fakes, the
router's requests counted by the metrics sampler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.access.tokens import Caller
from app.deployments.idle import IdleRules, preview_removal_at
from app.deployments.previews import PreviewSettings, Verdict, decide, removed_for_idleness
from app.deployments.usage import preview_removal
from app.kernel.models import Database, Deployment, RevisionState
from manifests.config import describe_idle_ttl, idle_ttl_seconds, parse_repository_config
from manifests.errors import ConfigError
from tests.unit.world import DOCKERFILE, Platform

DAY = 1000.0
RULES = IdleRules(day_seconds=DAY, notice_days=7, delete_days=28)
PREVIEW_HOST = "pr-7--web.localhost"
TTL_TOML = '[previews]\nidle_ttl = "3d"\n'
ALICE = Caller(name="alice", read_only=False)
NOON = datetime(2026, 12, 7, 12, tzinfo=UTC)


# -- the rule, alone -----------------------------------------------------------------------------
def test_a_preview_is_removed_its_ttl_after_its_last_use() -> None:
    assert preview_removal_at(ttl_seconds=30, last_used_at=NOON) == NOON + timedelta(seconds=30)
    assert preview_removal_at(ttl_seconds=None, last_used_at=NOON) is None
    assert preview_removal_at(ttl_seconds=30, last_used_at=NOON, keep=True) is None


def test_days_are_the_idle_rules_days_and_seconds_are_the_clocks() -> None:
    assert RULES.ttl_seconds("3d") == 3 * DAY
    assert RULES.ttl_seconds("30s") == 30
    assert idle_ttl_seconds("3d") == 3 * 86400
    assert idle_ttl_seconds("2h") == 7200 and idle_ttl_seconds("5m") == 300
    assert RULES.ttl_seconds(None) is None
    assert describe_idle_ttl("3d") == "3 days" and describe_idle_ttl("1h") == "1 hour"


# -- slipway.toml ------------------------------------------------------------------------------
def test_idle_ttl_parses_and_is_off_by_default() -> None:
    assert parse_repository_config("").previews.idle_ttl is None
    assert parse_repository_config(TTL_TOML).previews.idle_ttl == "3d"
    assert parse_repository_config('[previews]\nidle_ttl = "30s"\n').previews.idle_ttl == "30s"


@pytest.mark.parametrize("value", ['"3"', "3", '"0d"', '"3 days"', '"-1s"', '"1w"', '""'])
def test_a_bad_idle_ttl_is_reported_on_its_line(value: str) -> None:
    text = f'[build]\ncontext = "."\n\n[previews]\nenabled = true\nidle_ttl = {value}\n'

    with pytest.raises(ConfigError) as raised:
        parse_repository_config(text)

    [annotation] = raised.value.annotations
    assert annotation.start_line == 6
    assert "previews.idle_ttl" in annotation.message
    assert '"3d"' in annotation.message and '"30s"' in annotation.message


def test_an_idle_ttl_of_centuries_is_refused() -> None:
    with pytest.raises(ConfigError, match="longer than 3650 days"):
        parse_repository_config('[previews]\nidle_ttl = "9999d"\n')


# -- the whole path ------------------------------------------------------------------------------
@pytest.fixture
def idle(platform: Platform) -> Platform:
    platform.idle = RULES
    platform.__post_init__()
    return platform


def days_later(platform: Platform, days: float) -> None:
    platform.clock.now += timedelta(seconds=DAY * days)


def live_preview(platform: Platform, files: dict[str, str]) -> Deployment:
    [revision] = platform.pull_request_event("opened", 7, platform.commit(files)).start_revisions
    assert platform.pipeline.run(revision) is RevisionState.live
    platform.metrics.sample()  # the worker's first read of the router: the baseline
    platform.usage.tick()  # the rules' first look: counted from now
    return platform.preview_deployment(7)


def requests(platform: Platform, count: int = 1) -> None:
    """Requests through the router to the preview, then the sampler's next step."""
    platform.router.serve(PREVIEW_HOST, count)
    platform.metrics.sample()


def database_of(platform: Platform, deployment_id: str) -> str:
    with platform.sessions() as session:
        database = session.get(Database, deployment_id)
        assert database is not None
        return database.name


def test_unused_past_its_ttl_it_is_removed_a_request_keeps_it_a_commit_brings_it_back(
    idle: Platform,
) -> None:
    preview = live_preview(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    assert preview.preview_idle_ttl == "3d"
    database = database_of(idle, preview.id)
    counted_from = preview.last_used_at
    assert counted_from is not None
    assert preview_removal(preview, RULES, idle.clock.now) == counted_from + timedelta(
        seconds=3 * DAY
    )

    # A request before the TTL: kept, counted again from the request.
    days_later(idle, 2.5)
    requests(idle)
    assert idle.usage.tick().used == 1
    days_later(idle, 2.5)  # 5 "days" since it went live, 2.5 since the request
    assert idle.usage.tick().removed == []
    assert idle.router.upstreams(PREVIEW_HOST) is not None

    # Unused for the whole TTL: removed as on close; the pull request stays open.
    days_later(idle, 0.6)
    report = idle.usage.tick()
    assert report.removed == [preview.id]
    for order in report.orders:
        idle.carry_out(order)
    assert idle.router.upstreams(PREVIEW_HOST) is None  # 404
    assert database not in idle.databases.databases
    assert idle.preview_deployment(7).removed_at is not None
    [body] = idle.comments_on(7)
    assert "🗑️ **Removed**" in body
    assert "after 3 days without a request or a trace" in body
    assert '`idle_ttl = "3d"`' in body and "a new commit on the pull request" in body
    assert "Reopening" not in body
    assert idle.usage.tick().removed == []  # once

    # A new commit brings it back at the same address, counted afresh.
    head = idle.commit({"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML, "v": "2"})
    [again] = idle.pull_request_event("synchronize", 7, head).start_revisions
    assert idle.pipeline.run(again) is RevisionState.live
    assert idle.router.upstreams(PREVIEW_HOST) is not None
    assert idle.usage.tick().removed == []
    days_later(idle, 2.9)
    assert idle.usage.tick().removed == []
    [body] = idle.comments_on(7)
    assert "✅ Live" in body


def test_without_idle_ttl_a_preview_stays_however_long_unused(idle: Platform) -> None:
    preview = live_preview(idle, {"Dockerfile": DOCKERFILE})
    assert preview_removal(preview, RULES, idle.clock.now) is None
    days_later(idle, 100)
    report = idle.usage.tick()
    assert report.removed == report.deleted == report.noticed == []
    assert idle.router.upstreams(PREVIEW_HOST) is not None


def test_keep_exempts_a_preview_from_its_ttl(idle: Platform) -> None:
    preview = live_preview(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    idle.operations.keep(preview.id, True, ALICE)
    days_later(idle, 10)
    assert idle.usage.tick().removed == []
    assert idle.router.upstreams(PREVIEW_HOST) is not None


def test_the_ttl_follows_the_newest_commits_slipway_toml(idle: Platform) -> None:
    live_preview(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    head = idle.commit({"Dockerfile": DOCKERFILE, "v": "2"})  # idle_ttl taken out
    [second] = idle.pull_request_event("synchronize", 7, head).start_revisions
    assert idle.pipeline.run(second) is RevisionState.live
    assert idle.preview_deployment(7).preview_idle_ttl is None
    days_later(idle, 10)
    assert idle.usage.tick().removed == []


# -- a label brings back a preview removed for going unused -------------------------------------
LABELLED = ["bug", "preview"]


def test_the_label_brings_back_an_idle_removed_every_pr_preview() -> None:
    decision = decide(
        PreviewSettings(),
        action="labeled",
        labels=LABELLED,
        changed_label="preview",
        idle_removed=True,
    )

    assert decision.verdict is Verdict.build
    assert "unused" in decision.why and '"preview" label' in decision.why


def test_on_a_live_every_pr_preview_the_label_changes_nothing() -> None:
    decision = decide(PreviewSettings(), action="labeled", labels=LABELLED, changed_label="preview")

    assert decision.verdict is Verdict.ignore


@pytest.mark.parametrize(
    ("action", "changed"), [("unlabeled", "preview"), ("labeled", "bug")], ids=["off", "other"]
)
def test_only_the_configured_label_put_on_brings_it_back(action: str, changed: str) -> None:
    decision = decide(
        PreviewSettings(), action=action, labels=LABELLED, changed_label=changed, idle_removed=True
    )

    assert decision.verdict is Verdict.ignore


def test_the_configured_label_brings_it_back_in_any_case() -> None:
    settings = PreviewSettings(label="Deploy Me")

    decision = decide(
        settings,
        action="labeled",
        labels=["deploy me"],
        changed_label="DEPLOY ME",
        idle_removed=True,
    )

    assert decision.verdict is Verdict.build


def test_with_the_label_trigger_the_label_brings_it_back_too() -> None:
    settings = PreviewSettings(by_label=True)

    decision = decide(
        settings, action="labeled", labels=LABELLED, changed_label="preview", idle_removed=True
    )

    assert decision.verdict is Verdict.build


def test_previews_turned_off_win_over_the_label_that_would_bring_one_back() -> None:
    settings = PreviewSettings(enabled=False)

    decision = decide(
        settings, action="labeled", labels=LABELLED, changed_label="preview", idle_removed=True
    )

    assert decision.verdict is Verdict.remove


def removed_preview(
    removed_at: datetime | None = None,
    idle_removed_at: datetime | None = None,
    deleted_at: datetime | None = None,
) -> Deployment:
    return Deployment(
        repository_id=1,
        slug="pr-7--web",
        environment="pr-7",
        branch="feature-7",
        pull_request_number=7,
        removed_at=removed_at,
        idle_removed_at=idle_removed_at,
        deleted_at=deleted_at,
    )


def test_only_a_preview_the_usage_tick_removed_and_nobody_deleted_counts_as_idle_removed() -> None:
    assert removed_for_idleness(removed_preview(removed_at=NOON, idle_removed_at=NOON))
    assert not removed_for_idleness(None)
    assert not removed_for_idleness(removed_preview())  # live
    assert not removed_for_idleness(removed_preview(removed_at=NOON))  # closed, unlabelled
    assert not removed_for_idleness(
        removed_preview(removed_at=NOON, idle_removed_at=NOON, deleted_at=NOON)
    )


def removed_for_being_idle(platform: Platform, files: dict[str, str]) -> Deployment:
    """A live preview of pull request #7, then unused for its whole TTL: removed."""
    live_preview(platform, files)
    days_later(platform, 3.1)
    report = platform.usage.tick()
    assert len(report.removed) == 1
    for order in report.orders:
        platform.carry_out(order)
    assert platform.router.upstreams(PREVIEW_HOST) is None
    return platform.preview_deployment(7)


def test_putting_the_label_on_brings_back_an_idle_removed_preview(idle: Platform) -> None:
    preview = removed_for_being_idle(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    [body] = idle.comments_on(7)
    assert "🗑️ **Removed**" in body
    assert "a new commit on the pull request deploys a new one" in body
    assert "adding the `preview` label to it" in body

    [again] = idle.label_event("labeled", 7).start_revisions

    assert (
        idle.revision(again).commit_sha
        == idle.github.pull_request(idle.full_name, 7)["head"]["sha"]
    )
    assert idle.pipeline.run(again) is RevisionState.live
    assert idle.preview_deployment(7).slug == preview.slug
    assert idle.router.upstreams(PREVIEW_HOST) is not None
    [body] = idle.comments_on(7)
    assert "✅ Live" in body and "Removed" not in body
    # Counted afresh, and the label on it changes nothing while it is live.
    assert idle.usage.tick().removed == []
    assert idle.label_event("unlabeled", 7).teardowns == []
    assert idle.label_event("labeled", 7).start_revisions == []
    # Unused for its TTL again: removed again, and the label (taken off and put on) again
    # brings it back.
    days_later(idle, 3.1)
    for order in idle.usage.tick().orders:
        idle.carry_out(order)
    assert idle.router.upstreams(PREVIEW_HOST) is None
    idle.label_event("unlabeled", 7)
    [third] = idle.label_event("labeled", 7).start_revisions
    assert third != again
    assert idle.pipeline.run(third) is RevisionState.live


def test_on_a_live_preview_the_label_makes_nothing_new(idle: Platform) -> None:
    live_preview(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    [before] = idle.comments_on(7)

    outcome = idle.label_event("labeled", 7)

    assert outcome.start_revisions == outcome.announce_revisions == outcome.comments == []
    assert outcome.teardowns == []
    assert idle.comments_on(7) == [before]


def test_on_a_closed_pull_request_the_label_brings_nothing_back(idle: Platform) -> None:
    removed_for_being_idle(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    head = idle.github.pull_request(idle.full_name, 7)["head"]["sha"]
    idle.pull_request_event("closed", 7, head)

    outcome = idle.label_event("labeled", 7)

    assert outcome.start_revisions == outcome.announce_revisions == []
    assert idle.router.upstreams(PREVIEW_HOST) is None
    assert idle.preview_deployment(7).removed_at is not None
    [body] = idle.comments_on(7)
    assert "Reopening the pull request deploys a new one" in body


def test_only_the_configured_label_brings_it_back_and_the_comment_names_it(
    idle: Platform,
) -> None:
    toml = '[previews]\nidle_ttl = "3d"\nlabel = "deploy-me"\n'
    removed_for_being_idle(idle, {"Dockerfile": DOCKERFILE, "slipway.toml": toml})
    [body] = idle.comments_on(7)
    assert "adding the `deploy-me` label to it" in body

    assert idle.label_event("labeled", 7).start_revisions == []  # "preview"
    [again] = idle.label_event("labeled", 7, "Deploy-Me").start_revisions
    assert idle.pipeline.run(again) is RevisionState.live


def test_with_the_label_trigger_taking_the_label_off_and_on_brings_it_back(
    idle: Platform,
) -> None:
    toml = '[previews]\nidle_ttl = "3d"\ntrigger = "label"\n'
    head = idle.commit({"Dockerfile": DOCKERFILE, "slipway.toml": toml})
    assert idle.pull_request_event("opened", 7, head).start_revisions == []
    [first] = idle.label_event("labeled", 7).start_revisions
    assert idle.pipeline.run(first) is RevisionState.live
    idle.metrics.sample()
    idle.usage.tick()
    days_later(idle, 3.1)
    for order in idle.usage.tick().orders:
        idle.carry_out(order)
    assert idle.router.upstreams(PREVIEW_HOST) is None

    assert idle.label_event("unlabeled", 7).start_revisions == []
    [again] = idle.label_event("labeled", 7).start_revisions

    assert idle.pipeline.run(again) is RevisionState.live
    assert idle.router.upstreams(PREVIEW_HOST) is not None


def test_a_forks_preview_brought_back_by_the_label_waits_for_approval_again(
    idle: Platform,
) -> None:
    head = idle.commit({"Dockerfile": DOCKERFILE, "slipway.toml": TTL_TOML})
    [waiting] = idle.pull_request_event("opened", 7, head, fork="stranger/web").announce_revisions
    idle.set_permission("maintainer", "maintain")
    idle.press(waiting, "requested_action", "maintainer", "deploy-preview")
    assert idle.pipeline.run(waiting) is RevisionState.live
    idle.metrics.sample()
    idle.usage.tick()
    days_later(idle, 3.1)
    for order in idle.usage.tick().orders:
        idle.carry_out(order)
    assert idle.router.upstreams(PREVIEW_HOST) is None

    outcome = idle.label_event("labeled", 7)

    assert outcome.start_revisions == []
    [again] = outcome.announce_revisions
    assert again != waiting
    assert idle.pipeline.run(again) is RevisionState.queued
    assert idle.router.upstreams(PREVIEW_HOST) is None
    assert "✋ Waiting for approval" in idle.comments_on(7)[0]
