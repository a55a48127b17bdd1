"""check_suite events: Re-run all pressed on a commit's checks builds again the newest revision
of each deployment Slipway built that commit for."""

from __future__ import annotations

from sqlmodel import col, select

from app.deliveries.context import EventContext
from app.deliveries.reruns import refused_rerun, rerun
from app.github.webhooks import CheckSuiteEvent
from app.kernel.models import Deployment, Revision
from app.kernel.orders import WorkOrder


def handle_check_suite(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = CheckSuiteEvent.model_validate(payload)
    if event.action != "rerequested":
        return WorkOrder(f"check suite {event.action}: nothing to do")
    sha = event.check_suite.head_sha
    login = event.sender.login if event.sender else "someone"
    newest: dict[str, Revision] = {}
    for revision in ctx.session.exec(
        select(Revision)
        .join(Deployment, col(Deployment.id) == col(Revision.deployment_id))
        .where(Deployment.repository_id == event.repository.id, Revision.commit_sha == sha)
        .order_by(col(Revision.number))
    ).all():
        newest[revision.deployment_id] = revision
    if not newest:
        return WorkOrder(f"check suite of {sha[:7]}: Slipway built nothing for it")
    refused = refused_rerun(
        ctx, event.repository.id, login, [r.id for r in newest.values()], what="check suite"
    )
    if refused is not None:
        return refused
    outcome = WorkOrder(f"check suite of {sha[:7]} re-requested by @{login}")
    for revision in newest.values():
        part = rerun(ctx, revision, login)
        outcome.summary += f"; {part.summary}"
        outcome.start_revisions += part.start_revisions
        outcome.announce_revisions += part.announce_revisions
        outcome.cancelled_revisions += part.cancelled_revisions
        outcome.comments += part.comments
    return outcome
