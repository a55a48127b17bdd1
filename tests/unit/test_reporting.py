"""What users read on GitHub about a revision: check runs and deployment statuses, redacted."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.access.links import LinkSigner, RevisionLinks
from app.feedback.reports import REDACTED, GitHubReporter, Redactor, RevisionRef
from app.kernel.models import Deployment, Repository, Revision, RevisionState
from tests.support.fake_github import CheckRun, FakeGitHub
from tests.support.fake_github import Deployment as GitHubDeployment
from tests.support.git_repos import CommitStore
from tests.unit.world import github_client

URL = "http://web.localhost:8000/"
API = "http://slipway.example.com"
INSTALLATION = 41
FULL_NAME = "octo/web"
LINKS = RevisionLinks(
    API + "/",
    LinkSigner(b"k" * 32, timedelta(days=30), lambda: datetime(2025, 3, 1, tzinfo=UTC)),
)


# -- Redactor ---------------------------------------------------------------------------------
def test_every_secret_is_hidden() -> None:
    redact = Redactor(["s3cr3t-token", "hunter22"])
    text = "TOKEN=s3cr3t-token PASSWORD=hunter22 again s3cr3t-token"
    assert redact(text) == f"TOKEN={REDACTED} PASSWORD={REDACTED} again {REDACTED}"


def test_a_secret_containing_another_is_hidden_whole() -> None:
    redact = Redactor(["pass", "password123"])
    assert redact("login with password123") == f"login with {REDACTED}"


def test_a_multi_line_secret_is_hidden_whole_and_line_by_line() -> None:
    pem = (
        "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----"
    )
    redact = Redactor([pem])
    assert redact(f"key={pem}") == f"key={REDACTED}"
    assert "MIIEvQIBADANBgkqhkiG9w0B" not in redact("line 2: MIIEvQIBADANBgkqhkiG9w0B")


def test_values_shorter_than_four_characters_are_left_alone() -> None:
    redact = Redactor(["1", "on", "yes", ""])
    assert redact("replicas=1 debug=on verbose=yes") == "replicas=1 debug=on verbose=yes"


def test_including_adds_a_secret_and_keeps_the_others() -> None:
    redact = Redactor(["user-env-secret"]).including("db-password-xyz")
    text = "env user-env-secret uri postgresql://u:db-password-xyz@h/db"
    assert "user-env-secret" not in redact(text)
    assert "db-password-xyz" not in redact(text)


# -- GitHubReporter ---------------------------------------------------------------------------
RefOf = Callable[..., RevisionRef]


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(INSTALLATION, "octo")
    return fake_github


@pytest.fixture
def ref_of(github: FakeGitHub, tmp_path: Path) -> RefOf:
    """Revision number → the revision of a commit of its own in octo/web (made on first ask)."""
    commits = CommitStore(tmp_path / "web.git")
    github.add_repository(INSTALLATION, "octo", "web", commits.path)
    shas: dict[int, str] = {}

    def ref_of(number: int = 2, *, error: str | None = None) -> RevisionRef:
        if number not in shas:
            shas[number] = commits.commit({"Dockerfile": f"FROM scratch\n# {number}\n"})
        started = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
        return RevisionRef(
            installation_id=INSTALLATION,
            repository=Repository(id=5, installation_id=INSTALLATION, full_name=FULL_NAME),
            deployment=Deployment(id="dep_abc", repository_id=5, slug="web", branch="main"),
            revision=Revision(
                id=f"rev_{number:012d}",
                deployment_id="dep_abc",
                number=number,
                commit_sha=shas[number],
                env_hash="0" * 16,
                state=RevisionState.building,
                error=error,
                image=f"slipway/dep_abc:rev_{number:012d}",
                build_started_at=started,
                build_finished_at=started.replace(second=42),
                deploy_started_at=started.replace(second=42),
                live_at=started.replace(second=50),
                finished_at=started.replace(second=50),
            ),
        )

    return ref_of


def announced(reporter: GitHubReporter, ref: RevisionRef) -> RevisionRef:
    """The revision after the pipeline opened its check run and GitHub deployment."""
    ref.revision.check_run_id = reporter.open_check_run(ref)
    ref.revision.github_deployment_id = reporter.open_deployment(ref)
    return ref


@pytest.fixture
def reporter(github: FakeGitHub) -> GitHubReporter:
    return GitHubReporter(github_client(github), check_name="Slipway", links=LINKS)


def check_run(github: FakeGitHub) -> CheckRun:
    [run] = github.check_runs(FULL_NAME)
    return run


def deployment(github: FakeGitHub) -> GitHubDeployment:
    [found] = github.deployments(FULL_NAME)
    return found


def test_a_new_revision_opens_a_queued_check_run_and_a_deployment(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = ref_of()

    check_run_id = reporter.open_check_run(ref)
    deployment_id = reporter.open_deployment(ref)

    assert check_run_id is not None and deployment_id is not None
    run = check_run(github)
    assert run.id == check_run_id
    assert run.status == "queued"
    assert run.output["title"] == "Queued: revision #2"
    assert run.details_url == LINKS.revision(ref.revision.id)
    assert run.external_id == ref.revision.id
    opened = deployment(github)
    assert opened.id == deployment_id
    assert opened.environment == "production"
    assert opened.production_environment is True
    github.assert_no_errors()


def test_a_failure_says_why_what_keeps_serving_and_shows_the_log_tail(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = announced(reporter, ref_of(2))
    serving = ref_of(1).revision
    tail = "#5 [2/3] RUN make\n#5 ERROR: make: *** No rule to make target 'all'"

    reporter.failed(ref, "the Docker build failed (exit code 1)", tail, serving, URL)

    run = check_run(github)
    summary = str(run.output["summary"])
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert run.output["title"] == "Failed: the Docker build failed (exit code 1)"
    assert "Revision #2 failed: the Docker build failed (exit code 1)" in summary
    assert f"Revision #1 (`{serving.commit_sha[:7]}`) keeps serving {URL}." in summary
    assert f"```\n{tail}\n```" in summary
    assert LINKS.log(ref.revision.id) in summary
    [status] = deployment(github).statuses
    assert status["state"] == "failure"
    # "Details" on GitHub: the revision's dashboard page (signed), not the raw log.
    assert status["log_url"] == LINKS.revision(ref.revision.id)
    assert "/dashboard/revisions/" in status["log_url"] and "signature=" in status["log_url"]
    github.assert_no_errors()


def test_a_failure_with_nothing_live_says_nothing_is_served(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    reporter.failed(announced(reporter, ref_of(1)), "the app exited with code 1", "", None, URL)

    summary = str(check_run(github).output["summary"])
    assert "Nothing is served yet for this deployment." in summary
    assert "keeps serving" not in summary
    assert "```" not in summary


def test_a_redacted_log_never_shows_the_secret(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    secret = "sk-live-0123456789abcdef"
    redact = Redactor([secret, "db-password-xyz"])
    log = (
        f"#4 [2/2] RUN echo $API_KEY\n#4 0.2 {secret}\n"
        "#5 connecting to postgresql://role:db-password-xyz@host/db\n#5 ERROR: exit code 1"
    )
    reason = redact(f"the Docker build failed after printing {secret}")

    ref = announced(reporter, ref_of(2))
    reporter.failed(ref, reason, redact(log), ref_of(1).revision, URL)

    shown = json.dumps(
        [[run.history for run in github.check_runs(FULL_NAME)], deployment(github).statuses]
    )
    assert secret not in shown
    assert "db-password-xyz" not in shown
    assert REDACTED in str(check_run(github).output["summary"])


def test_success_reports_the_url_on_the_check_run_and_the_deployment(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = announced(reporter, ref_of(3))

    reporter.succeeded(ref, URL, "slipway/dep_abc:rev_3")

    run = check_run(github)
    assert (run.status, run.conclusion) == ("completed", "success")
    assert run.output["title"] == f"Live at {URL}"
    assert "**Build:** 42.0 s" in str(run.output["summary"])
    [status] = deployment(github).statuses
    assert (status["state"], status["environment_url"]) == ("success", URL)
    assert status["log_url"] == LINKS.revision(ref.revision.id)


def test_every_deployment_status_links_the_revisions_dashboard_page(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = announced(reporter, ref_of(2))

    reporter.building(ref)
    reporter.succeeded(ref, URL, "slipway/dep_abc:rev_2")
    reporter.superseded(ref, by=ref_of(3).revision)

    statuses = deployment(github).statuses
    assert [s["state"] for s in statuses] == ["in_progress", "success", "inactive"]
    assert {s["log_url"] for s in statuses} == {LINKS.revision(ref.revision.id)}
    github.assert_no_errors()


def test_a_cancelled_revision_says_why(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = announced(reporter, ref_of(1, error="superseded by revision #2 before it went live"))

    reporter.cancelled(ref)

    run = check_run(github)
    assert (run.status, run.conclusion) == ("completed", "cancelled")
    assert run.output["title"] == "Cancelled: superseded by revision #2 before it went live"
    assert deployment(github).state == "inactive"


def test_a_revision_without_a_check_run_or_deployment_reports_nothing(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = ref_of(2)  # GitHub was down when it was announced

    reporter.building(ref)
    reporter.failed(ref, "boom", "log", None, URL)

    assert github.check_runs(FULL_NAME) == [] and github.deployments(FULL_NAME) == []


def test_github_errors_never_escape_the_reporter(
    github: FakeGitHub, reporter: GitHubReporter, ref_of: RefOf
) -> None:
    ref = announced(reporter, ref_of(2))
    github.unreachable = True

    assert reporter.open_check_run(ref) is None
    assert reporter.open_deployment(ref) is None
    reporter.building(ref)
    reporter.deploying(ref, "slipway/dep_abc:rev_2")
    reporter.succeeded(ref, URL, "slipway/dep_abc:rev_2")
    reporter.failed(ref, "boom", "log", ref_of(1).revision, URL)
    reporter.cancelled(ref)
    reporter.superseded(ref, by=ref_of(3).revision)
    assert check_run(github).status == "queued"
