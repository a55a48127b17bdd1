"""Recovery: nothing stays in flight after the worker running it died.

A running revision's job writes `heartbeat_at` every few seconds. One that stopped beating
(the worker was killed, its host went away) is failed with a reason the user can act on, and
what it left is stopped: its `docker build`, its containers, its image. Queued revisions whose
job was lost are dispatched again by the periodic dispatch; deliveries recorded but never
handled (a crash between storing and enqueueing) are handed back to the queue from here.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, func, or_, update
from sqlmodel import col, select

from app.feedback.notify_outbox import NotificationOutbox, NotifyEvent
from app.feedback.outbox import ReportOutbox
from app.kernel.db import SessionFactory
from app.kernel.models import Delivery, Deployment, Revision, RevisionState
from app.kernel.ports import Clock, ContainerRuntime, PreviewNotifier
from manifests.containers import REVISION_LABEL
from manifests.errors import SlipwayError

log = logging.getLogger(__name__)

RUNNING = frozenset({RevisionState.building, RevisionState.deploying})
LOST_DELIVERY_AFTER = timedelta(seconds=60)
"""A delivery not handled this long after it arrived lost its job (they take milliseconds)."""
UNFINISHED_TEARDOWN_AFTER = timedelta(minutes=10)
"""A teardown takes seconds; one unfinished this long after the removal lost its job."""


@dataclass(frozen=True)
class LostTeardown:
    """A teardown to order again, as its removal ordered it, with the reason GitHub is told."""

    deployment_id: str
    drop_database: bool
    reason: str


class Recovery:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        runtime: ContainerRuntime,
        reports: ReportOutbox,
        notifier: PreviewNotifier,
        clock: Clock,
        stale_after: timedelta,
        url: Callable[[str], str],
        notifications: NotificationOutbox | None = None,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._reports = reports
        self._notifier = notifier
        self._clock = clock
        self._stale_after = stale_after
        self._url = url
        self._notifications = notifications

    def fail_stuck(self) -> list[str]:
        """Fail every running revision whose job stopped beating; returns their ids."""
        cutoff = self._clock() - self._stale_after
        with self._sessions() as session:
            stuck = list(
                session.exec(
                    select(Revision).where(col(Revision.state).in_(RUNNING), _last_sign() < cutoff)
                ).all()
            )
        failed: list[str] = []
        for revision in stuck:
            if self._fail(revision, cutoff):
                failed.append(revision.id)
        return failed

    def lost_deliveries(self) -> list[str]:
        """Deliveries stored long ago and never handled: their work was never queued."""
        cutoff = self._clock() - LOST_DELIVERY_AFTER
        with self._sessions() as session:
            return list(
                session.exec(
                    select(Delivery.id).where(
                        col(Delivery.processed_at).is_(None), col(Delivery.received_at) < cutoff
                    )
                ).all()
            )

    def unfinished_teardowns(self) -> list[LostTeardown]:
        """Removed deployments whose teardown never finished (its job was lost while the queue
        was down, or ran out of tries): a deleted one, a closed pull request's preview, a
        production deployment whose repository left the App. Each teardown is ordered again,
        as the removal ordered it: a preview's or a deleted deployment's database goes, a
        departed production deployment's stays. `removed_at` is set by every removal and
        `torn_down_at` by the end of every teardown, so a finished one is never repeated."""
        cutoff = self._clock() - UNFINISHED_TEARDOWN_AFTER
        with self._sessions() as session:
            rows = session.exec(
                select(Deployment).where(
                    col(Deployment.removed_at).is_not(None),
                    col(Deployment.removed_at) < cutoff,
                    or_(
                        col(Deployment.torn_down_at).is_(None),
                        col(Deployment.torn_down_at) < col(Deployment.removed_at),
                    ),
                )
            ).all()
            return [_lost_teardown(d) for d in rows]

    def _fail(self, revision: Revision, cutoff: datetime) -> bool:
        phase = "its build" if revision.state is RevisionState.building else "its start"
        reason = f"the worker stopped during {phase}; push again or press Re-run"
        with self._sessions() as session:
            # Compare-and-set on the heartbeat too: a job whose beat resumed since the
            # selection (the database was only away for a while) is alive, not stuck.
            result = session.execute(
                update(Revision)
                .where(
                    col(Revision.id) == revision.id,
                    col(Revision.state).in_(RUNNING),
                    _last_sign() < cutoff,
                )
                .values(state=RevisionState.failed, error=reason, finished_at=self._clock())
            )
            session.commit()
            if not result.rowcount:  # type: ignore[attr-defined]
                return False  # it moved on or beat meanwhile: not stuck after all
        log.warning(
            "stuck revision failed",
            extra={
                "deployment_id": revision.deployment_id,
                "revision_id": revision.id,
                "reason": reason,
            },
        )
        kill_builds(revision.id)
        try:
            self._runtime.remove_labelled(REVISION_LABEL, revision.id)
        except SlipwayError as exc:
            log.warning(
                "stuck revision's containers not removed",
                extra={"revision_id": revision.id, "error": str(exc)},
            )
        with self._sessions() as session:
            deployment = session.get(Deployment, revision.deployment_id)
            assert deployment is not None
            serving = deployment.live_revision_id
            slug = deployment.slug
            number = revision.number
        self._reports.add(
            revision.id,
            "failed",
            reason=reason,
            log_tail="",  # the check run links to the full log; no secrets to redact here
            serving_id=serving,
            url=self._url(slug),
        )
        self._notifier.deployment_changed(revision.deployment_id)
        self._notifier.capacity_freed()
        if self._notifications is not None:
            self._notifications.add(
                revision.deployment_id,
                NotifyEvent.failed,
                f"{slug}: revision #{number} failed",
                f"Revision #{number} of {slug} failed: {reason}\n"
                f"Deployment {revision.deployment_id}, revision {revision.id}.",
                revision_id=revision.id,
            )
        return True


def _lost_teardown(deployment: Deployment) -> LostTeardown:
    if deployment.deleted_at is not None:
        reason = "the deployment was deleted"
    elif deployment.is_preview:
        reason = "the preview was removed"
    else:
        reason = "the repository left the App"
    return LostTeardown(
        deployment.id,
        drop_database=deployment.is_preview or deployment.deleted_at is not None,
        reason=reason,
    )


def _last_sign() -> ColumnElement[datetime]:
    """The last time a running revision's job was known alive."""
    return func.coalesce(
        col(Revision.heartbeat_at),
        col(Revision.deploy_started_at),
        col(Revision.build_started_at),
        col(Revision.created_at),
    )


def kill_builds(revision_id: str) -> int:
    """Kill the process groups of `docker build`s of the revision a dead worker left running.

    Builds run in their own session (builders/docker_cli.py), so a killed worker's build
    outlives it; it is found by the revision's label on its command line (its image's tag has
    random bits no one else knows).
    """
    label = f"{REVISION_LABEL}={revision_id}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if label in argv and any(arg.endswith(b"docker") for arg in argv[:1]):
            pid = int(entry.name)
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                continue
    return killed
