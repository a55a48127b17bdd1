"""What users read on GitHub about a revision: check runs and deployment statuses, redacted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.access.links import LinkSigner, RevisionLinks
from app.feedback.reports import REDACTED, GitHubReporter, Redactor, RevisionRef
from app.kernel.models import Deployment, Repository, Revision, RevisionState
from tests.unit.fakes import FIRST_CHECK_RUN, FIRST_GITHUB_DEPLOYMENT, RecordingGitHub

URL = "http://web.localhost:8000/"
API = "http://slipway.example.com"
CHECK_RUN = FIRST_CHECK_RUN
GITHUB_DEPLOYMENT = FIRST_GITHUB_DEPLOYMENT
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
def revision_ref(number: int = 2, *, error: str | None = None) -> RevisionRef:
    started = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    return RevisionRef(
        installation_id=41,
        repository=Repository(id=5, installation_id=41, full_name="octo/web"),
        deployment=Deployment(id="dep_abc", repository_id=5, slug="web", branch="main"),
        revision=Revision(
            id=f"rev_{number:012d}",
            deployment_id="dep_abc",
            number=number,
            commit_sha=f"{number}" * 40,
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


def announced(reporter: GitHubReporter, ref: RevisionRef) -> RevisionRef:
    """The revision after the pipeline opened its check run and GitHub deployment."""
    ref.revision.check_run_id = reporter.open_check_run(ref)
    ref.revision.github_deployment_id = reporter.open_deployment(ref)
    return ref


@pytest.fixture
def github() -> RecordingGitHub:
    return RecordingGitHub()


@pytest.fixture
def reporter(github: RecordingGitHub) -> GitHubReporter:
    return GitHubReporter(github, check_name="Slipway", links=LINKS)


def test_a_new_revision_opens_a_queued_check_run_and_a_deployment(
    github: RecordingGitHub, reporter: GitHubReporter
) -> None:
    ref = revision_ref()

    check_run_id = reporter.open_check_run(ref)
    deployment_id = reporter.open_deployment(ref)

    assert check_run_id is not None and deployment_id is not None
    run = github.check_runs[check_run_id]
    assert run["status"] == "queued"
    assert run["title"] == "Queued: revision #2"
    assert run["details_url"] == LINKS.revision(ref.revision.id)
    assert run["external_id"] == ref.revision.id
    assert github.deployments[deployment_id]["environment"] == "production"
    assert github.deployments[deployment_id]["production"] is True


def test_a_failure_says_why_what_keeps_serving_and_shows_the_log_tail(
    github: RecordingGitHub, reporter: GitHubReporter
) -> None:
    ref = announced(reporter, revision_ref(2))
    serving = revision_ref(1).revision
    tail = "#5 [2/3] RUN make\n#5 ERROR: make: *** No rule to make target 'all'"

    reporter.failed(ref, "the Docker build failed (exit code 1)", tail, serving, URL)

    run = github.check_runs[CHECK_RUN]
    summary = str(run["summary"])
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert run["title"] == "Failed: the Docker build failed (exit code 1)"
    assert "Revision #2 failed: the Docker build failed (exit code 1)" in summary
    assert f"Revision #1 (`1111111`) keeps serving {URL}." in summary
    assert f"```\n{tail}\n```" in summary
    assert LINKS.log(ref.revision.id) in summary
    [status] = github.statuses[GITHUB_DEPLOYMENT]
    assert status["state"] == "failure"
    assert status["log_url"] == LINKS.log(ref.revision.id)


def test_a_failure_with_nothing_live_says_nothing_is_served(
    github: RecordingGitHub, reporter: GitHubReporter
) -> None:
    reporter.failed(
        announced(reporter, revision_ref(1)), "the app exited with code 1", "", None, URL
    )

    summary = str(github.check_runs[CHECK_RUN]["summary"])
    assert "Nothing is served yet for this deployment." in summary
    assert "keeps serving" not in summary
    assert "```" not in summary


def test_a_redacted_log_never_shows_the_secret(
    github: RecordingGitHub, reporter: GitHubReporter
) -> None:
    secret = "sk-live-0123456789abcdef"
    redact = Redactor([secret, "db-password-xyz"])
    log = (
        f"#4 [2/2] RUN echo $API_KEY\n#4 0.2 {secret}\n"
        "#5 connecting to postgresql://role:db-password-xyz@host/db\n#5 ERROR: exit code 1"
    )
    reason = redact(f"the Docker build failed after printing {secret}")

    ref = announced(reporter, revision_ref(2))
    reporter.failed(ref, reason, redact(log), revision_ref(1).revision, URL)

    shown = github.everything_shown()
    assert secret not in shown
    assert "db-password-xyz" not in shown
    assert REDACTED in str(github.check_runs[CHECK_RUN]["summary"])


def test_success_reports_the_url_on_the_check_run_and_the_deployment(
    github: RecordingGitHub, reporter: GitHubReporter
) -> None:
    ref = announced(reporter, revision_ref(3))

    reporter.succeeded(ref, URL, "slipway/dep_abc:rev_3")

    run = github.check_runs[CHECK_RUN]
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["title"] == f"Live at {URL}"
    assert "**Build:** 42.0 s" in str(run["summary"])
    [status] = github.statuses[GITHUB_DEPLOYMENT]
    assert (status["state"], status["environment_url"]) == ("success", URL)


def test_a_cancelled_revision_says_why(github: RecordingGitHub, reporter: GitHubReporter) -> None:
    ref = announced(
        reporter, revision_ref(1, error="superseded by revision #2 before it went live")
    )

    reporter.cancelled(ref)

    run = github.check_runs[CHECK_RUN]
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    assert run["title"] == "Cancelled: superseded by revision #2 before it went live"
    assert github.statuses[GITHUB_DEPLOYMENT][-1]["state"] == "inactive"


def test_a_revision_without_a_check_run_or_deployment_reports_nothing(
    github: RecordingGitHub, reporter: GitHubReporter
) -> None:
    ref = revision_ref(2)  # GitHub was down when it was announced

    reporter.building(ref)
    reporter.failed(ref, "boom", "log", None, URL)

    assert github.check_runs == {} and github.statuses == {}


def test_github_errors_never_escape_the_reporter() -> None:
    github = RecordingGitHub()
    reporter = GitHubReporter(github, check_name="Slipway", links=LINKS)
    ref = announced(reporter, revision_ref(2))
    github.down = True

    assert reporter.open_check_run(ref) is None
    assert reporter.open_deployment(ref) is None
    reporter.building(ref)
    reporter.deploying(ref, "slipway/dep_abc:rev_2")
    reporter.succeeded(ref, URL, "slipway/dep_abc:rev_2")
    reporter.failed(ref, "boom", "log", revision_ref(1).revision, URL)
    reporter.cancelled(ref)
    reporter.superseded(ref, by=revision_ref(3).revision)
    assert github.check_runs[CHECK_RUN]["status"] == "queued"
