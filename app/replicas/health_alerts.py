"""What the reconciler tells people about a live deployment's health: once per transition.

- **crash loop**: the live revision's replicas died CRASH_LOOP_DEATHS times within the crash
  window. Notified when the episode begins, not at each restart; the episode ends when the
  deaths in the window fall below that again (so a loop that pauses and resumes within ten
  minutes is one episode).
- **unhealthy**: the live revision has had no ready replica for UNHEALTHY_AFTER (a replica
  replaced within that grace is not news); **recovered** once one is ready again, sent only
  after an "unhealthy".

The state lives on the deployment (`crash_loop_notified_at`, `unready_since`,
`unhealthy_notified_at`), so a worker restart neither repeats nor loses a transition. A
deployment whose state does not change costs no write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.feedback.notify_outbox import NotificationOutbox, NotifyEvent
from app.kernel.db import SessionFactory
from app.kernel.models import Deployment
from app.kernel.ports import Clock

UNHEALTHY_AFTER = timedelta(seconds=30)
"""Longer than replacing a dead replica takes (a second or two, health check included)."""


@dataclass(frozen=True)
class Health:
    """What the reconciler saw of the live revision this pass."""

    ready: int
    crash_looping: bool
    deaths: int = 0
    last_reason: str = ""


class HealthAlerts:
    def __init__(
        self, *, sessions: SessionFactory, notifications: NotificationOutbox, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._notifications = notifications
        self._clock = clock

    def observe(self, deployment: Deployment, health: Health) -> None:
        """`deployment` as the pass loaded it; written to only when a transition happens."""
        now = self._clock()
        changes: dict[str, datetime | None] = {}
        events: list[NotifyEvent] = []
        if health.crash_looping and deployment.crash_loop_notified_at is None:
            changes["crash_loop_notified_at"] = now
            events.append(NotifyEvent.crash_loop)
        elif not health.crash_looping and deployment.crash_loop_notified_at is not None:
            changes["crash_loop_notified_at"] = None
        if health.ready == 0:
            if deployment.unready_since is None:
                changes["unready_since"] = now
            elif (
                deployment.unhealthy_notified_at is None
                and now - deployment.unready_since >= UNHEALTHY_AFTER
            ):
                changes["unhealthy_notified_at"] = now
                events.append(NotifyEvent.unhealthy)
        else:
            if deployment.unhealthy_notified_at is not None:
                events.append(NotifyEvent.recovered)
                changes["unhealthy_notified_at"] = None
            if deployment.unready_since is not None:
                changes["unready_since"] = None
        if not changes:
            return
        with self._sessions() as session:
            stored = session.get(Deployment, deployment.id)
            if stored is None or stored.live_revision_id != deployment.live_revision_id:
                return  # a new revision went live meanwhile: judged at the next pass
            for name, value in changes.items():
                setattr(stored, name, value)
            session.add(stored)
            session.commit()
            slug = stored.slug
        for event in events:
            title, body = _message(event, slug, deployment, health)
            self._notifications.add(
                deployment.id, event, title, body, revision_id=deployment.live_revision_id
            )


def _message(
    event: NotifyEvent, slug: str, deployment: Deployment, health: Health
) -> tuple[str, str]:
    ids = f"Deployment {deployment.id}, revision {deployment.live_revision_id}."
    match event:
        case NotifyEvent.crash_loop:
            return (
                f"{slug}: crash loop",
                f"The replicas of {slug} died {health.deaths} times in the last minutes; "
                f"Slipway restarts them with a growing delay. Last: {health.last_reason}\n{ids}",
            )
        case NotifyEvent.unhealthy:
            return (
                f"{slug}: unhealthy",
                f"{slug} has had no healthy replica for {int(UNHEALTHY_AFTER.total_seconds())} s"
                f" and serves nothing; Slipway keeps replacing them.\n{ids}",
            )
        case _:
            return (
                f"{slug}: recovered",
                f"{slug} has {health.ready} healthy replica(s) again and serves.\n{ids}",
            )
