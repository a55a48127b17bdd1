"""The pull request's Slipway comment: its wording for every state, and that it stays one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from app.feedback.comments import MARKER, CommentRevision, CommentView, render_preview_comment
from app.kernel.models import RevisionState
from tests.unit.world import Platform

URL = "http://pr-7--web.localhost:8000/"
NOW = datetime(2026, 12, 1, 19, 30, 5, tzinfo=UTC)


def revision(state: RevisionState, **changes: object) -> CommentRevision:
    values: dict[str, object] = {
        "number": 3,
        "state": state,
        "commit_sha": "abc1234" + "0" * 33,
        "error": None,
        "revision_url": "http://slipway.test/api/revisions/rev_3",
        "log_url": "http://slipway.test/api/revisions/rev_3/logs",
    }
    values.update(changes)
    return CommentRevision(**values)  # type: ignore[arg-type]


def view(latest: CommentRevision | None, **changes: object) -> CommentView:
    values: dict[str, object] = {
        "number": 7,
        "url": URL,
        "hostname": "pr-7--web.localhost",
        "updated_at": NOW,
        "latest": latest,
        "serving": None,
    }
    values.update(changes)
    return CommentView(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "headline"),
    [
        (RevisionState.queued, "⏳ Queued"),
        (RevisionState.building, "🔨 Building"),
        (RevisionState.deploying, "🚀 Deploying"),
        (RevisionState.live, "✅ Live"),
    ],
)
def test_the_comment_shows_the_url_state_commit_links_and_time(
    state: RevisionState, headline: str
) -> None:
    body = render_preview_comment(view(revision(state)))

    assert body.startswith(MARKER)
    assert f"**Slipway preview** for #7 · {headline}" in body
    assert f"| **Preview** | {URL} |" in body
    assert "| **Commit** | `abc1234` |" in body
    assert "[details](http://slipway.test/api/revisions/rev_3)" in body
    assert "[build log](http://slipway.test/api/revisions/rev_3/logs)" in body
    assert "2026-12-01 19:30:05 UTC" in body


def test_a_traced_langgraph_preview_links_its_project_and_studio() -> None:
    text = render_preview_comment(
        view(
            revision(RevisionState.live),
            traces_url="https://smith.langchain.com/o/t/projects/p/1",
            studio_url="https://smith.langchain.com/studio/?baseUrl=http://pr-5.localhost/",
        )
    )
    assert (
        "| **Traces** | [LangSmith project](https://smith.langchain.com/o/t/projects/p/1) |" in text
    )
    assert "[Open in Studio](https://smith.langchain.com/studio/?baseUrl=" in text
    assert "Traces" not in render_preview_comment(view(revision(RevisionState.live)))


def test_a_failed_revision_says_why_in_one_line_and_what_keeps_serving() -> None:
    failed = revision(
        RevisionState.failed, error="the app exited with code 3 before answering\nTraceback..."
    )
    serving = revision(RevisionState.live, number=2, commit_sha="def5678" + "0" * 33)

    body = render_preview_comment(view(failed, serving=serving))

    assert "❌ Failed" in body
    assert "**Why:** the app exited with code 3 before answering\n" in body
    assert "Traceback" not in body
    assert "Revision #2 (`def5678`) keeps serving the preview." in body


def test_a_fork_commit_waiting_for_approval_says_who_must_do_what() -> None:
    body = render_preview_comment(view(revision(RevisionState.queued, waiting_for_approval=True)))

    assert "✋ Waiting for approval" in body
    assert "comes from a fork" in body
    assert "**Deploy preview**" in body


def test_a_note_is_shown_with_the_state() -> None:
    body = render_preview_comment(
        view(revision(RevisionState.queued), note="Waiting for a build slot: 2 builds run.")
    )

    assert "Waiting for a build slot: 2 builds run." in body


def test_a_removed_preview_says_so_and_links_to_nothing_live() -> None:
    body = render_preview_comment(
        view(
            revision(RevisionState.superseded),
            removed=True,
            removed_because="when the pull request was merged",
            closed=True,
        )
    )

    assert "🗑️ **Removed**" in body
    assert "was removed when the pull request was merged" in body
    assert URL not in body
    assert "http://" not in body


# -- the service: one comment, however the syncs interleave ---------------------------------
def test_the_first_sync_creates_the_comment_and_later_ones_edit_it(platform: Platform) -> None:
    pull_request_id = platform.open_pull_request(7)

    platform.comments.sync(pull_request_id)
    platform.comments.deployment_changed(platform.preview_deployment(7).id)
    platform.comments.sync(pull_request_id)

    [comment] = platform.github.comments(platform.full_name, 7)
    assert MARKER in comment["body"]
    edit = ("PATCH", f"/repos/{platform.full_name}/issues/comments/{comment['id']}")
    assert edit in platform.github.requests


def test_concurrent_syncs_make_one_comment(platform: Platform) -> None:
    pull_request_id = platform.open_pull_request(7)
    platform.comments.use_queue(lambda _id: None)
    barrier = threading.Barrier(4)

    def sync() -> None:
        barrier.wait()
        platform.comments.deployment_changed(platform.preview_deployment(7).id)
        platform.comments.sync(pull_request_id)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(platform.comments_on(7)) == 1
    assert platform.comment_is_current(pull_request_id)


def test_a_lost_comment_id_finds_the_comment_by_its_marker(platform: Platform) -> None:
    pull_request_id = platform.open_pull_request(7)
    platform.comments.sync(pull_request_id)
    platform.forget_comment_id(pull_request_id)

    platform.comments.deployment_changed(platform.preview_deployment(7).id)

    assert len(platform.comments_on(7)) == 1


def test_a_comment_a_user_deleted_is_made_again(platform: Platform) -> None:
    pull_request_id = platform.open_pull_request(7)
    platform.comments.sync(pull_request_id)
    [comment] = platform.github.comments(platform.full_name, 7)
    platform.github.delete_comment(platform.full_name, comment["id"])

    platform.comments.deployment_changed(platform.preview_deployment(7).id)

    assert len(platform.comments_on(7)) == 1
    platform.expect_refusals(f"issues/comments/{comment['id']}: 404")
