"""Pull-request previews end to end: `slipway up`, real Docker, BuildKit, Postgres and Caddy.

A pull request gets a comment with its preview URL, the URL serves the head commit from its own
database, new commits replace it in place, and closing it leaves nothing behind — while
production keeps serving throughout.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from typing import Any

import httpx

from tests.e2e.pull_requests import PullRequests, connects
from tests.support.apps import notes_app, static_site
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA, check_run_payload, pull_request_payload
from tests.support.images import DOCKER, network_of
from tests.support.platform import (
    INSTALLATION_ID,
    RepoFactory,
    RunningPlatform,
    wait_for,
)


def serves(platform: RunningPlatform, slug: str, text: str) -> bool:
    try:
        return platform.request(slug).text == text
    except httpx.HTTPError:
        return False


def docker_ids(kind: str, deployment_id: str) -> list[str]:
    command = {
        "containers": ["ps", "-aq"],
        "images": ["images", "-q"],
        "networks": ["network", "ls", "-q"],
    }[kind]
    return subprocess.run(
        [
            DOCKER,
            *command,
            "--filter",
            f"label=dev.slipway.deployment={deployment_id}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def replica_of(revision_id: str) -> str:
    [container] = subprocess.run(
        [DOCKER, "ps", "-q", "--filter", f"label=dev.slipway.revision={revision_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return container


def host_config(revision_id: str) -> dict[str, Any]:
    container = replica_of(revision_id)
    return dict(
        json.loads(
            subprocess.run(
                [DOCKER, "inspect", "-f", "{{json .HostConfig}}", container],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    )


def assert_removed(prs: PullRequests, preview: dict[str, Any], uri: str) -> None:
    platform, github = prs.platform, prs.github
    wait_for(
        "the router to answer 404 for the preview",
        lambda: platform.request(preview["slug"]).status_code == 404,
        60,
    )
    wait_for("the preview's database to be gone", lambda: not connects(uri), 60)
    wait_for("no container of the preview", lambda: not docker_ids("containers", preview["id"]), 60)
    wait_for("no image of the preview", lambda: not docker_ids("images", preview["id"]), 60)
    wait_for("no network of the preview", lambda: not docker_ids("networks", preview["id"]), 60)
    builds = platform.data_dir / "builds"
    revisions = platform.api(f"/api/deployments/{preview['id']}/revisions")
    assert not any((builds / r["id"]).exists() for r in revisions)
    environment = f"pr-{preview['pull_request']}"

    def states() -> list[str | None]:
        return [d.state for d in github.deployments(prs.full_name) if d.environment == environment]

    wait_for(
        f"every GitHub deployment of {environment} to be inactive (states: {states()})",
        lambda: states() and all(state == "inactive" for state in states()),
        60,
    )


def test_a_pull_request_preview_from_open_to_close(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("previewed", notes_app("main"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    production, live = platform.settle(repository["full_name"], repo.head)
    assert live["state"] == "live", live["error"]
    slug = production["slug"]
    assert (
        platform.request(slug, "/notes", "POST", params={"text": "production"}).status_code == 201
    )
    prs = PullRequests(platform, github, repo, repository)

    # opened: a comment with the URL, and the URL serves the head commit from its own database.
    started = time.monotonic()
    head = prs.open(1, notes_app("preview-one"))
    preview = prs.preview(1)
    assert preview["slug"] == f"pr-1--{slug}"
    assert preview["type"] == "development"
    url = f"http://pr-1--{slug}.localhost:{platform.router_port}/"
    prs.comment_saying(1, url)
    revision1 = prs.settled(1, head)
    assert revision1["state"] == "live", revision1["error"]
    assert platform.request(preview["slug"]).text == f"version=preview-one commit={head}\n"
    opened_seconds = time.monotonic() - started
    assert json.loads(platform.request(preview["slug"], "/notes").text) == []
    platform.request(preview["slug"], "/notes", "POST", params={"text": "preview"})
    assert json.loads(platform.request(slug, "/notes").text) == ["production"]
    assert json.loads(platform.request(preview["slug"], "/notes").text) == ["preview"]
    limits = host_config(revision1["id"])
    assert limits["NanoCpus"] == 1_000_000_000
    assert limits["Memory"] == 1024**3
    assert limits["CapDrop"] == ["ALL"]
    assert network_of(replica_of(revision1["id"])) == f"slipway-net-{preview['id']}"
    assert network_of(replica_of(live["id"])) == f"slipway-net-{production['id']}"
    prs.comment_saying(1, "✅ Live", url, f"`{head[:7]}`")

    # synchronize: the same URL serves the new commit, its data kept, the one comment edited.
    before, head2 = prs.push(1, {"VERSION": "preview-two\n"})
    prs.send("synchronize", 1, before=before)
    revision2 = prs.settled(1, head2)
    assert revision2["state"] == "live", revision2["error"]
    assert platform.request(preview["slug"]).text == f"version=preview-two commit={head2}\n"
    assert json.loads(platform.request(preview["slug"], "/notes").text) == ["preview"]
    assert platform.api(f"/api/revisions/{revision1['id']}")["state"] == "superseded"
    prs.comment_saying(1, "✅ Live", f"`{head2[:7]}`")
    assert len(prs.comments(1)) == 1

    # closed: nothing is left, and production served all along.
    uri = platform.database_uri(preview["id"])
    assert connects(uri)
    prs.close(1, merged=True)
    prs.send("closed", 1)
    assert_removed(prs, preview, uri)
    body = prs.comment_saying(1, "🗑️ **Removed**", "merged")
    assert url not in body
    assert len(prs.comments(1)) == 1
    assert platform.request(slug).text == f"version=main commit={repo.head}\n"
    assert json.loads(platform.request(slug, "/notes").text) == ["production"]
    assert github.errors == [], github.errors
    print(f"opened → preview answers: {opened_seconds:.1f} s")


def test_racing_deliveries_leave_one_comment_and_nothing_behind(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("raced", static_site("main"))
    prs = PullRequests(platform, github, repo, repository)
    head = prs.open(2, static_site("first"), fork=None)
    # A redelivery of the same delivery, and GitHub sending `opened` twice, change nothing.
    prs.send("opened", 2, delivery_id="opened-2")
    prs.send("opened", 2, delivery_id="opened-2")
    first = prs.settled(2, head)
    assert first["state"] == "live", first["error"]
    preview = prs.preview(2)
    revisions = platform.api(f"/api/deployments/{preview['id']}/revisions")
    assert [r["commit_sha"] for r in revisions] == [head]

    # Two synchronize 100 ms apart: the second wins, the first never goes live after it.
    before, second = prs.push(2, static_site("second"))
    prs.send("synchronize", 2, before=before)
    time.sleep(0.1)  # the scenario: two pushes 100 ms apart (not a wait for anything)
    before, third = prs.push(2, static_site("third"))
    prs.send("synchronize", 2, before=before)
    latest = prs.settled(2, third)
    assert latest["state"] == "live", latest["error"]
    wait_for(
        "the preview to serve the third commit",
        lambda: serves(platform, preview["slug"], "third\n"),
        60,
    )
    assert prs.settled(2, second, {"live", "failed", "cancelled", "superseded"})["state"] in {
        "cancelled",
        "superseded",
    }
    assert len(prs.comments(2)) == 1

    # synchronize and closed delivered together.
    uri = platform.database_uri(preview["id"])
    before, _ = prs.push(2, static_site("fourth"))
    sync_payload = pull_request_payload(
        "synchronize",
        repository,
        INSTALLATION_ID,
        github.pull_request(prs.full_name, 2),
        before=before,
    )
    prs.close(2)
    closed_payload = pull_request_payload(
        "closed", repository, INSTALLATION_ID, github.pull_request(prs.full_name, 2)
    )
    threads = [
        threading.Thread(target=platform.send, args=("pull_request", payload))
        for payload in (sync_payload, closed_payload)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert_removed(prs, preview, uri)
    prs.comment_saying(2, "🗑️ **Removed**")
    assert len(prs.comments(2)) == 1
    revisions = platform.api(f"/api/deployments/{preview['id']}/revisions")
    assert all(r["state"] in {"superseded", "cancelled", "failed"} for r in revisions), revisions
    assert github.errors == [], github.errors


def test_a_fork_pull_request_waits_for_a_writer_to_approve_each_commit(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("forked", static_site("main"))
    prs = PullRequests(platform, github, repo, repository)
    github.set_permission(prs.full_name, "reader", "read")
    github.set_permission(prs.full_name, "maintainer", "write")

    head = prs.open(3, static_site("from a fork"), fork="stranger/forked")
    prs.comment_saying(3, "✋ Waiting for approval")
    preview = prs.preview(3)
    [revision] = platform.api(f"/api/deployments/{preview['id']}/revisions")
    assert revision["state"] == "queued" and revision["approval_required"]

    def approval_run() -> Any:
        runs = [r for r in github.check_runs(prs.full_name) if r.head_sha == head]
        return runs[0] if runs and runs[0].conclusion == "action_required" else None

    run = wait_for("the approval check run", approval_run, 30)
    assert [a["identifier"] for a in run.actions] == ["deploy-preview"]

    def press(login: str) -> None:
        payload = check_run_payload(
            "requested_action",
            repository,
            INSTALLATION_ID,
            github.check_run_json(prs.full_name, run.id),
            sender=login,
            requested_action_identifier="deploy-preview",
        )
        assert platform.send("check_run", payload).status_code == 202

    press("reader")
    wait_for(
        "the refusal to show on the check run",
        lambda: "@reader" in str(github.check_runs(prs.full_name)[0].output.get("summary")),
        30,
    )
    assert platform.api(f"/api/revisions/{revision['id']}")["state"] == "queued"
    assert not docker_ids("images", preview["id"])

    press("maintainer")
    built = prs.settled(3, head)
    assert built["state"] == "live", built["error"]
    assert built["approved_by"] == "maintainer"
    assert serves(platform, preview["slug"], "from a fork\n")

    before, head2 = prs.push(3, static_site("fork again"))
    prs.send("synchronize", 3, before=before)
    prs.comment_saying(3, "✋ Waiting for approval", f"`{head2[:7]}`")
    waiting = platform.revision_for(preview["id"], head2)
    assert waiting["state"] == "queued"
    assert serves(platform, preview["slug"], "from a fork\n")
    assert len(prs.comments(3)) == 1


def test_a_rerun_of_a_failed_push_makes_a_new_revision_and_check_run(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    missing = f"slipway-test/not-yet-{uuid.uuid4().hex[:8]}:latest"
    files = static_site("after a re-run")
    files["Dockerfile"] = str(files["Dockerfile"]).replace(
        str(files["Dockerfile"]).split("\n", 1)[0], f"FROM {missing}"
    )
    repo, repository = make_repository("rerun", files)
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, failed = platform.settle(repository["full_name"], repo.head)
    assert failed["state"] == "failed"

    # What was missing arrives (here: the base image), and the user presses Re-run.
    busybox = str(static_site("x")["Dockerfile"]).split("\n", 1)[0].removeprefix("FROM ")
    subprocess.run([DOCKER, "tag", busybox, missing], check=True, capture_output=True)
    try:
        # GitHub shows Re-run on a completed check run only: wait until its report arrived.
        run = wait_for(
            "the failed check run to be reported",
            lambda: next(
                (
                    r
                    for r in github.check_runs(repository["full_name"])
                    if r.head_sha == repo.head and r.conclusion == "failure"
                ),
                None,
            ),
            30,
        )
        github.set_permission(repository["full_name"], "octo-dev", "write")  # who presses it
        payload = check_run_payload(
            "rerequested",
            repository,
            INSTALLATION_ID,
            github.check_run_json(repository["full_name"], run.id),
        )
        assert platform.send("check_run", payload).status_code == 202

        def second_revision() -> dict[str, Any] | None:
            revisions = platform.api(f"/api/deployments/{deployment['id']}/revisions")
            return revisions[0] if len(revisions) == 2 else None

        again = wait_for("a new revision of the same commit", second_revision, 60)
        assert again["commit_sha"] == repo.head and again["id"] != failed["id"]
        settled = platform.wait_state(again["id"], {"live", "failed"})
        assert settled["state"] == "live", settled["error"]

        def conclusions() -> list[str | None]:
            runs = github.check_runs(repository["full_name"])
            return [r.conclusion for r in runs if r.head_sha == repo.head]

        def concluded() -> list[str | None] | None:
            found = conclusions()
            return found if len(found) == 2 and None not in found else None

        # Reports reach GitHub through the outbox, after the revision went live.
        assert wait_for("both check runs to conclude", concluded, 30) == ["failure", "success"]
    finally:
        subprocess.run([DOCKER, "rmi", missing], capture_output=True, check=False)
