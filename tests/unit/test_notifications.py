"""Notifications on fakes: what is recorded for which event, once per episode, retried off the
revision's path, and a repository's hostile channel URLs refused.

Real sends (a local webhook receiver and SMTP server, addresses resolved for real) are in
tests/integration/test_notifications.py.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlmodel import select

from app.access.tokens import Caller
from app.feedback.notify_outbox import retry_after
from app.kernel.errors import ChannelError
from app.kernel.models import Deployment, Notification, RevisionState
from app.replicas.health_alerts import UNHEALTHY_AFTER
from manifests.config import parse_repository_config
from manifests.errors import ConfigError
from manifests.notify_urls import check_tenant_url, is_public_address
from tests.support.platform import wait_for
from tests.unit.world import DOCKERFILE, Platform

OPERATOR = "json://ops.example.com/hook/OPERATOR-TOKEN"
TENANT = "jsons://hooks.example.com/app/TENANT-TOKEN"


@dataclass
class Channels:
    """A ChannelSender that records what it is given; `refuse` makes every send fail and
    `hold` makes every send wait until it is set."""

    sent: list[tuple[str, str, str, bool]] = field(default_factory=list)
    refuse: str | None = None
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def send(self, url: str, *, title: str, body: str, tenant: bool) -> None:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(timeout=30)
        if self.refuse is not None:
            raise ChannelError(self.refuse)
        self.sent.append((url, title, body, tenant))


def with_channels(platform: Platform, channels: Channels) -> Platform:
    platform.channels = channels
    platform.notify = (OPERATOR,)
    platform.__post_init__()
    return platform


def rows(platform: Platform, event: str | None = None) -> list[Notification]:
    with platform.sessions() as session:
        query = select(Notification).order_by(Notification.id)  # type: ignore[arg-type]
        if event is not None:
            query = query.where(Notification.event == event)
        return list(session.exec(query).all())


def tenant_toml(*urls: str) -> str:
    quoted = ", ".join(f'"{u}"' for u in urls)
    return f"[notify]\nurls = [{quoted}]\n"


# -- a repository's URLs: the attacks first ------------------------------------------------------

ATTACKS = {
    "a local file read into the message": "slack://T000/B000/XXXX?template=/etc/passwd",
    "an attachment fetched by the worker": "json://hooks.example.com/x?attach=http://10.0.0.1/",
    "the host's own syslog": "syslog://",
    "the host's desktop bus": "dbus://",
    "the platform's API on loopback": "json://127.0.0.1:8080/api/deployments",
    "loopback spelled as a number": "json://2130706433:8080/x",
    "loopback spelled in hex": "json://0x7f.1:8080/x",
    "loopback mapped into IPv6": "json://[::ffff:127.0.0.1]:8080/x",
    "the cloud metadata address": "json://169.254.169.254/latest/meta-data",
    "a LAN host": "xml://192.168.1.10/hook",
    "a local name": "json://localhost:6379/x",
    "a LAN SMTP relay": "mailtos://u:p@example.com?smtp=10.0.0.25&to=a@example.com",
    "timeouts that hold a worker": "json://hooks.example.com/x?rto=3600",
}


@pytest.mark.parametrize("url", list(ATTACKS.values()), ids=list(ATTACKS))
def test_a_hostile_notify_url_in_slipway_toml_is_refused_on_its_line_without_echoing_it(
    url: str,
) -> None:
    text = f'[deploy]\nport = 8000\n\n[notify]\nurls = ["jsons://hooks.example.com/ok", "{url}"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_repository_config(text)
    [annotation] = caught.value.annotations
    assert annotation.start_line == 5
    assert "notify.urls: URL 2:" in annotation.message
    for said in (str(caught.value), annotation.message):
        assert url not in said
        assert "XXXX" not in said and "/etc/passwd" not in said


@pytest.mark.parametrize(
    "url",
    [
        "jsons://hooks.example.com/slipway",
        "slack://T000/B000/XXXX",
        "discord://123456789012345678/a-webhook-token",
        "msteams://team/token-a/token-b/token-c",
        "mailtos://alerts:secret@example.com?to=ops@example.com",
        "json://hooks.example.com/x?+X-Token=abc&-message=text",
    ],
)
def test_webhooks_email_and_chat_services_at_public_hosts_are_accepted(url: str) -> None:
    assert parse_repository_config(tenant_toml(url)).notify.urls == [url]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2001:4860:4860::8888", True),
        ("64:ff9b::808:808", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.17.0.1", False),
        ("192.168.0.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),  # noqa: S104 (an address judged, not bound)
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ],
)
def test_which_addresses_a_repositorys_channel_may_reach(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_more_than_ten_urls_are_refused() -> None:
    urls = [f"jsons://hooks.example.com/{n}" for n in range(11)]
    with pytest.raises(ConfigError, match=r"notify\.urls"):
        parse_repository_config(tenant_toml(*urls))


def test_a_url_that_passed_the_config_is_checked_again_when_sent() -> None:
    """Rules may tighten after a URL was stored: the sender checks it again."""
    with pytest.raises(ValueError, match="scheme"):
        check_tenant_url("windows://")


# -- what is recorded, for whom ------------------------------------------------------------------


def test_a_failed_revision_goes_to_the_operator_and_the_repositorys_channels_once(
    platform: Platform,
) -> None:
    channels = with_channels(platform, Channels()).channels
    assert isinstance(channels, Channels)
    first = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": tenant_toml(TENANT)})
    assert platform.pipeline.run(first) is RevisionState.live
    platform.builder.failure = "the Docker build failed (exit code 1)"
    second = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": tenant_toml(TENANT)})
    assert platform.pipeline.run(second) is RevisionState.failed

    wait_for("both channels told", lambda: len(channels.sent) == 2, timeout=10)
    wait_for("both recorded sent", lambda: all(r.sent_at for r in rows(platform)), timeout=10)
    by_url = {url: (title, body, tenant) for url, title, body, tenant in channels.sent}
    assert set(by_url) == {OPERATOR, TENANT}
    title, body, _ = by_url[OPERATOR]
    assert title.endswith("revision #2 failed")
    assert "the Docker build failed (exit code 1)" in body and second in body
    assert (by_url[OPERATOR][2], by_url[TENANT][2]) == (False, True)
    assert [(r.event, r.channel, r.attempts) for r in rows(platform)] == [
        ("failed", "operator 1 (json)", 1),
        ("failed", "repository 1 (jsons)", 1),
    ]


def test_a_repositorys_urls_are_stored_encrypted_and_never_shown(platform: Platform) -> None:
    with_channels(platform, Channels(refuse="the channel did not accept the message"))
    platform.builder.failure = "the Docker build failed (exit code 1)"
    revision = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": tenant_toml(TENANT)})
    assert platform.pipeline.run(revision) is RevisionState.failed
    wait_for("sends tried", lambda: all(r.attempts for r in rows(platform)), timeout=10)

    with platform.sessions() as session:
        deployment = session.exec(select(Deployment)).one()
        stored = [deployment.notify_encrypted, *[r.target_encrypted for r in rows(platform)]]
    assert all(s and "TENANT-TOKEN" not in s and "OPERATOR-TOKEN" not in s for s in stored)
    shown = repr(platform.notifications.history(deployment.id))
    assert "TOKEN" not in shown and "hooks.example.com" not in shown


def test_a_failing_channel_is_retried_with_backoff_recorded_and_finally_given_up(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    channels = Channels(refuse="A Connection error occurred sending JSON notification to ***.")
    with_channels(platform, channels)
    platform.builder.failure = "the Docker build failed (exit code 1)"
    revision = platform.push()
    assert platform.pipeline.run(revision) is RevisionState.failed
    wait_for("the first try", lambda: rows(platform)[0].attempts == 1, timeout=10)
    [row] = rows(platform)
    assert row.last_error is not None and "Connection error" in row.last_error
    assert row.next_attempt_at - platform.clock.now <= retry_after(1)

    caplog.set_level(logging.INFO)
    outbox = platform.notifications
    for attempt in range(2, 9):
        assert outbox.drain() == 0  # not due yet: nothing is tried early
        platform.clock.now += retry_after(attempt - 1) + timedelta(seconds=1)
        outbox.drain()
        assert rows(platform)[0].attempts == attempt
    [row] = rows(platform)
    assert row.gave_up_at is not None and row.sent_at is None
    [view] = outbox.history(row.deployment_id)
    assert (view.state, view.attempts) == ("given up", 8)
    logged = [r for r in caplog.records if r.getMessage().startswith("notification")]
    assert logged and all(getattr(r, "deployment_id", None) == row.deployment_id for r in logged)
    assert "OPERATOR-TOKEN" not in caplog.text


def test_a_channel_that_hangs_does_not_hold_back_the_next_revision(platform: Platform) -> None:
    """The failure's notification is being sent (and never answers) while the fix goes live."""
    hold = threading.Event()
    channels = Channels(hold=hold)
    with_channels(platform, channels)
    try:
        platform.builder.failure = "the Docker build failed (exit code 1)"
        failed = platform.push()
        assert platform.pipeline.run(failed) is RevisionState.failed
        assert channels.entered.wait(timeout=10), "the send never started"
        platform.builder.failure = None
        fixed = platform.push()
        assert platform.pipeline.run(fixed) is RevisionState.live
        assert channels.sent == []  # still hanging: the revision never waited for it
    finally:
        hold.set()
    wait_for("the held send finished", lambda: len(channels.sent) == 1, timeout=10)


# -- crash loops and health: once per episode -----------------------------------------------------


def tick(platform: Platform, seconds: float = 2.0) -> None:
    platform.runtime.events_delivered()
    platform.wall[0] += seconds
    platform.reconciler.changed(deployment_id(platform))
    platform.reconciler.reconcile()


def deployment_id(platform: Platform) -> str:
    with platform.sessions() as session:
        return session.exec(select(Deployment.id)).one()


def test_a_crash_loop_is_notified_once_however_many_restarts_and_again_after_it_ended(
    platform: Platform,
) -> None:
    with_channels(platform, Channels())
    revision_id = platform.push()
    assert platform.pipeline.run(revision_id) is RevisionState.live
    for _ in range(6):
        running = platform.runtime.running(revision_id)
        if running:
            platform.runtime.kill(running[0].id, exit_code=3)
        platform.clock.now += timedelta(seconds=20)  # past the backoff: it restarts
        tick(platform)
    [loop] = rows(platform, "crash_loop")
    assert "exited with code 3" in loop.body

    # Quiet for longer than the crash window: the episode is over; a new one is news again.
    platform.clock.now += timedelta(minutes=11)
    tick(platform)
    for _ in range(3):
        running = platform.runtime.running(revision_id)
        if running:
            platform.runtime.kill(running[0].id, exit_code=3)
        platform.clock.now += timedelta(seconds=20)
        tick(platform)
    assert len(rows(platform, "crash_loop")) == 2


def test_unhealthy_after_the_grace_and_recovered_once_a_replica_is_ready(
    platform: Platform,
) -> None:
    with_channels(platform, Channels())
    revision_id = platform.push()
    assert platform.pipeline.run(revision_id) is RevisionState.live
    platform.health.healthy = False  # replacements never answer (and are not waited for)
    platform.reconfigure(health_timeout_seconds=1e-9)
    [running] = platform.runtime.running(revision_id)
    platform.runtime.kill(running.id, exit_code=1)
    tick(platform)
    assert rows(platform, "unhealthy") == []  # a replica replaced within the grace is no news
    for _ in range(3):
        platform.clock.now += UNHEALTHY_AFTER
        tick(platform)
    assert len(rows(platform, "unhealthy")) == 1
    assert rows(platform, "recovered") == []

    platform.health.healthy = True
    platform.reconfigure(health_timeout_seconds=30.0)
    for _ in range(3):
        platform.clock.now += timedelta(seconds=20)
        tick(platform)
    assert len(rows(platform, "recovered")) == 1
    assert len(rows(platform, "unhealthy")) == 1


def test_a_rollback_and_a_delete_are_notified(platform: Platform) -> None:
    with_channels(platform, Channels())
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    second = platform.push()
    assert platform.pipeline.run(second) is RevisionState.live
    caller = Caller(name="octo-admin", read_only=False)
    dep = deployment_id(platform)
    platform.operations.rollback(dep, 1, caller)
    with platform.sessions() as session:
        deployment = session.get(Deployment, dep)
        assert deployment is not None
        slug = deployment.slug
    platform.operations.delete(dep, slug, caller)
    events = [(r.event, r.title) for r in rows(platform)]
    assert events == [
        ("rollback", f"{slug}: rollback to revision #1"),
        ("deleted", f"{slug}: deleted"),
    ]


def test_finished_notifications_are_pruned_after_thirty_days_and_pending_ones_kept(
    platform: Platform,
) -> None:
    channels = Channels()
    with_channels(platform, channels)
    platform.builder.failure = "the Docker build failed (exit code 1)"
    first = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": tenant_toml(TENANT)})
    assert platform.pipeline.run(first) is RevisionState.failed
    wait_for("both sent", lambda: len(channels.sent) == 2, timeout=10)
    wait_for("both recorded sent", lambda: all(r.sent_at for r in rows(platform)), timeout=10)
    channels.refuse = "the channel did not accept the message"
    second = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": tenant_toml(TENANT)})
    assert platform.pipeline.run(second) is RevisionState.failed
    wait_for("tried", lambda: all(r.attempts for r in rows(platform)), timeout=10)

    assert platform.notifications.prune() == 0
    platform.clock.now += timedelta(days=31)
    assert platform.notifications.prune() == 2
    assert [(r.revision_id, r.sent_at) for r in rows(platform)] == [(second, None)] * 2


@dataclass
class OneHangs(Channels):
    """Holds only the sends to `slow`; the others go through."""

    slow: str = OPERATOR

    def send(self, url: str, *, title: str, body: str, tenant: bool) -> None:
        if url == self.slow:
            self.entered.set()
            assert self.hold is not None
            self.hold.wait(timeout=30)
        self.sent.append((url, title, body, tenant))


def test_a_channel_that_hangs_holds_back_no_other_channel(platform: Platform) -> None:
    hold = threading.Event()
    channels = OneHangs(hold=hold)
    platform.channels = channels
    platform.notify = (OPERATOR, "json://other.example.com/hook")
    platform.__post_init__()
    try:
        platform.builder.failure = "the Docker build failed (exit code 1)"
        revision = platform.push()
        assert platform.pipeline.run(revision) is RevisionState.failed
        assert channels.entered.wait(timeout=10)
        wait_for(
            "the other channel told while the first hangs",
            lambda: [u for u, *_ in channels.sent] == ["json://other.example.com/hook"],
            timeout=10,
        )
    finally:
        hold.set()
    wait_for("both told", lambda: len(channels.sent) == 2, timeout=10)


def test_channels_that_cannot_be_decrypted_leave_the_operators_told(platform: Platform) -> None:
    channels = Channels()
    with_channels(platform, channels)
    first = platform.push({"Dockerfile": DOCKERFILE, "slipway.toml": tenant_toml(TENANT)})
    assert platform.pipeline.run(first) is RevisionState.live
    with platform.sessions() as session:
        deployment = session.exec(select(Deployment)).one()
        deployment.notify_encrypted = "sealed with a SECRET_KEY since replaced"
        session.add(deployment)
        session.commit()
    platform.operations.rollback(deployment.id, 1, Caller(name="octo", read_only=False))
    wait_for("the operator told", lambda: len(channels.sent) == 1, timeout=10)
    assert channels.sent[0][0] == OPERATOR
