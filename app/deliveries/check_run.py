"""check_run events: Re-run pressed on one of Slipway's check runs, or its "Deploy preview"
button, which approves a fork's commit for building."""

from __future__ import annotations

import logging

from app.deliveries.approvals import approve_revision
from app.deliveries.context import EventContext
from app.deliveries.reruns import refused_rerun, rerun, role_of
from app.feedback.reports import DEPLOY_PREVIEW
from app.github.webhooks import CheckRunEvent, CheckRunRef
from app.kernel.models import Deployment, Revision
from app.kernel.orders import WorkOrder

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
    return approve_revision(
        ctx.session,
        revision,
        login,
        lambda repository: role_of(ctx, repository, login),
        ctx.now,
        f"Deploy preview of {revision.commit_sha[:7]} pressed by @{login}",
    )
