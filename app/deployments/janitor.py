"""The janitor: disk use stays bounded however long the platform runs.

Build logs of all but the newest revisions of each deployment, the payloads of old deliveries
(the delivery row stays: it is what makes a redelivery a no-op), images of revisions that
failed or were cancelled, and BuildKit's cache above a size are removed. Run by a cron; each
step is idempotent and cheap when there is nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from app.kernel.db import SessionFactory
from app.kernel.models import Delivery, Deployment, Revision, RevisionState
from app.kernel.ports import Clock, ContainerRuntime
from manifests.errors import SlipwayError

log = logging.getLogger(__name__)

DROPPED_PAYLOAD = ""
"""What an expired delivery's payload becomes; the row keeps its id, event and outcome."""


@dataclass(frozen=True)
class JanitorLimits:
    keep_build_logs: int = 50
    payload_retention: timedelta = timedelta(days=14)
    build_cache_bytes: int = 10 * 1024**3


@dataclass
class JanitorReport:
    logs_removed: int = 0
    payloads_dropped: int = 0
    images_removed: int = 0
    cache_pruned: bool = False


class Janitor:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        runtime: ContainerRuntime,
        logs_dir: Path,
        limits: JanitorLimits,
        prune_build_cache: Callable[[int], None],
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._logs_dir = logs_dir
        self._limits = limits
        self._prune_build_cache = prune_build_cache
        self._clock = clock

    def run(self) -> JanitorReport:
        report = JanitorReport(
            logs_removed=self._old_build_logs(),
            payloads_dropped=self._old_payloads(),
            images_removed=self._images_of_failed_revisions(),
        )
        try:
            self._prune_build_cache(self._limits.build_cache_bytes)
            report.cache_pruned = True
        except SlipwayError as exc:
            log.warning("build cache not pruned", extra={"error": str(exc)})
        log.info("janitor ran", extra=vars(report))
        return report

    def _old_build_logs(self) -> int:
        removed = 0
        with self._sessions() as session:
            deployment_ids = session.exec(select(Deployment.id)).all()
            for deployment_id in deployment_ids:
                older = session.exec(
                    select(Revision.id)
                    .where(Revision.deployment_id == deployment_id)
                    .order_by(col(Revision.number).desc())
                    .offset(self._limits.keep_build_logs)
                ).all()
                for revision_id in older:
                    log_path = self._logs_dir / deployment_id / f"{revision_id}.log"
                    for path in (log_path, log_path.with_suffix(".iid")):
                        if path.exists():
                            path.unlink(missing_ok=True)
                            removed += path.suffix == ".log"
        return removed

    def _old_payloads(self) -> int:
        cutoff = self._clock() - self._limits.payload_retention
        with self._sessions() as session:
            result = session.execute(
                update(Delivery)
                .where(
                    col(Delivery.received_at) < cutoff,
                    col(Delivery.processed_at).is_not(None),  # unhandled ones are still needed
                    col(Delivery.payload) != DROPPED_PAYLOAD,
                )
                .values(payload=DROPPED_PAYLOAD)
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _images_of_failed_revisions(self) -> int:
        """The pipeline removes them as they fail; this catches a crash in between."""
        with self._sessions() as session:
            revisions = session.exec(
                select(Revision).where(
                    col(Revision.state).in_([RevisionState.failed, RevisionState.cancelled]),
                    col(Revision.image).is_not(None),
                )
            ).all()
            for revision in revisions:
                assert revision.image is not None
                self._runtime.remove_image(revision.image)
                revision.image = None
                session.add(revision)
            session.commit()
            return len(revisions)
