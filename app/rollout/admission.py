"""Which queued revisions may start building now: platform-wide build slots, preview places.

`plan` is pure: given the queue (oldest first) and what runs, it says for each revision either
"start" (None) or why it waits, so work beyond the limits waits in order. `Admission` reads
that state from the control plane under one lock, so two workers never both take the last slot.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, col, select

from app.kernel.models import Deployment, Revision, RevisionState

ADVISORY_LOCK_KEY = 0x51175A7
"""Postgres advisory lock id for admissions: one decision at a time across every host."""


@dataclass(frozen=True)
class AdmissionLimits:
    max_builds: int = 2
    max_previews_per_repository: int = 10


@dataclass(frozen=True)
class Queued:
    revision_id: str
    repository_id: int
    deployment_id: str
    is_preview: bool


def plan(
    queue: Sequence[Queued],
    building: int,
    places: Mapping[int, frozenset[str]],
    limits: AdmissionLimits,
) -> dict[str, str | None]:
    """None for each revision that may start now, else the reason it waits (for users)."""
    taken = {repository: set(deployments) for repository, deployments in places.items()}
    decisions: dict[str, str | None] = {}
    for item in queue:
        held = taken.setdefault(item.repository_id, set())
        new_place = item.is_preview and item.deployment_id not in held
        if new_place and len(held) >= limits.max_previews_per_repository:
            decisions[item.revision_id] = (
                f"Waiting for a preview place: {len(held)} previews of this repository are "
                f"running, the most it may have (SLIPWAY_MAX_PREVIEWS_PER_REPOSITORY = "
                f"{limits.max_previews_per_repository}). Closing a pull request frees one."
            )
            continue
        if building >= limits.max_builds:
            decisions[item.revision_id] = (
                f"Waiting for a build slot: {building} builds are running, the most the "
                f"platform runs at once (SLIPWAY_MAX_CONCURRENT_BUILDS = {limits.max_builds})."
            )
            continue
        building += 1
        if item.is_preview:
            held.add(item.deployment_id)
        decisions[item.revision_id] = None
    return decisions


class Admission:
    def __init__(self, limits: AdmissionLimits, lock_path: Path) -> None:
        self.limits = limits
        self._lock_path = lock_path

    @contextmanager
    def locked(self, session: Session) -> Iterator[None]:
        """Held while deciding and moving the admitted revision to building."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            yield
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def decisions(self, session: Session) -> dict[str, str | None]:
        """The plan for every queued revision, from the control plane as it is now."""
        rows = session.exec(
            select(Revision, Deployment)
            .join(Deployment, col(Deployment.id) == col(Revision.deployment_id))
            .where(
                col(Revision.state) == RevisionState.queued,
                col(Deployment.removed_at).is_(None),
            )
            .order_by(col(Revision.created_at), col(Revision.id))
        ).all()
        queue = [
            Queued(revision.id, deployment.repository_id, deployment.id, deployment.is_preview)
            for revision, deployment in rows
            if not (revision.approval_required and revision.approved_by is None)
        ]
        building = len(
            session.exec(
                select(Revision.id).where(col(Revision.state) == RevisionState.building)
            ).all()
        )
        places: dict[int, set[str]] = {}
        previews = session.exec(
            select(Deployment).where(
                col(Deployment.pull_request_number).is_not(None),
                col(Deployment.removed_at).is_(None),
            )
        ).all()
        active = set(
            session.exec(
                select(Revision.deployment_id).where(
                    col(Revision.state).in_([RevisionState.building, RevisionState.deploying])
                )
            ).all()
        )
        for preview in previews:
            if preview.live_revision_id is not None or preview.id in active:
                places.setdefault(preview.repository_id, set()).add(preview.id)
        return plan(
            queue,
            building,
            {repo: frozenset(ids) for repo, ids in places.items()},
            self.limits,
        )
