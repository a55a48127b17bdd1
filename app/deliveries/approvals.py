"""Approving a fork's commit for building: one rule for every button that does it.

A fork's pull request runs code its repository's people have not reviewed, so its revision
waits (`approval_required`) until someone with write permission approves it: the "Deploy
preview" button on its check run, or "Approve and build" on the dashboard. Both come here;
only how they learned the approver's role differs (GitHub asked at each press, or the
dashboard's view of the person's access).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col

from app.deployments import previews
from app.feedback import comments
from app.kernel.models import Deployment, Repository, Revision, RevisionState
from app.kernel.orders import RefusedApproval, WorkOrder

log = logging.getLogger(__name__)

APPROVERS = frozenset({"admin", "maintain", "write"})
"""Roles whose approval lets a fork's commit run, or whose "Re-run" builds a commit again (a
build runs the repository's code on the platform: it is a deploy)."""


def approve_revision(
    session: Session,
    revision: Revision,
    login: str,
    role_of: Callable[[Repository], str],
    now: datetime,
    label: str,
) -> WorkOrder:
    """Record `login` as the revision's approver and order its build, if it waits for one and
    `role_of` (asked only then) says they may; otherwise a work order that says why not.

    The caller commits the session, then carries the order out: the approval check run is
    closed, the build gets its own, and its job is queued.
    """
    if not revision.approval_required:
        return WorkOrder(f"{label}: the revision needs no approval")
    if revision.approved_by is not None:
        return WorkOrder(f"{label}: already approved by @{revision.approved_by}")
    if revision.state is not RevisionState.queued:
        return WorkOrder(f"{label}: the revision is {revision.state.value}")
    deployment = session.get(Deployment, revision.deployment_id)
    assert deployment is not None
    repository = session.get(Repository, deployment.repository_id)
    assert repository is not None
    role = role_of(repository)
    if role not in APPROVERS:
        log.info(
            "approval refused",
            extra={"revision_id": revision.id, "login": login, "role": role},
        )
        return WorkOrder(
            f"{label}: refused, @{login} has {role} permission",
            refused_approvals=[RefusedApproval(revision.id, login, role)],
        )
    approved = session.execute(
        update(Revision)
        .where(col(Revision.id) == revision.id, col(Revision.approved_by).is_(None))
        .values(approved_by=login)
    )
    if not approved.rowcount:  # type: ignore[attr-defined]
        return WorkOrder(f"{label}: already approved")
    log.info(
        "revision approved",
        extra={"revision_id": revision.id, "deployment_id": deployment.id, "login": login},
    )
    outcome = WorkOrder(f"{label}: approved", approved_revisions=[revision.id])
    pull_request = previews.pull_request_of(session, deployment)
    if pull_request is not None:
        comments.bump(pull_request, now)
        outcome.comments.append(pull_request.id)
    return outcome
