"""Bad input gets a clear answer and loses nothing; a broken revision never takes the URL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.apps import static_site
from tests.support.fake_github import CheckRun, FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA, sign
from tests.support.git_repos import GitRepo
from tests.support.platform import (
    INSTALLATION_ID,
    WEBHOOK_SECRET,
    RepoFactory,
    RunningPlatform,
    wait_for,
)


def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(
    platform: RunningPlatform,
) -> None:
    before = platform.count("deliveries")
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    wrong = platform.send("ping", body=body, secret="not-the-secret")
    missing = platform.send("ping", body=body, signature="")
    tampered = platform.send("ping", body=body + b" ", signature=sign(body, WEBHOOK_SECRET))
    for response in (wrong, missing, tampered):
        assert response.status_code == 401
        assert "X-Hub-Signature-256" in response.json()["detail"]
    assert platform.count("deliveries") == before


def test_malformed_json_is_a_400_with_the_reason(platform: RunningPlatform) -> None:
    before = platform.count("deliveries")
    response = platform.send("push", body=b'{"ref": "refs/heads/main",')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    assert platform.count("deliveries") == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"zen": "caf\xe9"}', "not UTF-8"),
        ('{"zen": "x"}'.encode("utf-16"), "not UTF-8"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b'{"a": ' * 100 + b"1" + b"}" * 100, "nests deeper than 64 levels"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nests deeper than 64 levels"),
    ],
    ids=["latin-1", "utf-16", "array", "string", "deep", "deeper-than-the-parser-recurses"],
)
def test_a_body_that_is_no_delivery_is_a_400_with_the_reason_and_stores_nothing(
    platform: RunningPlatform, body: bytes, reason: str
) -> None:
    before = platform.count("deliveries")

    response = platform.send("ping", body=body)

    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    assert platform.count("deliveries") == before


def test_a_body_over_25_mb_is_a_413_and_stores_nothing(platform: RunningPlatform) -> None:
    before = platform.count("deliveries")
    body = b'{"zen": "' + b"x" * (25 * 1024 * 1024) + b'"}'

    response = platform.send("ping", body=body)

    assert response.status_code == 413
    assert platform.count("deliveries") == before


def test_a_ping_is_recorded_and_answered_202(platform: RunningPlatform) -> None:
    before = platform.count("deliveries")
    response = platform.send("ping", {"zen": "Design for failure.", "hook_id": 7})
    assert response.status_code == 202
    assert platform.count("deliveries") == before + 1


@pytest.fixture
def live_site(
    platform: RunningPlatform, make_repository: RepoFactory
) -> tuple[GitRepo, dict[str, Any], dict[str, Any]]:
    """A deployment with a healthy first revision, to break with the next push."""
    repo, repository = make_repository("site", static_site("good version"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    assert platform.request(deployment["slug"]).text == "good version\n"
    return repo, repository, deployment


@dataclass(frozen=True)
class Broken:
    files: dict[str, str | bytes]
    reason: str
    """Expected in the revision's error and the check run."""
    log_line: str | None
    """Output of the failing step, expected in the build log and the check run."""


BROKEN = {
    # A commit that fails before any build (no Dockerfile, an invalid slipway.toml or
    # langgraph.json) is the unit tier's: test_pipeline's
    # test_a_commit_that_cannot_be_built_fails_before_any_build_saying_why_on_github.
    "build-fails": Broken(
        static_site("never served", extra_run="RUN echo compiling-stuff && exit 3\n"),
        "the Docker build failed (exit code",
        "compiling-stuff",
    ),
    "exits-at-start": Broken(
        # It prints its DATABASE_URI on the way down: the password must not reach users.
        static_site(
            "never served",
            cmd='["/bin/sh", "-c", "echo uri=$DATABASE_URI; echo boom-at-start; exit 3"]',
        ),
        "the app exited with code 3",
        "boom-at-start",
    ),
    "never-healthy": Broken(
        static_site("never served", cmd='["/bin/sh", "-c", "echo listening-nowhere; sleep 600"]'),
        "the app never answered its health check",
        "listening-nowhere",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_revision_fails_with_its_reason_and_the_previous_one_keeps_serving(
    case: str,
    platform: RunningPlatform,
    github: FakeGitHub,
    live_site: tuple[GitRepo, dict[str, Any], dict[str, Any]],
) -> None:
    broken = BROKEN[case]
    reason = broken.reason
    repo, repository, deployment = live_site
    good = repo.head
    bad = repo.commit(broken.files, f"break it: {case}")
    platform.push(repository, INSTALLATION_ID, good, bad)

    _, revision = platform.settle(repository["full_name"], bad)
    assert revision["state"] == "failed"
    assert reason in revision["error"]
    assert platform.request(deployment["slug"]).text == "good version\n"
    live = platform.api(f"/api/deployments/{deployment['id']}")["live_revision_id"]
    assert platform.api(f"/api/revisions/{live}")["commit_sha"] == good

    def completed_run() -> CheckRun | None:
        runs = [r for r in github.check_runs(repository["full_name"]) if r.head_sha == bad]
        return runs[0] if runs and runs[0].status == "completed" else None

    run = wait_for("the check run to complete", completed_run, 30)
    title, summary = run.output["title"] or "", run.output["summary"] or ""
    assert run.conclusion == "failure"
    assert reason in title + summary
    assert "keeps serving" in summary
    build_log = platform.logs(revision["id"])
    if broken.log_line:
        assert broken.log_line in summary
        assert broken.log_line in build_log

    def deployment_state() -> str | None:
        found = [d for d in github.deployments(repository["full_name"]) if d.sha == bad]
        return found[0].state if found else None

    wait_for("the failure status", lambda: deployment_state() == "failure", 30)
    # The database password is in the container's environment, never in what users see.
    password = platform.database_password(deployment["id"])
    assert password not in summary and password not in build_log
    if case == "exits-at-start":
        assert "uri=postgresql://" in build_log and "[redacted]" in build_log
    assert github.errors == [], github.errors
