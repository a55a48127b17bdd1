"""Go live: the route moves to this revision's ready replicas in one router update, and the
replicas of the revision it replaces leave the route in the same switch. An older revision
never takes the route from a newer one: it ends superseded instead, without an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlmodel import select

from app.deployments.revisions import transition
from app.feedback.outbox import ReportOutbox
from app.kernel.db import SessionFactory
from app.kernel.errors import RevisionAbandoned
from app.kernel.models import Deployment, Revision, RevisionState
from app.kernel.ports import Clock, PreviewNotifier
from app.replicas.replica_set import Replicas
from app.replicas.retirement import retire_finished
from app.replicas.routes import RouteTable
from app.rollout.phases.context import RevisionContext, tell_previews


class Switch(enum.Enum):
    go_live = "go live"
    newer_is_live = "a newer revision is live"
    abandoned = "cancelled before it went live"


def decide(revision: Revision, live: Revision | None) -> Switch:
    """Whether `revision` may take the route from `live` (the deployment's live revision)."""
    if revision.state is not RevisionState.deploying:  # a teardown cancelled it
        return Switch.abandoned
    if live is not None and live.number > revision.number:
        return Switch.newer_is_live
    return Switch.go_live


@dataclass(frozen=True)
class Live:
    """What the switch made: the revision live, and the one it replaced."""

    revision: Revision
    deployment: Deployment
    previous: Revision | None
    """The revision that served before (now superseded), if another one did."""


class GoLive:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        routes: RouteTable,
        replicas: Replicas,
        reports: ReportOutbox,
        notifier: PreviewNotifier,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._routes = routes
        self._replicas = replicas
        self._reports = reports
        self._notifier = notifier
        self._clock = clock

    def run(self, ctx: RevisionContext) -> Live | None:
        """None when a newer revision went live while this one deployed: it then ends
        superseded without taking the route. Raises RevisionAbandoned once cancelled."""
        revision_id = ctx.revision.id
        with self._routes.locked(), self._sessions() as session:
            # Read under the route lock: the only place the revision is loaded again.
            revision = session.get(Revision, revision_id)
            assert revision is not None
            deployment = session.get(Deployment, revision.deployment_id)
            assert deployment is not None
            live = (
                session.get(Revision, deployment.live_revision_id)
                if deployment.live_revision_id
                else None
            )
            switch = decide(revision, live)
            if switch is Switch.go_live:
                now = self._clock()
                revision.state = RevisionState.live
                revision.live_at = now
                deployment.live_revision_id = revision.id
                deployment.updated_at = now
                if live is not None and live.id != revision.id:
                    live.state = RevisionState.superseded
                    live.finished_at = now
                    retire_finished(session, deployment.id, now)  # out of the route now
                self._routes.apply_in(session)  # before the commit: a refused switch is undone
                session.commit()
        if switch is Switch.abandoned:
            raise RevisionAbandoned(f"revision {revision_id} was cancelled before it went live")
        if switch is Switch.newer_is_live:
            assert live is not None
            with self._sessions() as session:
                transition(
                    session,
                    revision_id,
                    frozenset({RevisionState.deploying}),
                    RevisionState.superseded,
                    finished_at=self._clock(),
                    error=f"superseded by revision #{live.number}, which went live first",
                )
            self._replicas.stop_revision(revision_id)
            self._reports.add(revision_id, "cancelled")
            return None
        url = ctx.config.url(deployment.slug)
        ctx.log.append(f"slipway: live at {url}")
        ctx.event("revision live", url=url)
        self._reports.add(revision_id, "succeeded", url=url, image=revision.image or "")
        with self._sessions() as session:
            state, error = session.exec(
                select(Revision.state, Revision.error).where(Revision.id == revision_id)
            ).one()
        if state is not RevisionState.live:
            # Retired (a newer revision, a teardown) between going live and queueing "success":
            # its retirement may be queued before it, so it is queued again, after.
            self._reports.add(
                revision_id, "removed", reason=error or "replaced by a newer revision"
            )
        tell_previews(self._notifier, ctx.deployment)
        previous = live if live is not None and live.id != revision.id else None
        return Live(revision=revision, deployment=deployment, previous=previous)
