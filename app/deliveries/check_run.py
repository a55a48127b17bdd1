"""check_run events: Re-run pressed on one of Slipway's check runs, or its "Deploy preview"
button, which approves a fork's commit for building."""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import col

from app.deliveries.context import EventContext
from app.deliveries.reruns import APPROVERS, refused_rerun, rerun, role_of
from app.deployments import previews
from app.feedback import comments
from app.feedback.reports import DEPLOY_PREVIEW
from app.github.webhooks import CheckRunEvent, CheckRunRef
from app.kernel.models import Deployment, Repository, Revision, RevisionState
from app.kernel.orders import RefusedApproval, WorkOrder

log = logging.getLogger(__name__)


def handle_check_run(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = CheckRunEvent.model_validate(payload)
    label = f"check run {event.check_run.id}"
    if event.action not in ("rerequested", "requested_action"):
        return WorkOrder(f"{label} {event.action}: nothing to do")
    revision = _revision_of_check_run(ctx, event.check_run)
    if revision is None:
        return WorkOrder(f"{label} is not one of Slipway's revisions: nothing to do")
    login = event.sender.login if event.sender else "someone"
    if event.action == "rerequested":
        deployment = ctx.session.get(Deployment, revision.deployment_id)
        assert deployment is not None
        refused = refused_rerun(ctx, deployment.repository_id, login, [revision.id])
        return refused or rerun(ctx, revision, login)
    identifier = event.requested_action.identifier if event.requested_action else ""
    if identifier != DEPLOY_PREVIEW:
        return WorkOrder(f"{label}: unknown action {identifier!r}")
    return _approve(ctx, revision, login)


def _revision_of_check_run(ctx: EventContext, check_run: CheckRunRef) -> Revision | None:
    """Slipway's check runs carry their revision's id as external_id."""
    if not check_run.external_id:
        return None
    revision = ctx.session.get(Revision, check_run.external_id)
    if revision is None or revision.check_run_id != check_run.id:
        return None
    return revision


def _approve(ctx: EventContext, revision: Revision, login: str) -> WorkOrder:
    label = f"Deploy preview of {revision.commit_sha[:7]} pressed by @{login}"
    if not revision.approval_required:
        return WorkOrder(f"{label}: the revision needs no approval")
    if revision.approved_by is not None:
        return WorkOrder(f"{label}: already approved by @{revision.approved_by}")
    if revision.state is not RevisionState.queued:
        return WorkOrder(f"{label}: the revision is {revision.state.value}")
    deployment = ctx.session.get(Deployment, revision.deployment_id)
    assert deployment is not None
    repository = ctx.session.get(Repository, deployment.repository_id)
    assert repository is not None
    role = role_of(ctx, repository, login)
    if role not in APPROVERS:
        log.info(
            "approval refused",
            extra={"revision_id": revision.id, "login": login, "role": role},
        )
        return WorkOrder(
            f"{label}: refused, @{login} has {role} permission",
            refused_approvals=[RefusedApproval(revision.id, login, role)],
        )
    approved = ctx.session.execute(
        update(Revision)
        .where(col(Revision.id) == revision.id, col(Revision.approved_by).is_(None))
        .values(approved_by=login)
    )
    if not approved.rowcount:  # type: ignore[attr-defined]
        return WorkOrder(f"{label}: already approved")
    outcome = WorkOrder(f"{label}: approved", approved_revisions=[revision.id])
    pull_request = previews.pull_request_of(ctx.session, deployment)
    if pull_request is not None:
        comments.bump(pull_request, ctx.now)
        outcome.comments.append(pull_request.id)
    return outcome
