"""Teardown: one service takes a deployment down, for a closed pull request or a departed App.

A preview goes completely (replicas, route, database and role, images, its network, build
directories, and its GitHub deployments go inactive); production on uninstall stops serving
but keeps its database, so reinstalling and pushing brings it back with its data. Every step
is idempotent and found by label or by the control plane, so a second run (a retried job, or
the pipeline noticing late that its deployment went away) finishes what the first one left.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from app.deployments.previews import mark_removed
from app.feedback.outbox import ReportOutbox
from app.kernel.db import SessionFactory
from app.kernel.errors import TeardownIncomplete
from app.kernel.models import Database, Deployment, Replica, ReplicaState, Revision, RevisionState
from app.kernel.ports import Clock, ContainerRuntime, DatabaseProvisioner
from app.replicas.routes import RouteTable
from app.replicas.server_logs import ServerLogArchive
from manifests.containers import DEPLOYMENT_LABEL
from manifests.errors import SlipwayError

log = logging.getLogger(__name__)


class Teardown:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        runtime: ContainerRuntime,
        routes: RouteTable,
        databases: DatabaseProvisioner,
        reports: ReportOutbox,
        builds_dir: Path,
        clock: Clock,
        final_backup: Callable[[str], None] | None = None,
        server_logs: ServerLogArchive | None = None,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._routes = routes
        self._databases = databases
        self._reports = reports
        self._builds_dir = builds_dir
        self._server_logs = server_logs
        self._clock = clock
        self._final_backup = final_backup

    def remove(
        self, deployment_id: str, *, drop_database: bool, reason: str, spare_revived: bool = False
    ) -> list[str]:
        """Take the deployment down; returns the revisions this run cancelled (to report).

        The control plane is marked first (usually the delivery already did), so a build or a
        start still running sees its revision cancelled and goes no further.

        `spare_revived` is for an ordered teardown (the worker's job), whose orderer marked the
        deployment removed: unmarked now, it was brought back since (a pull request reopened or
        labelled again), and a late or repeated job must not take the new revision down.
        """
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                return []
            if spare_revived and deployment.removed_at is None:
                log.info(
                    "teardown skipped: the deployment was brought back since it was ordered",
                    extra={"deployment_id": deployment_id, "reason": reason},
                )
                return []
            removed = mark_removed(session, deployment, reason, self._clock())
            session.commit()
            cancelled = [r.id for r in removed.cancelled]
            revisions = list(
                session.exec(select(Revision).where(Revision.deployment_id == deployment_id)).all()
            )
        revisions = [r for r in revisions if r.id not in cancelled]
        steps: list[tuple[str, Callable[[], None]]] = [
            ("unroute", self._routes.apply),
            ("stop its replicas", lambda: self._stop_everything(deployment_id)),
        ]
        if drop_database:
            steps.append(("drop its database", lambda: self._drop_database(deployment_id)))
        problems: list[str] = []
        for what, step in steps:
            # Every step is tried even when one fails: what can go, goes now.
            try:
                step()
            except SlipwayError as exc:
                log.warning(
                    "teardown step failed",
                    extra={"deployment_id": deployment_id, "step": what, "error": str(exc)},
                )
                problems.append(f"could not {what}: {exc}")
        for revision in revisions:
            shutil.rmtree(self._builds_dir / revision.id, ignore_errors=True)
        if self._server_logs is not None and not problems:
            # Copied out as its replicas went (just now): gone with the deployment.
            self._server_logs.forget(deployment_id)
        self._retire_on_github(revisions, reason)
        if problems:
            raise TeardownIncomplete("; ".join(problems))
        with self._sessions() as session:
            session.execute(
                update(Deployment)
                .where(col(Deployment.id) == deployment_id)
                .values(torn_down_at=self._clock())
            )
            session.commit()
        log.info(
            "deployment removed",
            extra={
                "deployment_id": deployment_id,
                "database_dropped": drop_database,
                "reason": reason,
            },
        )
        return cancelled

    def _stop_everything(self, deployment_id: str) -> None:
        self._runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)  # raises if one stays
        now = self._clock()
        with self._sessions() as session:
            replicas = session.exec(
                select(Replica)
                .join(Revision, col(Revision.id) == col(Replica.revision_id))
                .where(Revision.deployment_id == deployment_id, col(Replica.stopped_at).is_(None))
            ).all()
            for replica in replicas:
                replica.state = ReplicaState.stopped
                replica.stopped_at = now
                session.add(replica)
            images = session.exec(
                select(Revision).where(
                    Revision.deployment_id == deployment_id, col(Revision.image).is_not(None)
                )
            ).all()
            for revision in images:
                revision.image = None
                session.add(revision)
            session.commit()

    def _drop_database(self, deployment_id: str) -> None:
        with self._sessions() as session:
            database = session.get(Database, deployment_id)
            if database is None:
                return
            deployment = session.get(Deployment, deployment_id)
            if (
                self._final_backup is not None
                and deployment is not None
                and deployment.deleted_at is not None
                and not deployment.is_preview
            ):
                # Deleted by someone: the data is kept a while as a backup, not lost at once
                # (a failed backup keeps the database, and the teardown is tried again).
                self._final_backup(deployment_id)
            self._databases.drop(database.name, database.role)
            session.delete(database)
            session.commit()
        log.info("database dropped", extra={"deployment_id": deployment_id})

    def _retire_on_github(self, revisions: list[Revision], reason: str) -> None:
        """Every GitHub deployment of this deployment ends inactive (best effort).

        Cancelled revisions are left out: their cancellation reported them inactive.
        """
        for revision in revisions:
            if revision.github_deployment_id is None:
                continue
            if revision.state is RevisionState.cancelled:
                continue
            self._reports.add(revision.id, "removed", reason=reason)
