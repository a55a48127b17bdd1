"""Notifications through apprise for real: a local webhook and a local SMTP server receive what
the outbox sends; a repository's channel that resolves to this machine is refused at
connection time; a failing channel is retried and its error recorded.

No Docker here: the control plane is a migrated SQLite file, the channels real sockets on
127.0.0.1, and names are resolved by the system's resolver.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.adapters.apprise_channels import AppriseChannels
from app.feedback.notify_outbox import NotificationOutbox, NotifyEvent
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.models import Deployment, Installation, Repository
from manifests.notify_urls import is_public_address
from tests.support.receivers import SmtpReceiver, WebhookReceiver

SECRETS = SecretBox("n" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sessions(tmp_path: Path) -> SessionFactory:
    url = f"sqlite:///{tmp_path / 'control-plane.db'}"
    migrate(url, tmp_path)
    return SessionFactory(make_engine(url))


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


def a_deployment(sessions: SessionFactory, tenant_urls: list[str] | None = None) -> str:
    with sessions() as session:
        session.add(Installation(id=1, account_login="octo"))
        session.flush()
        session.add(Repository(id=2, installation_id=1, full_name="octo/web"))
        session.flush()
        deployment = Deployment(repository_id=2, slug="web", branch="main")
        if tenant_urls:
            deployment.notify_encrypted = SECRETS.encrypt(json.dumps(tenant_urls))
        session.add(deployment)
        session.commit()
        return deployment.id


def outbox(sessions: SessionFactory, clock: Clock, operator: tuple[str, ...]) -> NotificationOutbox:
    return NotificationOutbox(
        sessions=sessions,
        secrets=SECRETS,
        clock=clock,
        operator=operator,
        channels=AppriseChannels(),
    )


def test_the_operators_webhook_and_email_each_receive_the_message_once(
    sessions: SessionFactory, webhook: WebhookReceiver, smtp: SmtpReceiver
) -> None:
    clock = Clock()
    notices = outbox(sessions, clock, (webhook.url, smtp.url))
    notices.use_queue(lambda: None)  # sent below, in this thread
    deployment_id = a_deployment(sessions)
    notices.add(deployment_id, NotifyEvent.failed, "web: revision #3 failed", "the build failed")
    assert notices.drain() == 2
    assert notices.drain() == 0  # sent rows are not sent again

    assert [(m.title, m.body) for m in webhook.messages] == [
        ("web: revision #3 failed", "the build failed")
    ]
    [mail] = smtp.about("revision #3 failed")
    assert "the build failed" in mail.body
    assert [v.state for v in notices.history(deployment_id)] == ["sent", "sent"]


def test_a_repositorys_channel_whose_name_resolves_to_this_machine_is_refused_when_sent(
    sessions: SessionFactory, webhook: WebhookReceiver
) -> None:
    """The name passes slipway.toml's checks (it is no local name, no literal address); what it
    resolves to is this machine, so the send is refused before connecting."""
    name = socket.gethostname()
    addresses = {a[4][0] for a in socket.getaddrinfo(name, webhook.port, type=socket.SOCK_STREAM)}
    assert not any(is_public_address(str(a)) for a in addresses), (name, addresses)
    hostile = f"json://{name}:{webhook.port}/hooks/steal"
    clock = Clock()
    notices = outbox(sessions, clock, ())
    notices.use_queue(lambda: None)
    deployment_id = a_deployment(sessions, [hostile])
    notices.add(deployment_id, NotifyEvent.crash_loop, "web: crash loop", "it keeps dying")
    assert notices.drain() == 0

    assert webhook.messages == []
    [view] = notices.history(deployment_id)
    assert view.channel == "repository 1 (json)" and view.state == "pending"
    assert view.last_error is not None and "refused" in view.last_error
    assert "public hosts only" in view.last_error


def test_the_same_url_from_the_operator_reaches_this_machine(
    sessions: SessionFactory, webhook: WebhookReceiver
) -> None:
    """The operator's channels are trusted: the guard is for a repository's only."""
    clock = Clock()
    notices = outbox(sessions, clock, (f"json://{socket.gethostname()}:{webhook.port}/ops",))
    notices.use_queue(lambda: None)
    deployment_id = a_deployment(sessions)
    notices.add(deployment_id, NotifyEvent.unhealthy, "web: unhealthy", "no replica")
    assert notices.drain() == 1
    assert [m.title for m in webhook.messages] == ["web: unhealthy"]


def test_a_channel_that_answers_500_is_retried_with_its_error_recorded_until_it_answers(
    sessions: SessionFactory, webhook: WebhookReceiver
) -> None:
    webhook.status = 500
    clock = Clock()
    notices = outbox(sessions, clock, (webhook.url,))
    notices.use_queue(lambda: None)
    deployment_id = a_deployment(sessions)
    notices.add(deployment_id, NotifyEvent.deleted, "web: deleted", "by octo")
    assert notices.drain() == 0
    [view] = notices.history(deployment_id)
    assert (view.state, view.attempts) == ("pending", 1)
    assert view.last_error and "500" in view.last_error
    assert str(webhook.port) not in view.last_error  # the URL's parts are scrubbed

    webhook.status = 200
    assert notices.drain() == 0  # not due before its backoff
    clock.now += timedelta(seconds=11)
    assert notices.drain() == 1
    [view] = notices.history(deployment_id)
    assert (view.state, view.attempts, view.last_error) == ("sent", 2, None)
    assert len(webhook.messages) == 2  # the refused one, and the delivered one
