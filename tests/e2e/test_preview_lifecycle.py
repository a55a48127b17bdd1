"""A repository's choices about its previews, end to end: a preview only while its pull request
carries a label, env that only previews get (on the shared platform), and a preview removed
once unused for its `idle_ttl` and brought back by a commit or its label (on a platform of its
own, whose idle-rule days last seconds).

Real Docker, BuildKit, Postgres and Caddy; GitHub is the fake, labelled the way GitHub labels
(the pull request changes first, then the `labeled`/`unlabeled` delivery).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pull_requests import PullRequests, connects
from tests.support.apps import notes_app, static_site
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA, pull_request_payload
from tests.support.images import DOCKER
from tests.support.platform import (
    INSTALLATION_ID,
    RepoFactory,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

LABEL_TOML = '[previews]\ntrigger = "label"\n'
DAY_SECONDS = 7.0
"""A "day" of the idle rules on the idle-TTL platform: `idle_ttl = "4d"` is 28 s."""
TTL_DAYS = 4
"""Long enough beside the metrics sampler's 10 s step for a request made a day after the first
look to be counted well before the first removal time (by ~18 s of the 28)."""
TTL_TOML = f'[previews]\nidle_ttl = "{TTL_DAYS}d"\n'
SHORT_TTL_TOML = '[previews]\nidle_ttl = "2d"\n'
"""The second commit's: 14 s, so the preview goes a second time soon after it is back."""
SECRET = "sk-preview-4f1c9e7a2b"
"""A preview-only secret: in the preview's container, and nowhere else."""


def outcome_of(platform: RunningPlatform, delivery_id: str) -> str | None:
    """What the platform made of a delivery, once it did (its log says the same)."""
    with sqlite3.connect(platform.data_dir / "slipway.db") as db:
        row = db.execute(
            "SELECT outcome FROM deliveries WHERE id = ? AND processed_at IS NOT NULL",
            (delivery_id,),
        ).fetchone()
    return None if row is None else str(row[0])


def label(prs: PullRequests, action: str, number: int, name: str = "preview") -> None:
    """Put the label on (`labeled`) or take it off (`unlabeled`), then GitHub's delivery."""
    if action == "labeled":
        changed = prs.github.label_pull_request(prs.full_name, number, name)
    else:
        changed = prs.github.unlabel_pull_request(prs.full_name, number, name)
    payload = pull_request_payload(
        action,
        prs.repository,
        INSTALLATION_ID,
        prs.github.pull_request(prs.full_name, number),
        label=changed,
    )
    response = prs.platform.send("pull_request", payload)
    assert response.status_code == 202, response.text


def previews_of(platform: RunningPlatform, full_name: str, number: int) -> list[dict[str, Any]]:
    return [
        d
        for d in platform.api("/api/deployments")
        if d["repository"] == full_name and d["pull_request"] == number
    ]


def serves(platform: RunningPlatform, slug: str, text: str) -> bool:
    response = platform.request(slug)
    return response.status_code == 200 and response.text == text


def containers_of(deployment_id: str) -> list[str]:
    return subprocess.run(
        [DOCKER, "ps", "-aq", "--filter", f"label=dev.slipway.deployment={deployment_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_a_preview_follows_its_label_on_off_and_on_again(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("labelled", static_site("main"))
    prs = PullRequests(platform, github, repo, repository)
    full_name = prs.full_name

    # opened without the label: nothing, not even a comment.
    repo.checkout("feature-1", create=True)
    head = repo.commit({**static_site("one"), "slipway.toml": LABEL_TOML}, "pull request 1")
    repo.checkout("main")
    github.add_pull_request(full_name, 1, head_sha=head, head_ref="feature-1")
    opened = f"opened-{uuid.uuid4()}"
    prs.send("opened", 1, delivery_id=opened)
    said = wait_for("the opened delivery to be handled", lambda: outcome_of(platform, opened), 60)
    assert 'no "preview" label' in json.loads(said)["summary"]
    assert previews_of(platform, full_name, 1) == []
    assert prs.comments(1) == []

    # labelled: built, commented, served.
    started = time.monotonic()
    label(prs, "labeled", 1)
    preview = prs.preview(1)
    slug = preview["slug"]
    url = f"http://{slug}.localhost:{platform.router_port}/"
    first = prs.settled(1, head)
    assert first["state"] == "live", first["error"]
    prs.comment_saying(1, "✅ Live", url)
    assert serves(platform, slug, "one\n")
    labelled_seconds = time.monotonic() - started
    uri = platform.database_uri(preview["id"])
    assert connects(uri)

    # another label changes nothing.
    label(prs, "labeled", 1, "bug")
    assert serves(platform, slug, "one\n")

    # unlabelled: removed as on close (404, database and containers gone); the comment says so.
    started = time.monotonic()
    label(prs, "unlabeled", 1)
    wait_for(
        "the router to answer 404 for the unlabelled preview",
        lambda: platform.request(slug).status_code == 404,
        60,
    )
    unlabelled_seconds = time.monotonic() - started
    wait_for("the preview's database to be gone", lambda: not connects(uri), 60)
    wait_for("no container of the preview", lambda: not containers_of(preview["id"]), 60)
    body = prs.comment_saying(1, "🗑️ **Removed**", "`preview` label was taken off")
    assert url not in body
    assert github.pull_request(full_name, 1)["state"] == "open"

    # labelled again: the same address serves again, a new revision with a new database.
    label(prs, "labeled", 1)
    again = wait_for(
        "a second revision of the preview",
        lambda: [
            r
            for r in platform.api(f"/api/deployments/{preview['id']}/revisions")
            if r["id"] != first["id"]
        ],
        60,
    )[0]
    settled = platform.wait_state(again["id"], {"live", "failed"})
    assert settled["state"] == "live", settled["error"]
    wait_for("the preview to serve again", lambda: serves(platform, slug, "one\n"), 60)
    prs.comment_saying(1, "✅ Live", url)
    assert [p["slug"] for p in previews_of(platform, full_name, 1)] == [slug]
    assert len(prs.comments(1)) == 1
    assert github.errors == [], github.errors
    print(
        f"labelled → serves: {labelled_seconds:.1f} s; unlabelled → 404: {unlabelled_seconds:.1f} s"
    )


def test_a_preview_scoped_secret_reaches_the_preview_and_not_production(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("scoped", notes_app("main"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    production, _ = platform.settle(repository["full_name"], repo.head)
    slug, path = production["slug"], f"/api/deployments/{production['id']}/env"
    changed = platform.call("PATCH", path, json={"set": {"MODE": "live"}})
    assert changed.status_code == 202, changed.text
    live = platform.wait_state(changed.json()["revision"]["id"], {"live", "failed"})
    assert live["state"] == "live", live["error"]

    # scope "previews": accepted, no revision of production, listed by scope, value hidden.
    scoped = platform.call(
        "PATCH",
        path,
        json={"scope": "previews", "set": {"MODE": "sandbox"}, "secrets": {"API_KEY": SECRET}},
    )
    assert scoped.status_code == 202, scoped.text
    assert scoped.json()["revision"] is None
    assert "next revision" in scoped.json()["message"]
    listed = platform.api(path)
    assert listed["vars"] == {"MODE": "live"} and listed["secrets"] == []
    assert listed["previews"] == {"vars": {"MODE": "sandbox"}, "secrets": ["API_KEY"]}
    newest = platform.api(f"/api/deployments/{production['id']}/revisions")[0]
    assert newest["id"] == live["id"]  # newest first: no revision of production was made

    # the preview gets the override and the secret over production's env.
    prs = PullRequests(platform, github, repo, repository)
    head = prs.open(1, notes_app("preview"))
    preview = prs.preview(1)
    revision = prs.settled(1, head)
    assert revision["state"] == "live", revision["error"]
    assert platform.request(preview["slug"], "/env/API_KEY").text == SECRET
    assert platform.request(preview["slug"], "/env/MODE").text == "sandbox"

    # production's containers have neither.
    assert platform.request(slug, "/env/API_KEY").status_code == 404
    assert platform.request(slug, "/env/MODE").text == "live"
    production_containers = containers_of(production["id"])
    assert production_containers
    inspected = subprocess.run(
        [DOCKER, "inspect", *production_containers], capture_output=True, text=True, check=True
    ).stdout
    assert SECRET not in inspected

    # the value is shown nowhere else.
    shown = [
        scoped.text,
        json.dumps(listed),
        json.dumps(platform.api(f"/api/deployments/{preview['id']}/revisions")),
        platform.logs(revision["id"]),
        json.dumps([run.history for run in github.check_runs(prs.full_name)]),
        "\n".join(prs.comments(1)),
        platform.log_path.read_text(),
    ]
    for text in shown:
        assert SECRET not in text
    assert github.errors == [], github.errors


@pytest.fixture(scope="module")
def ttl_platform(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    """Days in seconds (the usage tick then runs every second); the deployment idle rules
    off, so only the previews' idle_ttl acts."""
    running = start_platform(
        tmp_path_factory.mktemp("ttl-platform"),
        github,
        health_timeout_seconds="30",
        idle_day_seconds=str(DAY_SECONDS),
        idle_notice_days="0",
        idle_delete_days="0",
    )
    yield running
    running.stop_and_clean()


def idle_of(platform: RunningPlatform, deployment_id: str) -> dict[str, Any]:
    """The deployment's `idle` in the API (read without a request through the router, which
    would be a use)."""
    return dict(platform.api(f"/api/deployments/{deployment_id}")["idle"] or {})


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_an_unused_preview_goes_after_its_idle_ttl_a_commit_or_the_label_brings_it_back(
    ttl_platform: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    """A request keeps it; unused for its TTL it goes; a commit brings it back; unused again
    it goes again, and the `preview` label put on the pull request brings it back (the
    repository has the default trigger, every pull request)."""
    platform = ttl_platform
    repo, repository = connect_repository(platform, github, tmp_path / "ttl", static_site("main"))
    prs = PullRequests(platform, github, repo, repository)
    head = prs.open(1, {**static_site("one"), "slipway.toml": TTL_TOML})
    preview = prs.preview(1)
    slug, status_path = preview["slug"], f"/api/deployments/{preview['id']}"
    url = f"http://{slug}.localhost:{platform.router_port}/"
    first = prs.settled(1, head)
    assert first["state"] == "live", first["error"]
    prs.comment_saying(1, "✅ Live", url)
    uri = platform.database_uri(preview["id"])
    assert connects(uri)

    # The API shows when it would go: counted from the usage tick's first look at it live.
    shown = wait_for(
        "the usage tick to count the live preview",
        lambda: (i := idle_of(platform, preview["id"]))["last_used_at"] and i,
        30,
    )
    assert shown["idle_ttl"] == f"{TTL_DAYS}d" and shown["delete_at"] is None
    unused_until = moment(shown["remove_at"])
    first_look = moment(shown["last_used_at"])
    assert (unused_until - first_look).total_seconds() == TTL_DAYS * DAY_SECONDS

    # A request through the router before the TTL keeps it: counted again from the request.
    # Made a day after the first look, so the removal moves at least a day later and the check
    # below falls between the two times, not on the edge of the second.
    wait_for(
        "a day since the first look",
        lambda: datetime.now(UTC) > first_look + timedelta(seconds=DAY_SECONDS),
        DAY_SECONDS + 10,
        every=0.5,
    )
    assert platform.request(slug).text == "one\n"
    used = wait_for(  # the metrics sampler's next step (10 s), then the next usage tick
        "the request to be seen as a use",
        lambda: (
            (i := idle_of(platform, preview["id"]))["remove_at"]
            and moment(i["remove_at"]) > unused_until
            and i
        ),
        45,
    )
    kept_until = moment(used["remove_at"])
    assert kept_until - unused_until >= timedelta(seconds=DAY_SECONDS)
    between = unused_until + (kept_until - unused_until) / 2
    wait_for(  # the usage tick has run (every second) several times since the first time
        "the first removal time to pass",
        lambda: datetime.now(UTC) > between,
        TTL_DAYS * DAY_SECONDS + 10,
        every=0.5,
    )
    assert platform.api(status_path)["status"] == "active"
    assert containers_of(preview["id"])

    # Unused for the whole TTL since: removed as on close (404, database and containers gone);
    # the comment says why and how to bring it back; the pull request stays open.
    def removed_at() -> datetime | None:
        gone = platform.api(status_path)["status"] in {"removing", "removed"}
        return datetime.now(UTC) if gone else None

    removed = wait_for(
        "the unused preview to be removed", removed_at, TTL_DAYS * DAY_SECONDS + 30, every=0.5
    )
    assert removed >= kept_until
    assert platform.request(slug).status_code == 404
    wait_for("the preview's database to be gone", lambda: not connects(uri), 60)
    wait_for("no container of the preview", lambda: not containers_of(preview["id"]), 60)
    body = prs.comment_saying(
        1,
        "🗑️ **Removed**",
        f"after {TTL_DAYS} days without a request or a trace",
        f'`idle_ttl = "{TTL_DAYS}d"`',
    )
    assert "a new commit on the pull request deploys a new one" in body and url not in body
    assert "adding the `preview` label to it" in body
    assert github.pull_request(prs.full_name, 1)["state"] == "open"

    # A new commit brings it back at the same address, with a new database, counted afresh
    # (its slipway.toml has a shorter idle_ttl).
    before, after = prs.push(1, {**static_site("two"), "slipway.toml": SHORT_TTL_TOML})
    prs.send("synchronize", 1, before=before)
    again = prs.settled(1, after)
    assert again["state"] == "live", again["error"]
    assert serves(platform, slug, "two\n")
    prs.comment_saying(1, "✅ Live", url)
    back = wait_for(
        "the preview to be counted again",
        lambda: (i := idle_of(platform, preview["id"]))["last_used_at"] and i,
        30,
    )
    assert moment(back["remove_at"]) > removed and back["idle_ttl"] == "2d"
    assert connects(platform.database_uri(preview["id"]))

    # Unused for its 2 days: removed again. The label brings it back, the head commit built
    # again at the same address, and the comment shows it live.
    wait_for(
        "the preview to be removed a second time",
        lambda: platform.api(status_path)["status"] in {"removing", "removed"},
        2 * DAY_SECONDS + 30,
        every=0.5,
    )
    prs.comment_saying(1, "🗑️ **Removed**", "adding the `preview` label to it")
    started = time.monotonic()
    label(prs, "labeled", 1)
    third = wait_for(
        "a revision the label asked for",
        lambda: [
            r
            for r in platform.api(f"/api/deployments/{preview['id']}/revisions")
            if r["id"] not in {first["id"], again["id"]}
        ],
        60,
    )[0]
    assert third["commit_sha"] == after
    settled = platform.wait_state(third["id"], {"live", "failed"})
    assert settled["state"] == "live", settled["error"]
    wait_for("the preview to serve again", lambda: serves(platform, slug, "two\n"), 60)
    labelled_seconds = time.monotonic() - started
    prs.comment_saying(1, "✅ Live", url)
    assert [p["slug"] for p in previews_of(platform, prs.full_name, 1)] == [slug]
    assert len(prs.comments(1)) == 1
    assert github.errors == [], github.errors
    print(
        f"removed {(removed - kept_until).total_seconds():.1f} s after its idle_ttl ran out; "
        f"labelled → serves again: {labelled_seconds:.1f} s"
    )
