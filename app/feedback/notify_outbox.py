"""Notifications to the operator's and the repository's channels, sent off the revision's path.

An event (a revision failed, a crash loop began, a deployment went unhealthy or recovered, a
rollback or a delete was asked for, a deployment unused long enough to be told, or deleted for
it) becomes one row of `notifications` per channel, in the same process that saw it, and
nothing more: the worker's job sends due rows (`drain`), each
under a claim so two workers never send one row twice, retried with a doubling wait and given
up after SLIPWAY_NOTIFY_MAX_ATTEMPTS, every attempt's error kept on the row
(`GET /api/deployments/{id}/notifications`) and logged with the deployment's id. A channel that
hangs or refuses therefore costs a deploy nothing, and one channel failing never holds back
another (each has its own row).

Channels: the operator's SLIPWAY_NOTIFY (trusted) and the deployment's own `[notify] urls`
from the last commit fetched for it (held to public hosts by the sender). The URLs carry
tokens: stored encrypted, shown and logged only as labels (`repository 2 (slack)`).
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.kernel.crypto import SecretBox, SecretDecryptionError
from app.kernel.db import SessionFactory
from app.kernel.errors import ChannelError
from app.kernel.models import Deployment, Notification
from app.kernel.ports import ChannelSender, Clock

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=10)
MAX_RETRY = timedelta(minutes=30)
"""A failed send is tried again after 10 s, 20 s, 40 s ... at most 30 minutes apart."""
CLAIM = timedelta(minutes=2)
"""How long a worker owns a row it is sending (longer than any channel's timeouts); a worker
that died meanwhile leaves it to be sent again after that."""
BATCH = 50
PARALLEL_SENDS = 4
"""Channels sent to at once: one that hangs until its timeout holds back no other."""
"""Rows one drain looks at per query."""
DEFAULT_MAX_ATTEMPTS = 8
KEEP_FINISHED = timedelta(days=30)
"""Sent and given-up rows are kept this long for the operator to look at, then pruned."""


class NotifyEvent(enum.StrEnum):
    failed = "failed"
    crash_loop = "crash_loop"
    unhealthy = "unhealthy"
    recovered = "recovered"
    rollback = "rollback"
    deleted = "deleted"
    """Deleted through the API, or by the idle rules (the reason says which)."""
    idle_notice = "idle_notice"
    """Unused for SLIPWAY_IDLE_NOTICE_DAYS: when it will be deleted (app/deployments/usage.py)."""


@dataclass(frozen=True)
class NotificationView:
    """A row as the API shows it: everything but the URL; the channel by label only (its URL
    carries tokens)."""

    id: int
    deployment_id: str
    revision_id: str | None
    event: str
    channel: str
    title: str
    state: str
    """pending (to be tried, or tried again after last_error), sent, or given up."""
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def operator_urls(setting: str | None) -> tuple[str, ...]:
    """SLIPWAY_NOTIFY: apprise URLs separated by spaces (or line breaks)."""
    return tuple((setting or "").split())


def scheme_of(url: str) -> str:
    scheme = url.partition("://")[0].lower()
    return scheme if scheme.isalnum() and len(scheme) <= 20 else "?"


def retry_after(attempts: int) -> timedelta:
    wait: timedelta = FIRST_RETRY * 2 ** max(0, attempts - 1)
    return min(MAX_RETRY, wait)


class NotificationOutbox:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        clock: Clock,
        operator: Sequence[str] = (),
        channels: ChannelSender | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        """Without `channels` (the API process), rows are only recorded: the worker's periodic
        drain sends them."""
        self._sessions = sessions
        self._secrets = secrets
        self._clock = clock
        self._operator = tuple(operator)
        self._channels = channels
        self._max_attempts = max_attempts
        self._wake: Callable[[], None] = self._drain_in_background if channels else _nothing

    def use_queue(self, wake: Callable[[], None]) -> None:
        """The worker sends from a job: an event only enqueues it."""
        self._wake = wake

    # -- recording ---------------------------------------------------------------------------
    def remember_channels(self, deployment_id: str, urls: Sequence[str]) -> None:
        """The deployment's own channels, as its newest fetched commit names them."""
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None or self._own(deployment) == list(urls):
                return  # unchanged: no write (the ciphertext differs at every encryption)
            deployment.notify_encrypted = (
                self._secrets.encrypt(json.dumps(list(urls))) if urls else None
            )
            session.add(deployment)
            session.commit()

    def add(
        self,
        deployment_id: str,
        event: NotifyEvent,
        title: str,
        body: str,
        *,
        revision_id: str | None = None,
    ) -> int:
        """One row per channel, then the sender woken; never raises (an event must not fail
        what it is about). Returns how many channels will hear of it."""
        try:
            count = self._record(deployment_id, event, title, body, revision_id)
        except Exception:
            log.exception(
                "notification not recorded",
                extra={"deployment_id": deployment_id, "event": str(event)},
            )
            return 0
        if count:
            try:
                self._wake()
            except Exception:  # the periodic drain sends it
                log.warning(
                    "notification send not queued",
                    extra={"deployment_id": deployment_id},
                    exc_info=True,
                )
        return count

    def _record(
        self,
        deployment_id: str,
        event: NotifyEvent,
        title: str,
        body: str,
        revision_id: str | None,
    ) -> int:
        now = self._clock()
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                return 0
            own = self._own(deployment)
            targets = [
                (f"operator {n} ({scheme_of(url)})", url, False)
                for n, url in enumerate(self._operator, start=1)
            ] + [
                (f"repository {n} ({scheme_of(url)})", url, True)
                for n, url in enumerate(own, start=1)
            ]
            for label, url, tenant in targets:
                session.add(
                    Notification(
                        deployment_id=deployment_id,
                        revision_id=revision_id,
                        event=str(event),
                        channel=label,
                        target_encrypted=self._secrets.encrypt(url),
                        tenant=tenant,
                        title=title,
                        body=body,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
            session.commit()
        if targets:
            log.info(
                "notification recorded",
                extra={
                    "deployment_id": deployment_id,
                    "revision_id": revision_id,
                    "event": str(event),
                    "channels": len(targets),
                },
            )
        return len(targets)

    def _own(self, deployment: Deployment) -> list[str]:
        """The deployment's own channels; none (with a warning) when they cannot be read (a
        SECRET_KEY replaced), so the operator's channels still hear of the event."""
        if not deployment.notify_encrypted:
            return []
        try:
            urls = json.loads(self._secrets.decrypt(deployment.notify_encrypted))
        except (SecretDecryptionError, ValueError):
            log.warning(
                "the deployment's notification channels cannot be decrypted; its next "
                "revision stores them again",
                extra={"deployment_id": deployment.id},
            )
            return []
        return [str(u) for u in urls]

    def prune(self, keep: timedelta = KEEP_FINISHED) -> int:
        """Rows sent or given up longer ago than `keep` go (the janitor's hourly job)."""
        cutoff = self._clock() - keep
        with self._sessions() as session:
            result = session.execute(
                delete(Notification).where(
                    or_(
                        col(Notification.sent_at) < cutoff,
                        col(Notification.gave_up_at) < cutoff,
                    )
                )
            )
            session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- sending -----------------------------------------------------------------------------
    def has_due(self) -> bool:
        with self._sessions() as session:
            return session.exec(self._due_query().limit(1)).first() is not None

    def drain(self) -> int:
        """Send every due row once (failures are rescheduled); returns how many were delivered."""
        if self._channels is None:
            return 0
        delivered = 0
        tried: set[int] = set()
        with ThreadPoolExecutor(max_workers=PARALLEL_SENDS, thread_name_prefix="notify") as pool:
            while True:
                with self._sessions() as session:
                    rows = session.exec(
                        self._due_query().where(col(Notification.id).not_in(tried)).limit(BATCH)
                    ).all()
                if not rows:
                    return delivered
                tried.update(row.id for row in rows if row.id is not None)
                claimed = [row for row in rows if self._claim(row)]
                delivered += sum(pool.map(self._send, claimed))

    def _due_query(self) -> SelectOfScalar[Notification]:
        return (
            select(Notification)
            .where(
                col(Notification.sent_at).is_(None),
                col(Notification.gave_up_at).is_(None),
                col(Notification.next_attempt_at) <= self._clock(),
            )
            .order_by(col(Notification.id))
        )

    def _claim(self, row: Notification) -> bool:
        """Compare-and-set on the row's next attempt: only one worker sends it."""
        with self._sessions() as session:
            claimed = session.execute(
                update(Notification)
                .where(
                    col(Notification.id) == row.id,
                    col(Notification.next_attempt_at) == row.next_attempt_at,
                    col(Notification.sent_at).is_(None),
                )
                .values(next_attempt_at=self._clock() + CLAIM)
            )
            session.commit()
        return bool(claimed.rowcount)  # type: ignore[attr-defined]

    def _send(self, row: Notification) -> int:
        assert self._channels is not None
        error: str | None = None
        try:
            url = self._secrets.decrypt(row.target_encrypted)
            self._channels.send(url, title=row.title, body=row.body, tenant=row.tenant)
        except ChannelError as exc:
            error = str(exc)
        except Exception as exc:  # a bug in a plugin: the row is kept and tried again
            log.exception("notification send crashed", extra={"deployment_id": row.deployment_id})
            error = f"internal error ({type(exc).__name__})"
        now = self._clock()
        attempts = row.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_error": error}
        if error is None:
            values["sent_at"] = now
        elif attempts >= self._max_attempts:
            values["gave_up_at"] = now
        else:
            values["next_attempt_at"] = now + retry_after(attempts)
        with self._sessions() as session:
            session.execute(
                update(Notification).where(col(Notification.id) == row.id).values(**values)
            )
            session.commit()
        extra = {
            "deployment_id": row.deployment_id,
            "revision_id": row.revision_id,
            "event": row.event,
            "channel": row.channel,
            "attempts": attempts,
        }
        if error is None:
            log.info("notification sent", extra=extra)
            return 1
        if "gave_up_at" in values:
            log.error("notification given up", extra={**extra, "error": error})
        else:
            log.warning("notification not delivered; will retry", extra={**extra, "error": error})
        return 0

    def _drain_in_background(self) -> None:
        """Without a queue (tests, a single process): a thread, so the caller never waits."""
        threading.Thread(target=self._drain_quietly, name="notifications", daemon=True).start()

    def _drain_quietly(self) -> None:
        try:
            self.drain()
        except Exception:
            log.exception("notification drain failed")

    # -- what the operator sees ----------------------------------------------------------------
    def history(self, deployment_id: str, limit: int = 100) -> list[NotificationView]:
        with self._sessions() as session:
            rows = session.exec(
                select(Notification)
                .where(Notification.deployment_id == deployment_id)
                .order_by(col(Notification.id).desc())
                .limit(limit)
            ).all()
        return [
            NotificationView(
                id=row.id or 0,
                deployment_id=row.deployment_id,
                revision_id=row.revision_id,
                event=row.event,
                channel=row.channel,
                title=row.title,
                state=(
                    "sent"
                    if row.sent_at is not None
                    else "given up"
                    if row.gave_up_at is not None
                    else "pending"
                ),
                attempts=row.attempts,
                last_error=row.last_error,
                created_at=row.created_at,
                sent_at=row.sent_at,
            )
            for row in rows
        ]


def _nothing() -> None:
    return None
