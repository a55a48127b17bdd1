"""Reports to GitHub, queued in the control plane and sent in order, off the revision's path.

The pipeline, the delivery handler and the teardown record what GitHub should hear (a check run
opened, building, live, failed ...) as rows of `reports`; a drain job sends each revision's rows
oldest first under a short lease on the revision, so a report never overtakes an earlier one,
across workers too. GitHub answering in 300 ms then costs a revision nothing: only the tarball
download waits for GitHub. Each row reads the revision as it is when sent, so the check run id
an earlier row stored is there for the later ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from app.feedback.reports import GitHubReporter, RevisionRef, load_ref
from app.kernel.db import SessionFactory
from app.kernel.leases import Lease
from app.kernel.models import Report, Revision, RevisionState
from app.kernel.ports import Clock

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=15)
"""Renewed while its holder sends, so a worker that died holding it is waited out in seconds."""

KINDS = frozenset(
    {
        "announce",
        "waiting",
        "building",
        "deploying",
        "succeeded",
        "failed",
        "cancelled",
        "superseded",
        "removed",
        "approved",
        "approval_refused",
    }
)


PROGRESS = frozenset({"waiting", "building", "deploying"})
"""Reports that only say how far a revision got: one overtaken by a later report of the same
revision is dropped unsent, so a slow GitHub hears the outcome sooner, not every step late."""


class ReportOutbox:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        reporter: GitHubReporter,
        clock: Clock,
        enqueue: Callable[[str], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._reporter = reporter
        self._clock = clock
        self._enqueue = enqueue or self.drain
        self._lease = Lease(
            sessions,
            clock,
            key=col(Revision.id),
            until=col(Revision.report_lease_until),
            duration=LEASE,
        )

    def use_queue(self, enqueue: Callable[[str], None]) -> None:
        """The worker sends reports from a job, so the caller never waits on GitHub."""
        self._enqueue = enqueue

    def add(self, revision_id: str, kind: str, **args: Any) -> None:
        """Record one report for the revision and have it sent after the ones before it."""
        assert kind in KINDS, kind
        with self._sessions() as session:
            session.add(
                Report(
                    revision_id=revision_id,
                    kind=kind,
                    args=json.dumps(args),
                    created_at=self._clock(),
                )
            )
            session.commit()
        try:
            self._enqueue(revision_id)
        except Exception:  # the periodic drain sends it
            log.warning("report not queued", extra={"revision_id": revision_id}, exc_info=True)

    def pending_revisions(self) -> list[str]:
        """Revisions with reports not yet sent (for the periodic drain after a lost job)."""
        with self._sessions() as session:
            return list(session.exec(select(Report.revision_id).distinct()).all())

    # -- sending -----------------------------------------------------------------------------
    def drain(self, revision_id: str) -> None:
        while True:
            with self._lease.held(revision_id) as held:
                if not held:
                    return  # its holder sends this one too
                self._send_pending(revision_id)
            if not self._has_pending(revision_id):
                return
            # A report was added between the last send and the release: go round again.

    def _send_pending(self, revision_id: str) -> None:
        while True:
            with self._sessions() as session:
                rows = session.exec(
                    select(Report)
                    .where(Report.revision_id == revision_id)
                    .order_by(col(Report.id))
                    .limit(2)
                ).all()
                if not rows:
                    return
                row = rows[0]
                kind, args, row_id = row.kind, json.loads(row.args), row.id
            overtaken = kind in PROGRESS and len(rows) > 1
            try:
                if not overtaken:
                    self._send(revision_id, kind, args)
            except Exception:
                # A bug must not wedge the revision's later reports behind this one.
                log.exception("report failed", extra={"revision_id": revision_id, "kind": kind})
            with self._sessions() as session:
                sent = session.get(Report, row_id)
                if sent is not None:
                    session.delete(sent)
                    session.commit()

    def _send(self, revision_id: str, kind: str, args: dict[str, Any]) -> None:
        ref = self._ref(revision_id)
        reporter = self._reporter
        if kind not in ("announce", "approved") and (
            ref.revision.check_run_id is None or ref.revision.github_deployment_id is None
        ):
            # Opening them failed earlier (GitHub was down): every later report tries again,
            # so a revision still ends with a check run that tells its outcome.
            self._announce(ref)
            ref = self._ref(revision_id)
        match kind:
            case "announce":
                self._announce(ref)
            case "waiting":
                reporter.waiting(ref, args["reason"])
            case "building":
                reporter.building(ref)
            case "deploying":
                reporter.deploying(ref, args["image"])
            case "succeeded":
                reporter.succeeded(ref, args["url"], args["image"])
            case "failed":
                serving = self._revision(args.get("serving_id"))
                reporter.failed(
                    ref,
                    args["reason"],
                    args["log_tail"],
                    serving,
                    args["url"],
                    annotations=args.get("annotations") or None,
                )
            case "cancelled":
                reporter.cancelled(ref)
            case "superseded":
                by = self._revision(args["by_id"])
                assert by is not None
                reporter.superseded(ref, by)
            case "removed":
                reporter.removed(ref, args["reason"])
            case "approved":
                reporter.approved(ref, args["login"])
                self._update(revision_id, check_run_id=None)
                self._announce(self._ref(revision_id))
            case "approval_refused":
                reporter.approval_refused(ref, args["login"], args["role"])

    def _announce(self, ref: RevisionRef) -> None:
        """Open the check run and the GitHub deployment once; later calls do nothing."""
        revision = ref.revision
        if revision.state is RevisionState.cancelled and revision.check_run_id is None:
            return  # cancelled before GitHub heard of it: nothing to show
        opening: dict[str, Callable[[], int | None]] = {}
        if revision.check_run_id is None:
            opening["check_run_id"] = lambda: self._reporter.open_check_run(ref)
        if revision.github_deployment_id is None:
            opening["github_deployment_id"] = lambda: self._reporter.open_deployment(ref)
        opened = self._reporter.together(*opening.values())  # two resources: no order between
        updates = {k: v for k, v in zip(opening, opened, strict=True) if v is not None}
        if updates:
            self._update(revision.id, **updates)

    # -- plumbing ----------------------------------------------------------------------------
    def _ref(self, revision_id: str) -> RevisionRef:
        with self._sessions() as session:
            return load_ref(session, revision_id)

    def _revision(self, revision_id: str | None) -> Revision | None:
        if revision_id is None:
            return None
        with self._sessions() as session:
            return session.get(Revision, revision_id)

    def _update(self, revision_id: str, **values: object) -> None:
        with self._sessions() as session:
            session.execute(
                update(Revision).where(col(Revision.id) == revision_id).values(**values)
            )
            session.commit()

    def _has_pending(self, revision_id: str) -> bool:
        with self._sessions() as session:
            return (
                session.exec(select(Report.id).where(Report.revision_id == revision_id)).first()
                is not None
            )
