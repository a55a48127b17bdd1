"""Retire: once a revision is live, the revisions it replaced go. Their replicas drain and stop
(the retirement rule, app/replicas/retirement.py, which the reconciler applies too), GitHub
hears they are superseded, and images older than the last few are removed."""

from __future__ import annotations

from sqlmodel import col, select

from app.feedback.outbox import ReportOutbox
from app.kernel.db import SessionFactory
from app.kernel.models import FINISHED_STATES, Revision
from app.kernel.ports import ContainerRuntime
from app.replicas.retirement import Retirement
from app.rollout.phases.go_live import Live

KEEP_IMAGES = 3
"""Images kept per deployment (the live revision's and the ones before it, for a rollback)."""


class Retire:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        retirement: Retirement,
        reports: ReportOutbox,
        runtime: ContainerRuntime,
    ) -> None:
        self._sessions = sessions
        self._retirement = retirement
        self._reports = reports
        self._runtime = runtime

    def run(self, live: Live) -> None:
        self.leftovers(live.deployment.id)
        if live.previous is not None:
            self._reports.add(live.previous.id, "superseded", by_id=live.revision.id)
        self._prune_images(live.deployment.id, keep_from=live.revision.number - KEEP_IMAGES + 1)

    def leftovers(self, deployment_id: str) -> None:
        """Drain, then stop, replicas still running for finished revisions (superseded,
        failed, cancelled).

        Runs after every route switch, and again when a retried job finds its revision already
        live (the worker died between the switch and the clean-up); the reconciler does the
        same every tick for whatever is left.
        """
        self._retirement.retire(deployment_id)

    def _prune_images(self, deployment_id: str, keep_from: int) -> None:
        """Images of finished revisions older than the last few are removed: disks are finite."""
        with self._sessions() as session:
            old = session.exec(
                select(Revision).where(
                    Revision.deployment_id == deployment_id,
                    Revision.number < keep_from,
                    col(Revision.image).is_not(None),
                    col(Revision.state).in_(FINISHED_STATES),
                )
            ).all()
            for revision in old:
                assert revision.image is not None
                self._runtime.remove_image(revision.image)
                revision.image = None
                session.add(revision)
            session.commit()
