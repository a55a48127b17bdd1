"""Admit: a queued revision starts building when the limits allow (build slots, preview places);
otherwise it stays queued and says why, once per reason, on its check run and in the preview's
comment. A revision a dead worker left building or deploying is taken back here too.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, or_, select

from app.deployments.revisions import transition
from app.feedback.outbox import ReportOutbox
from app.kernel.db import SessionFactory
from app.kernel.models import (
    IN_FLIGHT_STATES,
    PullRequest,
    PullRequestState,
    Revision,
    RevisionState,
)
from app.kernel.ports import Clock, PreviewNotifier
from app.rollout.admission import Admission
from app.rollout.phases.context import RevisionContext, tell_previews

NO_LONGER_QUEUED = "no longer queued"
"""Another job took it, or it was cancelled: nothing to tell anyone."""


class Admit:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        admission: Admission,
        reports: ReportOutbox,
        notifier: PreviewNotifier,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._admission = admission
        self._reports = reports
        self._notifier = notifier
        self._clock = clock

    def startable(self) -> list[str]:
        """Queued revisions the limits would let start now (their jobs decide for real)."""
        with self._sessions() as session:
            return [rid for rid, reason in self._admission.decisions(session).items() if not reason]

    def run(self, ctx: RevisionContext) -> RevisionState | None:
        """None once the revision is building (admitted now, or taken back from a dead
        worker); else the state it stays in (queued while it waits)."""
        revision_id = ctx.revision.id
        if ctx.revision.state is RevisionState.queued:
            reason = self._admit(revision_id, ctx.deployment.id)
            if reason is not None:
                self._waiting(ctx, reason)
                return RevisionState.queued
        else:
            with self._sessions() as session:
                waited = _wait_reason(session, revision_id)
                if not transition(
                    session,
                    revision_id,
                    IN_FLIGHT_STATES,
                    RevisionState.building,
                    build_started_at=self._clock(),
                    wait_reason=None,
                ):
                    return RevisionState(
                        session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
                    )
                if waited is not None:
                    _set_note(session, ctx.deployment.id, None)
        self._reports.add(revision_id, "building")
        tell_previews(self._notifier, ctx.deployment)
        return None

    def _admit(self, revision_id: str, deployment_id: str) -> str | None:
        """Move the revision to building if the limits allow; else the reason it waits. A
        revision that waited before stops saying so in the same transaction."""
        with self._sessions() as session, self._admission.locked(session):
            reason = self._admission.decisions(session).get(revision_id, NO_LONGER_QUEUED)
            if reason is not None:
                return reason
            waited = _wait_reason(session, revision_id)
            if not transition(
                session,
                revision_id,
                frozenset({RevisionState.queued}),
                RevisionState.building,
                build_started_at=self._clock(),
                wait_reason=None,
            ):
                return NO_LONGER_QUEUED
            if waited is not None:
                _set_note(session, deployment_id, None)
        return None

    def _waiting(self, ctx: RevisionContext, reason: str) -> None:
        """Tell the user once per reason: on the check run and in the preview's comment."""
        if reason == NO_LONGER_QUEUED:
            return
        with self._sessions() as session:
            told = session.execute(
                update(Revision)
                .where(
                    col(Revision.id) == ctx.revision.id,
                    or_(col(Revision.wait_reason).is_(None), col(Revision.wait_reason) != reason),
                )
                .values(wait_reason=reason)
            )
            if not told.rowcount:  # type: ignore[attr-defined]
                return  # already said
            _set_note(session, ctx.deployment.id, reason)
        ctx.event("revision waits", reason=reason)
        self._reports.add(ctx.revision.id, "waiting", reason=reason)
        tell_previews(self._notifier, ctx.deployment)


def _wait_reason(session: Session, revision_id: str) -> str | None:
    return session.exec(select(Revision.wait_reason).where(Revision.id == revision_id)).one()


def _set_note(session: Session, deployment_id: str, note: str | None) -> None:
    """The open pull request's comment says why its preview waits (or nothing); committed."""
    pull_request = session.exec(
        select(PullRequest).where(
            PullRequest.deployment_id == deployment_id,
            PullRequest.state == PullRequestState.open,
        )
    ).first()
    if pull_request is not None:
        pull_request.note = note
        session.add(pull_request)
    session.commit()
