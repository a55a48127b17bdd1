"""The GitHub client against the fake GitHub: tokens are cached, and each REST call round-trips.

The fake checks every request against GitHub's contract and records violations in
``fake.errors``, so a call that "works" only because the fake is lenient still fails here.
"""

from __future__ import annotations

import socket
import tarfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.github.auth import REFRESH_MARGIN, GitHubApp
from app.github.rest import DESCRIPTION_LIMIT, SUMMARY_LIMIT, GitHubRest
from app.kernel.errors import GitHubError
from app.kernel.timestamps import utcnow
from builders.errors import SourceError
from builders.source import unpack_tarball
from tests.support.fake_github import FakeGitHub
from tests.support.keys import new_private_key_pem
from tests.unit.conftest import make_git_repo

APP_ID = 4321
WRONG_KEY_APP_ID = 4399
INSTALLATION = 55
OWNER = "octo"
FULL_NAME = f"{OWNER}/web"


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake(app_key_pem: str) -> Iterator[FakeGitHub]:
    github = FakeGitHub(app_id=APP_ID, private_key_pem=app_key_pem).start()
    github.add_installation(INSTALLATION, OWNER)
    try:
        yield github
    finally:
        github.stop()


@pytest.fixture
def commit(fake: FakeGitHub, tmp_path: Path) -> str:
    """The repository octo/web on the fake, with one commit; returns its sha."""
    repo = tmp_path / "web"
    sha = make_git_repo(repo, {"Dockerfile": "FROM scratch\n", "www/index.html": "<h1>v1</h1>\n"})
    fake.add_repository(INSTALLATION, OWNER, "web", repo)
    return sha


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(fake: FakeGitHub, clock: Clock) -> GitHubApp:
    return GitHubApp(
        APP_ID, fake.private_key_pem, fake.url, transport=httpx.HTTPTransport(), clock=clock
    )


@pytest.fixture
def rest(app: GitHubApp) -> GitHubRest:
    return GitHubRest(app)


# -- installation tokens ----------------------------------------------------------------------
def test_a_token_is_requested_once_and_reused(fake: FakeGitHub, app: GitHubApp) -> None:
    first = app.installation_token(INSTALLATION)
    second = app.installation_token(INSTALLATION)

    assert first == second
    assert first.startswith("ghs_")
    assert fake.token_requests == 1
    assert fake.errors == []


def test_a_token_is_renewed_once_it_is_within_the_refresh_margin_of_expiry(
    fake: FakeGitHub, app: GitHubApp, clock: Clock
) -> None:
    first = app.installation_token(INSTALLATION)
    expires = clock.now + fake.token_lifetime

    clock.now = expires - REFRESH_MARGIN - timedelta(seconds=5)
    assert app.installation_token(INSTALLATION) == first
    assert fake.token_requests == 1

    clock.now = expires - REFRESH_MARGIN + timedelta(seconds=5)
    renewed = app.installation_token(INSTALLATION)

    assert renewed != first
    assert fake.token_requests == 2
    assert fake.errors == []


def test_each_installation_has_its_own_token(fake: FakeGitHub, app: GitHubApp) -> None:
    fake.add_installation(INSTALLATION + 1, "other-org", account_type="Organization")

    tokens = {app.installation_token(INSTALLATION), app.installation_token(INSTALLATION + 1)}

    assert len(tokens) == 2
    assert fake.token_requests == 2


def test_a_forgotten_installation_gets_a_new_token(fake: FakeGitHub, app: GitHubApp) -> None:
    first = app.installation_token(INSTALLATION)
    app.forget_installation(INSTALLATION)

    assert app.installation_token(INSTALLATION) != first
    assert fake.token_requests == 2


def test_a_wrong_private_key_is_an_error_naming_the_app_id_and_key(app_key_pem: str) -> None:
    # githubkit caches App JWTs process-wide by App ID alone, so this App gets an ID of its own:
    # with APP_ID it would reuse a JWT another test signed with the right key.
    with FakeGitHub(app_id=WRONG_KEY_APP_ID, private_key_pem=app_key_pem) as fake:
        fake.add_installation(INSTALLATION, OWNER)
        other_pem = new_private_key_pem()
        app = GitHubApp(WRONG_KEY_APP_ID, other_pem, fake.url, transport=httpx.HTTPTransport())

        with pytest.raises(GitHubError) as caught:
            app.installation_token(INSTALLATION)

        message = str(caught.value)
        assert "SLIPWAY_GITHUB_APP_ID" in message
        assert "private key" in message
        assert "HTTP 401" in message
        assert fake.token_requests == 0


def test_a_wrong_app_id_is_an_error_naming_the_app_id(fake: FakeGitHub) -> None:
    app = GitHubApp(APP_ID + 1, fake.private_key_pem, fake.url, transport=httpx.HTTPTransport())

    with pytest.raises(GitHubError, match="SLIPWAY_GITHUB_APP_ID"):
        app.installation_token(INSTALLATION)


def test_a_suspended_installation_gets_no_token(fake: FakeGitHub, app: GitHubApp) -> None:
    fake.suspend_installation(INSTALLATION)

    with pytest.raises(GitHubError, match=f"installation {INSTALLATION} \\(HTTP 403\\)"):
        app.installation_token(INSTALLATION)


def test_an_unreachable_github_is_an_error_naming_the_url(app_key_pem: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(GitHubError, match=f"cannot reach GitHub at {url}"):
        GitHubApp(APP_ID, app_key_pem, url, transport=httpx.HTTPTransport()).installation_token(
            INSTALLATION
        )


# -- REST round trips -------------------------------------------------------------------------
def test_a_check_run_is_created_queued_and_completed(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    check_run_id = rest.create_check_run(
        INSTALLATION,
        FULL_NAME,
        commit,
        name="Slipway",
        external_id="rev_abc",
        details_url="http://slipway.example.com/api/revisions/rev_abc",
        title="Queued: revision #1",
        summary="Revision #1 of `web` is queued.",
    )
    rest.update_check_run(
        INSTALLATION,
        FULL_NAME,
        check_run_id,
        status="in_progress",
        title="Building revision #1",
        summary="Building.",
        started_at="2025-03-01T12:00:00Z",
    )
    rest.update_check_run(
        INSTALLATION,
        FULL_NAME,
        check_run_id,
        status="completed",
        conclusion="success",
        title="Live at http://web.localhost:8000/",
        summary="Revision #1 is live.",
        text="build log",
        completed_at="2025-03-01T12:01:00Z",
    )

    [run] = fake.check_runs(FULL_NAME)
    assert run.id == check_run_id
    assert (run.name, run.head_sha, run.external_id) == ("Slipway", commit, "rev_abc")
    assert [step["status"] for step in run.history] == ["queued", "in_progress", "completed"]
    assert (run.conclusion, run.output["title"]) == (
        "success",
        "Live at http://web.localhost:8000/",
    )
    assert run.output["text"] == "build log"
    assert fake.errors == []


def test_an_oversized_summary_is_clipped_to_what_github_accepts(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    check_run_id = rest.create_check_run(
        INSTALLATION,
        FULL_NAME,
        commit,
        name="Slipway",
        external_id="rev_abc",
        details_url="http://slipway.example.com/api/revisions/rev_abc",
        title="T" * 300,
        summary="S" * (SUMMARY_LIMIT + 100),
    )
    rest.update_check_run(
        INSTALLATION,
        FULL_NAME,
        check_run_id,
        status="completed",
        conclusion="failure",
        title="Failed",
        summary="see the log",
        text="early line\n" + "L" * SUMMARY_LIMIT + "\nthe line that says why",
    )

    [run] = fake.check_runs(FULL_NAME)
    assert len(run.history[0]["output"]["summary"]) == SUMMARY_LIMIT
    text = run.output["text"]
    assert text is not None and len(text) == SUMMARY_LIMIT
    assert text.endswith("the line that says why")
    assert fake.errors == []


def test_a_deployment_and_its_statuses_are_created(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    deployment_id = rest.create_deployment(
        INSTALLATION,
        FULL_NAME,
        commit,
        environment="production",
        production=True,
        description="Slipway revision #1 of web " + "x" * 200,
    )
    rest.create_deployment_status(
        INSTALLATION, FULL_NAME, deployment_id, state="in_progress", description="Building"
    )
    rest.create_deployment_status(
        INSTALLATION,
        FULL_NAME,
        deployment_id,
        state="success",
        description="Revision #1 is live",
        environment_url="http://web.localhost:8000/",
        log_url="http://slipway.example.com/api/revisions/rev_abc/logs",
    )

    [deployment] = fake.deployments(FULL_NAME)
    assert deployment.id == deployment_id
    assert (deployment.sha, deployment.environment) == (commit, "production")
    assert deployment.production_environment and not deployment.transient_environment
    assert len(deployment.description) == DESCRIPTION_LIMIT
    assert [status["state"] for status in deployment.statuses] == ["in_progress", "success"]
    assert deployment.statuses[-1]["environment_url"] == "http://web.localhost:8000/"
    assert fake.errors == []


def test_a_commit_tarball_downloads_and_unpacks_to_the_repository(
    fake: FakeGitHub, rest: GitHubRest, commit: str, tmp_path: Path
) -> None:
    archive = tmp_path / "source.tar.gz"

    rest.download_tarball(INSTALLATION, FULL_NAME, commit, archive, max_bytes=1024**2)

    assert tarfile.is_tarfile(archive)
    source = unpack_tarball(archive, tmp_path / "src")
    assert (source / "Dockerfile").read_text() == "FROM scratch\n"
    assert (source / "www" / "index.html").read_text() == "<h1>v1</h1>\n"
    assert fake.errors == []


def test_a_tarball_over_the_download_cap_is_refused_while_it_streams(
    fake: FakeGitHub, rest: GitHubRest, commit: str, tmp_path: Path
) -> None:
    archive = tmp_path / "source.tar.gz"

    with pytest.raises(SourceError, match="larger than 0 MiB"):
        rest.download_tarball(INSTALLATION, FULL_NAME, commit, archive, max_bytes=64)

    assert archive.stat().st_size <= 64


def test_one_token_serves_many_calls(fake: FakeGitHub, rest: GitHubRest, commit: str) -> None:
    for number in range(3):
        rest.create_deployment(
            INSTALLATION,
            FULL_NAME,
            commit,
            environment="production",
            production=True,
            description=f"revision #{number}",
        )

    assert fake.token_requests == 1
    assert fake.errors == []


def test_a_refused_call_is_an_error_naming_the_operation(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    with pytest.raises(GitHubError, match=r"GitHub refused to update check run 999 on octo/web"):
        rest.update_check_run(
            INSTALLATION, FULL_NAME, 999, status="in_progress", title="t", summary="s"
        )


# -- what a pull_request delivery asks, and the pull request's comment ----------------------
def test_a_file_at_a_commit_is_read_raw_and_a_missing_one_is_none(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    assert rest.file_at(INSTALLATION, FULL_NAME, commit, "Dockerfile") == b"FROM scratch\n"
    assert rest.file_at(INSTALLATION, FULL_NAME, commit, "slipway.toml") is None
    assert fake.errors == []


def test_a_commit_message_is_read(fake: FakeGitHub, rest: GitHubRest, commit: str) -> None:
    assert rest.commit_message(INSTALLATION, FULL_NAME, commit).startswith("first")
    assert fake.errors == []


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", "admin"),
        ("maintain", "maintain"),
        ("write", "write"),
        ("triage", "triage"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_a_collaborators_role_is_read(
    fake: FakeGitHub, rest: GitHubRest, commit: str, role: str, expected: str
) -> None:
    fake.set_permission(FULL_NAME, "someone", role)

    assert rest.collaborator_permission(INSTALLATION, FULL_NAME, "someone") == expected
    assert fake.errors == []


def test_an_unknown_user_has_no_permission(fake: FakeGitHub, rest: GitHubRest, commit: str) -> None:
    assert rest.collaborator_permission(INSTALLATION, FULL_NAME, "nobody-at-all") == "none"


def test_the_comment_is_created_found_by_its_marker_and_edited(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    fake.add_pull_request(FULL_NAME, 3, head_sha=commit, head_ref="feature")
    assert rest.find_comment(INSTALLATION, FULL_NAME, 3, "<!-- marker -->") is None

    comment_id = rest.create_comment(INSTALLATION, FULL_NAME, 3, "<!-- marker -->\nfirst")
    assert rest.find_comment(INSTALLATION, FULL_NAME, 3, "<!-- marker -->") == comment_id
    assert rest.update_comment(INSTALLATION, FULL_NAME, comment_id, "<!-- marker -->\nsecond")

    [comment] = fake.comments(FULL_NAME, 3)
    assert comment["body"] == "<!-- marker -->\nsecond"
    assert fake.errors == []


def test_editing_a_deleted_comment_says_it_is_gone(
    fake: FakeGitHub, rest: GitHubRest, app: GitHubApp, commit: str
) -> None:
    fake.add_pull_request(FULL_NAME, 3, head_sha=commit, head_ref="feature")
    comment_id = rest.create_comment(INSTALLATION, FULL_NAME, 3, "body")
    with app.client(INSTALLATION) as client:  # a user deleting it on GitHub
        client.rest.issues.delete_comment(OWNER, "web", comment_id)
    fake.clear_errors()

    assert rest.update_comment(INSTALLATION, FULL_NAME, comment_id, "again") is False


# -- GitHub failing: bounded, never a stalled worker ----------------------------------------
def _check_run(rest: GitHubRest, commit: str) -> int:
    return rest.create_check_run(
        INSTALLATION,
        FULL_NAME,
        commit,
        name="Slipway",
        external_id="rev_1",
        details_url="http://slipway.test/api/revisions/rev_1",
        title="Queued",
        summary="queued",
    )


@pytest.mark.timeout(30)  # githubkit's default would sleep until the limit resets, an hour
def test_a_rate_limited_report_fails_at_once_instead_of_waiting_an_hour(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    check_run_id = _check_run(rest, commit)
    fake.fail_next("PATCH", r"/check-runs/", status=403, rate_limited=True)

    with pytest.raises(GitHubError, match="HTTP 403"):
        rest.update_check_run(
            INSTALLATION, FULL_NAME, check_run_id, status="in_progress", title="t", summary="s"
        )


def test_a_failing_report_is_retried_a_bounded_number_of_times(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    check_run_id = _check_run(rest, commit)
    fake.fail_next("PATCH", r"/check-runs/", status=502, times=10)
    before = len(fake.requests)

    with pytest.raises(GitHubError, match="HTTP 502"):
        rest.update_check_run(
            INSTALLATION, FULL_NAME, check_run_id, status="in_progress", title="t", summary="s"
        )

    assert len(fake.requests) - before == 3  # the call and two retries, then it gives up


def test_a_tarball_github_fails_to_serve_for_a_while_is_fetched_after_all(
    fake: FakeGitHub, rest: GitHubRest, commit: str, tmp_path: Path
) -> None:
    fake.fail_next("GET", r"/tarball/", status=503, times=4)  # more than githubkit's retries
    archive = tmp_path / "source.tar.gz"

    rest.download_tarball(INSTALLATION, FULL_NAME, commit, archive, max_bytes=1024**2)

    assert tarfile.is_tarfile(archive)


def test_a_refused_tarball_is_not_retried(
    fake: FakeGitHub, rest: GitHubRest, commit: str, tmp_path: Path
) -> None:
    fake.fail_next("GET", r"/tarball/", status=404, times=10)

    with pytest.raises(GitHubError, match="HTTP 404"):
        rest.download_tarball(
            INSTALLATION, FULL_NAME, commit, tmp_path / "source.tar.gz", max_bytes=1024**2
        )

    assert len([path for _, path in fake.requests if "/tarball/" in path]) == 1


def test_a_token_github_no_longer_accepts_is_dropped_and_a_new_one_asked_for(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    _check_run(rest, commit)
    tokens = fake.token_requests
    fake.fail_next("POST", r"/check-runs", status=401)

    with pytest.raises(GitHubError, match="HTTP 401"):
        _check_run(rest, commit)
    _check_run(rest, commit)

    assert fake.token_requests == tokens + 1


def test_annotations_beyond_githubs_50_per_request_go_in_further_requests(
    fake: FakeGitHub, rest: GitHubRest, commit: str
) -> None:
    check_run_id = rest.create_check_run(
        INSTALLATION,
        FULL_NAME,
        commit,
        name="Slipway",
        external_id="rev_abc",
        details_url="http://slipway.example.com/api/revisions/rev_abc",
        title="Queued",
        summary="Queued.",
    )
    annotations: list[dict[str, object]] = [
        {
            "path": "langgraph.json",
            "start_line": line,
            "end_line": line,
            "annotation_level": "failure",
            "message": f"problem {line}",
        }
        for line in range(1, 61)
    ]
    rest.update_check_run(
        INSTALLATION,
        FULL_NAME,
        check_run_id,
        status="completed",
        conclusion="failure",
        title="Failed",
        summary="langgraph.json is invalid",
        annotations=annotations,
    )
    [run] = fake.check_runs(FULL_NAME)
    assert [a["start_line"] for a in run.annotations] == list(range(1, 61))
    assert run.conclusion == "failure"
