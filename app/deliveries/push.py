"""push events: a revision for every deployment that follows the pushed branch."""

from __future__ import annotations

import logging

from app.deliveries.context import EventContext
from app.deliveries.installation import connected_repository
from app.deployments import previews
from app.deployments.registry import deployments_following
from app.deployments.revisions import create_revision
from app.github.webhooks import NULL_SHA, PushEvent
from app.kernel.orders import WorkOrder

log = logging.getLogger(__name__)


def handle_push(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = PushEvent.model_validate(payload)
    if event.deleted or event.after == NULL_SHA:
        return WorkOrder(f"{event.ref} was deleted: nothing to deploy")
    if event.branch is None:
        return WorkOrder(f"{event.ref} is not a branch: nothing to deploy")
    if event.installation is None:
        return WorkOrder("push without an installation: the App is not installed there")
    repository = connected_repository(ctx, event.installation, event.repository)
    if isinstance(repository, WorkOrder):
        return repository
    following = deployments_following(ctx.session, repository, event.branch, ctx.now)
    if not following:
        return WorkOrder(f"no deployment follows {event.branch}: nothing to deploy")
    message = event.head_commit.message if event.head_commit else ""
    if previews.skips_deploy(message):
        log.info(
            "push skipped by its commit message",
            extra={"delivery_id": ctx.delivery_id, "commit": event.after},
        )
        return WorkOrder(f"{event.after[:7]} asks for [skip deploy]: no revision")
    outcome = WorkOrder("")
    parts = []
    for deployment in following:
        if not deployment.deploy_on_push:
            parts.append(f"{deployment.slug} deploys {event.branch} only on request")
            continue
        revived = deployment.removed_at is not None
        deployment.removed_at = None
        result = create_revision(
            ctx.session,
            deployment,
            event.after,
            message,
            ctx.secrets,
            ctx.now,
            delivery_id=ctx.delivery_id,
            fresh=revived,
        )
        revision = result.revision
        if not result.created:
            parts.append(
                f"{event.after[:7]} is already revision #{revision.number} ({revision.id})"
            )
            continue
        what = f"revision #{revision.number} ({revision.id}) of {deployment.slug}"
        parts.append(f"{what} for {event.after[:7]}")
        outcome.start_revisions.append(revision.id)
        outcome.cancelled_revisions += [r.id for r in result.cancelled]
    outcome.summary = "; ".join(parts)
    return outcome
