"""The operator's channels hear of a failed revision and of a crash loop, once each, through the
platform as a user starts it: SLIPWAY_NOTIFY names a local webhook (apprise's `json://`) and a
local SMTP server (aiosmtpd) for the shared platform (tests/e2e/conftest.py)."""

from __future__ import annotations

from tests.e2e.conftest import Receivers
from tests.support.apps import static_site
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform, wait_for

QUIET_AFTER_SECONDS = 15.0
"""The crash-looping app's next two deaths come within this (it dies 2 s after each start;
the backoff is 4 s, then 8 s)."""

CRASHING = static_site(
    "up for two seconds",
    cmd=(
        '["/bin/busybox", "sh", "-c", '
        '"/bin/busybox httpd -p 8000 -h /www; /bin/busybox sleep 2; exit 3"]'
    ),
)


def sent_everywhere(platform: RunningPlatform, deployment_id: str, event: str) -> bool:
    rows = platform.api(f"/api/deployments/{deployment_id}/notifications")
    mine = [r for r in rows if r["event"] == event]
    return len(mine) == 2 and all(r["state"] == "sent" for r in mine)


def test_a_failed_revision_reaches_the_webhook_and_the_mailbox_once(
    platform: RunningPlatform, receivers: Receivers, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository(
        "breaks", static_site("never built", extra_run="RUN /bin/busybox false\n")
    )
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "failed"
    deployment_id = deployment["id"]

    wait_for(
        "the failure sent to both channels",
        lambda: sent_everywhere(platform, deployment_id, "failed"),
        timeout=60,
    )
    [hook] = receivers.webhook.about(revision["id"])
    assert hook.title == f"{deployment['slug']}: revision #1 failed"
    assert "failed" in hook.body and deployment_id in hook.body
    [mail] = receivers.smtp.about(revision["id"])
    assert mail.title == hook.title
    assert len(receivers.webhook.about(deployment_id)) == 1
    assert len(receivers.smtp.about(deployment_id)) == 1


def test_a_crash_loop_reaches_the_webhook_and_the_mailbox_once_however_many_restarts(
    platform: RunningPlatform, receivers: Receivers, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("crashes", CRASHING)
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    deployment_id = deployment["id"]

    wait_for(
        "the crash loop sent to both channels",
        lambda: sent_everywhere(platform, deployment_id, "crash_loop"),
        timeout=120,
    )
    title = f"{deployment['slug']}: crash loop"
    assert [m.title for m in receivers.webhook.about(deployment_id)].count(title) == 1
    assert [m.title for m in receivers.smtp.about(deployment_id)].count(title) == 1
    [hook] = [m for m in receivers.webhook.about(deployment_id) if m.title == title]
    assert "exited with code 3" in hook.body

    # It keeps dying: restarts go on, the episode is the same, nothing more is sent about it.
    before = deaths(platform, deployment_id)
    seen = set(before)

    def two_more() -> bool:
        seen.update(deaths(platform, deployment_id))
        return len(seen - before) >= 2

    wait_for("two more deaths", two_more, timeout=QUIET_AFTER_SECONDS * 4, every=0.5)
    assert [m.title for m in receivers.webhook.about(deployment_id)].count(title) == 1
    assert [m.title for m in receivers.smtp.about(deployment_id)].count(title) == 1
    platform.call(
        "DELETE", f"/api/deployments/{deployment_id}", json={"confirm": deployment["slug"]}
    )


def deaths(platform: RunningPlatform, deployment_id: str) -> set[str]:
    """When the live revision's replicas died, as far as the scaling history shows (a run of
    deaths keeps its first and its latest: polled often enough, each one is seen)."""
    decisions = platform.api(f"/api/deployments/{deployment_id}/scaling")["decisions"]
    return {str(d["at"]) for d in decisions if d["reason"] == "replica died"}
