"""pull_request events: a pull request's preview opened, updated, or removed when it closes.

Previews follow pull requests into the default branch only; `slipway.toml`'s `[previews]` at
the head commit can turn them off, leave drafts out, or keep them to pull requests that carry a
label (then `labeled` builds one and `unlabeled` removes it as closing does). Under either
trigger that label put on brings back a preview removed for going unused (`idle_ttl`), as a
new commit does. A fork's commit waits for a maintainer's approval (check_run.py) before it is
built, however it was asked for.
"""

from __future__ import annotations

import logging

from sqlmodel import select

from app.deliveries.context import EventContext
from app.deliveries.installation import connected_repository
from app.deployments import previews
from app.deployments.previews import Verdict
from app.deployments.revisions import create_revision
from app.feedback import comments
from app.github.webhooks import PullRequestEvent
from app.kernel.models import Deployment, PullRequest, PullRequestState, Repository
from app.kernel.orders import TeardownOrder, WorkOrder

log = logging.getLogger(__name__)

HANDLED_ACTIONS = (
    previews.OPENING_ACTIONS | previews.UPDATING_ACTIONS | previews.LABEL_ACTIONS | {"closed"}
)


def handle_pull_request(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = PullRequestEvent.model_validate(payload)
    label = f"pull request #{event.number}"
    if event.action not in HANDLED_ACTIONS:
        return WorkOrder(f"{label} {event.action}: nothing to do for a preview")
    if event.installation is None:
        return WorkOrder("pull request without an installation: the App is not installed there")
    default_branch = event.repository.branch
    if event.pull_request.base.ref != default_branch:
        return WorkOrder(
            f"{label} targets {event.pull_request.base.ref}, not the default branch "
            f"{default_branch}: no preview"
        )
    repository = connected_repository(ctx, event.installation, event.repository)
    if isinstance(repository, WorkOrder):
        return repository
    if event.action == "closed":
        return _close_preview(ctx, repository, event)
    return _open_or_update_preview(ctx, repository, event)


def _close_preview(ctx: EventContext, repository: Repository, event: PullRequestEvent) -> WorkOrder:
    pull_request = previews.record_pull_request(ctx.session, repository, event, ctx.now)
    how = "merged" if event.pull_request.merged else "closed"
    previews.close_pull_request(pull_request, f"when the pull request was {how}", ctx.now)
    deployment = (
        ctx.session.get(Deployment, pull_request.deployment_id)
        if pull_request.deployment_id
        else None
    )
    if deployment is None:
        return WorkOrder(f"pull request #{event.number} {how}; it had no preview")
    removed = previews.mark_removed(ctx.session, deployment, f"the pull request was {how}", ctx.now)
    return WorkOrder(
        f"pull request #{event.number} {how}: preview {deployment.slug} is being removed",
        cancelled_revisions=[r.id for r in removed.cancelled],
        teardowns=[TeardownOrder(deployment.id, drop_database=True)],
    )


def _remove_unwanted(
    ctx: EventContext, pull_request: PullRequest, decision: previews.Decision, summary: str
) -> WorkOrder:
    """The pull request stays open without a preview: one it has goes as on close."""
    outcome = WorkOrder(summary)
    deployment = (
        ctx.session.get(Deployment, pull_request.deployment_id)
        if pull_request.deployment_id
        else None
    )
    if deployment is None or deployment.removed_at is not None:
        return outcome
    removed = previews.mark_removed(ctx.session, deployment, decision.why, ctx.now)
    pull_request.note = decision.note
    outcome.summary += f": preview {deployment.slug} is being removed"
    outcome.cancelled_revisions = [r.id for r in removed.cancelled]
    outcome.teardowns = [TeardownOrder(deployment.id, drop_database=True)]
    return outcome


def _open_or_update_preview(
    ctx: EventContext, repository: Repository, event: PullRequestEvent
) -> WorkOrder:
    label = f"pull request #{event.number}"
    if event.pull_request.state != "open":
        return WorkOrder(
            f"{label} {event.action} while it is {event.pull_request.state}: no preview"
        )
    known = ctx.session.exec(
        select(PullRequest).where(
            PullRequest.repository_id == repository.id, PullRequest.number == event.number
        )
    ).first()
    if known is not None and known.state is PullRequestState.closed and event.action != "reopened":
        return WorkOrder(f"{label} {event.action} arrived after it closed: nothing to do")
    head = event.pull_request.head.sha
    settings, message = ctx.facts.pull_request_facts(
        repository.installation_id, repository.full_name, head
    )
    had = (
        ctx.session.get(Deployment, known.deployment_id)
        if known is not None and known.deployment_id
        else None
    )
    decision = previews.decide(
        settings,
        action=event.action,
        labels=[found.name for found in event.pull_request.labels],
        changed_label=event.label.name if event.label else None,
        draft=event.pull_request.draft,
        idle_removed=previews.removed_for_idleness(had),
    )
    if decision.verdict is Verdict.ignore:
        return WorkOrder(f"{label}: {decision.why}")
    pull_request = previews.record_pull_request(ctx.session, repository, event, ctx.now)
    pull_request.state = PullRequestState.open
    if decision.verdict is Verdict.remove:
        return _remove_unwanted(ctx, pull_request, decision, f"{label}: {decision.why}")
    if decision.verdict is Verdict.wait:
        return WorkOrder(f"{label} is {decision.why}")
    if previews.skips_deploy(message):
        log.info(
            "pull request commit skipped by its message",
            extra={"delivery_id": ctx.delivery_id, "commit": head, "pull_request": event.number},
        )
        return WorkOrder(f"{label}: {head[:7]} asks for [skip deploy]: no revision")
    deployment, revived = previews.preview_deployment(
        ctx.session, repository, pull_request, ctx.now
    )
    result = create_revision(
        ctx.session,
        deployment,
        head,
        message or event.pull_request.title,
        ctx.secrets,
        ctx.now,
        delivery_id=ctx.delivery_id,
        fresh=revived,
        approval_required=pull_request.fork,
        env_of=previews.env_source(ctx.session, ctx.secrets, deployment, fork=pull_request.fork),
    )
    revision = result.revision
    deployment.preview_idle_ttl = settings.idle_ttl
    deployment.preview_label = settings.label
    if result.created or revived:
        # A new commit is a use: its unused time counts again from when it is next live.
        deployment.last_used_at = None
    pull_request.note = None
    comments.bump(pull_request, ctx.now)
    if not result.created:
        return WorkOrder(
            f"{label}: {head[:7]} is already revision #{revision.number} ({revision.id})"
        )
    summary = (
        f"revision #{revision.number} ({revision.id}) of preview {deployment.slug} for {head[:7]}"
    )
    if decision.why:
        summary += f" ({decision.why})"
    if revision.approval_required:
        # Code from a fork runs only once a maintainer says so on its check run.
        return WorkOrder(
            summary + ", waiting for a maintainer's approval",
            cancelled_revisions=[r.id for r in result.cancelled],
            announce_revisions=[revision.id],
            comments=[pull_request.id],
        )
    return WorkOrder(
        summary,
        start_revisions=[revision.id],
        cancelled_revisions=[r.id for r in result.cancelled],
        comments=[pull_request.id],
    )
