"""Backups of deployment databases: on a schedule, before a deletion, and on request.

Files live in DATA_DIR/backups/<deployment id>/<backup id>.dump (directories 0700, files
0600), written as `.partial` and renamed once whole, so a listed backup is always complete.
A dump is pg_dump's snapshot: it takes no lock that stops the app's reads or writes, and the
router never waits on it. A restore is one transaction: the app's queries on the tables it
replaces wait for it (its length, measured in docs/operations.md), it waits for the app's own
open transactions a few seconds at most (pg_tools), and if it fails nothing changed.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session, col, select

from app.backups.schedule import Schedule
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import ConflictError, DatabaseError, InvalidRequest, NotFoundError
from app.kernel.models import Backup, BackupState, Database, Deployment
from app.kernel.ports import Clock, DatabaseDumps, DatabaseLogin
from manifests.containers import DeploymentType
from manifests.errors import SlipwayError

log = logging.getLogger(__name__)

SUFFIX = ".dump"
FINAL = "final"
SCHEDULED = "scheduled"
DEFAULT_KEEP = 7
DEFAULT_TIMEOUT_SECONDS = 3600.0
QUIET_MAX_SECONDS = 600.0
"""A pass with nothing due may skip the next ones until something can be (`run_schedule`), but
at least this often abandoned backups are failed and old ones pruned."""
"""A dump still running after this long is stopped and reported failed; a `running` backup
older than this was left by a worker that died, and is marked failed."""


@dataclass(frozen=True)
class BackupPolicy:
    schedule: Schedule = field(default_factory=lambda: Schedule.parse("03:00"))
    keep: int = DEFAULT_KEEP
    """Backups kept per deployment (the newest); a deleted deployment keeps its last one
    for `keep` periods of the schedule."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def retention(self) -> timedelta:
        return self.schedule.retention(self.keep)


@dataclass
class PassReport:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pruned: int = 0


class DatabaseBackups:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        dumps: DatabaseDumps,
        backups_dir: Path,
        policy: BackupPolicy,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._dumps = dumps
        self._dir = backups_dir
        self.policy = policy
        self._clock = clock
        self._quiet_until: datetime | None = None

    # -- on request ------------------------------------------------------------------------
    def stream(self, deployment_id: str) -> Iterator[bytes]:
        """The live database, as pg_dump writes it (custom format)."""
        with self._sessions() as session:
            login = self._login(session, self._active(session, deployment_id))
        return self._dumps.stream(login)

    def upload_path(self, deployment_id: str, confirm: str) -> Path:
        """Where an uploaded archive is put before it is restored, once the caller confirmed
        the deployment by its name (checked before a byte is stored)."""
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            _confirmed(deployment, confirm)
            self._login(session, deployment)
        return self._folder(deployment_id) / f"upload-{secrets.token_hex(8)}.partial"

    def restore_upload(self, deployment_id: str, confirm: str, archive: Path) -> None:
        """Restore an uploaded archive; the file is removed whatever the outcome."""
        try:
            self._restore(deployment_id, confirm, archive, what="an uploaded archive")
        finally:
            archive.unlink(missing_ok=True)

    def restore_backup(self, deployment_id: str, backup_id: str, confirm: str) -> Backup:
        backup = self.get(deployment_id, backup_id)
        path = self.path_of(backup)
        self._restore(deployment_id, confirm, path, what=f"backup {backup_id}")
        return backup

    def of(self, deployment_id: str) -> list[Backup]:
        """Newest first."""
        with self._sessions() as session:
            if session.get(Deployment, deployment_id) is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return list(
                session.exec(
                    select(Backup)
                    .where(Backup.deployment_id == deployment_id)
                    .order_by(col(Backup.started_at).desc())
                ).all()
            )

    def get(self, deployment_id: str, backup_id: str) -> Backup:
        """A stored backup (done, its file present) of this deployment."""
        with self._sessions() as session:
            backup = session.get(Backup, backup_id)
        if backup is None or backup.deployment_id != deployment_id:
            raise NotFoundError(f"deployment {deployment_id} has no backup {backup_id}")
        if backup.state is not BackupState.done or not self.path_of(backup).is_file():
            raise ConflictError(f"backup {backup_id} is {backup.state.value}: nothing to restore")
        return backup

    def path_of(self, backup: Backup) -> Path:
        return self._dir / backup.deployment_id / f"{backup.id}{SUFFIX}"

    # -- scheduled -------------------------------------------------------------------------
    def run_schedule(self) -> PassReport:
        """One pass of the worker's cron: every due production deployment backed up, one at
        a time (a failure is reported and leaves the others alone), then old ones pruned.

        The cron looks every minute, but nothing can fall due before the schedule's next
        moment (daily) or the earliest last backup's age reaching the interval: until then a
        pass is skipped without a query (issue 22: at 100 deployments the look cost 100
        queries a minute). A database provisioned meanwhile is not due before either. The
        janitor's part (abandoned backups failed, old ones pruned) runs at least every
        QUIET_MAX_SECONDS."""
        now = self._clock()
        if self._quiet_until is not None and now < self._quiet_until:
            return PassReport()
        report = PassReport()
        self._fail_abandoned()
        due, next_due = self._due(now)
        for deployment_id in due:
            backup = self.back_up(deployment_id, SCHEDULED)
            (report.done if backup.state is BackupState.done else report.failed).append(backup.id)
        report.pruned = self.prune()
        quiet_until = now + timedelta(seconds=QUIET_MAX_SECONDS)
        if next_due is not None:
            quiet_until = min(quiet_until, next_due)
        self._quiet_until = None if due else quiet_until
        return report

    def due(self) -> list[str]:
        return self._due(self._clock())[0]

    def _due(self, now: datetime) -> tuple[list[str], datetime | None]:
        """The deployments due now, and the earliest moment another one could be (now, when a
        backup is still being made: the next look; None when the schedule is off)."""
        schedule = self.policy.schedule
        if not schedule.enabled:
            return [], None
        next_due = schedule.next_moment(now)
        with self._sessions() as session:
            rows = session.exec(
                select(Deployment, Database)
                .join(Database, col(Database.deployment_id) == col(Deployment.id))
                .where(
                    Deployment.type == DeploymentType.production,
                    col(Deployment.deleted_at).is_(None),
                    col(Deployment.removed_at).is_(None),
                    col(Database.provisioned_at).is_not(None),
                )
            ).all()
            due: list[str] = []
            for deployment, database in rows:
                newest = _newest(session, deployment.id)
                if newest is not None and newest.state is BackupState.running:
                    # Still being made (by another pass, or one that overran): look again.
                    next_due = now
                    continue
                since = newest.started_at if newest is not None else database.provisioned_at
                assert since is not None
                if schedule.due(since, now):
                    due.append(deployment.id)
                elif schedule.every is not None:
                    next_due = min(next_due, since + schedule.every)
        return due, next_due

    def final(self, deployment_id: str) -> None:
        """Before a deleted deployment's database is dropped: one more backup, kept for the
        retention period. Raises when it fails, so the database is not dropped."""
        with self._sessions() as session:
            database = session.get(Database, deployment_id)
            if database is None or database.provisioned_at is None:
                return
            taken = session.exec(
                select(Backup).where(
                    Backup.deployment_id == deployment_id,
                    Backup.reason == FINAL,
                    Backup.state == BackupState.done,
                )
            ).first()
        if taken is not None:
            return  # a teardown tried again after the drop failed
        backup = self.back_up(deployment_id, FINAL)
        if backup.state is not BackupState.done:
            raise DatabaseError(
                f"the database was kept: its last backup failed ({backup.error}); "
                "the deletion is tried again"
            )

    def back_up(self, deployment_id: str, reason: str) -> Backup:
        """Dump the database to a new file; the backup's row says how it went."""
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            login = self._login(session, deployment)
            backup = Backup(deployment_id=deployment_id, reason=reason, started_at=self._clock())
            session.add(backup)
            session.commit()
            session.refresh(backup)
        final = self.path_of(backup)
        partial = final.with_name(final.name + ".partial")
        try:
            _private_file(partial, self._folder(deployment_id))
            size = self._dumps.dump(login, partial, timeout=self.policy.timeout_seconds)
            partial.rename(final)
        except (SlipwayError, OSError) as exc:
            partial.unlink(missing_ok=True)
            error = str(exc) if isinstance(exc, SlipwayError) else f"{exc.strerror}: {exc}"
            log.warning(
                "backup failed",
                extra={"deployment_id": deployment_id, "backup_id": backup.id, "error": error},
            )
            return self._finish(backup.id, BackupState.failed, error=error)
        log.info(
            "backup done",
            extra={"deployment_id": deployment_id, "backup_id": backup.id, "bytes": size},
        )
        return self._finish(backup.id, BackupState.done, size=size)

    def prune(self) -> int:
        """Remove backups past what is kept; returns how many went.

        A deployment keeps its newest `keep` backups, and failed ones for the retention
        period; a deleted one keeps only its newest backup, until the retention period after
        its deletion has passed.
        """
        now, keep, retention = self._clock(), self.policy.keep, self.policy.retention
        gone: list[Backup] = []
        with self._sessions() as session:
            rows = session.exec(
                select(Backup, Deployment)
                .join(Deployment, col(Deployment.id) == col(Backup.deployment_id))
                .where(Backup.state != BackupState.running)
                .order_by(col(Backup.started_at).desc())
            ).all()
            kept: dict[str, int] = {}
            for backup, deployment in rows:
                if deployment.deleted_at is not None:
                    expired = now >= deployment.deleted_at + retention
                    allowed = 0 if expired else 1
                else:
                    allowed = keep
                if backup.state is BackupState.done and kept.get(deployment.id, 0) < allowed:
                    kept[deployment.id] = kept.get(deployment.id, 0) + 1
                    continue
                recent = now - backup.started_at < retention
                if backup.state is BackupState.failed and deployment.deleted_at is None and recent:
                    continue
                gone.append(backup)
                session.delete(backup)
            session.commit()
        for backup in gone:
            self.path_of(backup).unlink(missing_ok=True)
        if gone:
            log.info("backups pruned", extra={"count": len(gone)})
        return len(gone)

    # -- inside ----------------------------------------------------------------------------
    def _restore(self, deployment_id: str, confirm: str, archive: Path, *, what: str) -> None:
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            _confirmed(deployment, confirm)
            login = self._login(session, deployment)
        self._dumps.check(archive)
        self._dumps.restore(login, archive)
        log.info("database restored", extra={"deployment_id": deployment_id, "from": what})

    def _login(self, session: Session, deployment: Deployment) -> DatabaseLogin:
        database = session.get(Database, deployment.id)
        if database is None or database.provisioned_at is None:
            raise ConflictError(
                f"{deployment.slug} has no database yet: its first revision makes it"
            )
        return DatabaseLogin(
            name=database.name,
            role=database.role,
            password=self._secrets.decrypt(database.password_encrypted),
        )

    @staticmethod
    def _active(session: Session, deployment_id: str) -> Deployment:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            raise NotFoundError(f"no deployment {deployment_id}")
        if deployment.deleted_at is not None:
            raise ConflictError(
                f"deployment {deployment_id} was deleted: its database is gone (its last "
                "backup is listed at its /backups while it is kept)"
            )
        return deployment

    def _folder(self, deployment_id: str) -> Path:
        """DATA_DIR/backups/<deployment id>, 0700 (and its parent)."""
        folder = self._dir / deployment_id
        for directory in (self._dir, folder):
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)
        return folder

    def _finish(
        self, backup_id: str, state: BackupState, *, size: int | None = None, error: str = ""
    ) -> Backup:
        with self._sessions() as session:
            backup = session.get(Backup, backup_id)
            assert backup is not None
            backup.state = state
            backup.size_bytes = size
            backup.error = error or None
            backup.finished_at = self._clock()
            session.add(backup)
            session.commit()
            session.refresh(backup)
            return backup

    def _fail_abandoned(self) -> None:
        stale = self._clock() - timedelta(seconds=self.policy.timeout_seconds * 1.5)
        with self._sessions() as session:
            for backup in session.exec(
                select(Backup).where(
                    Backup.state == BackupState.running, col(Backup.started_at) < stale
                )
            ).all():
                backup.state = BackupState.failed
                backup.error = "the worker making it stopped; tried again at the next moment"
                backup.finished_at = self._clock()
                session.add(backup)
                log.warning(
                    "backup failed",
                    extra={
                        "deployment_id": backup.deployment_id,
                        "backup_id": backup.id,
                        "error": backup.error,
                    },
                )
            session.commit()


def last_backup(session: Session, deployment_id: str) -> Backup | None:
    """What the deployment's API object shows: its newest backup, however it went."""
    return _newest(session, deployment_id)


def _newest(session: Session, deployment_id: str) -> Backup | None:
    return session.exec(
        select(Backup)
        .where(Backup.deployment_id == deployment_id)
        .order_by(col(Backup.started_at).desc())
    ).first()


def _confirmed(deployment: Deployment, confirm: str) -> None:
    if confirm != deployment.slug:
        raise InvalidRequest(
            f"confirm: give the deployment's name ({deployment.slug!r}) to restore into it; "
            "what its database holds now is replaced"
        )


def _private_file(path: Path, folder: Path) -> None:
    """Created 0600 whatever the process's umask."""
    assert path.parent == folder
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    path.chmod(0o600)
