"""What each kind of webhook delivery does to the control plane, chosen from a table.

Handlers run inside one transaction and say what they did in an WorkOrder; the caller
commits, records the outcome on the Delivery and starts the revisions it names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import update
from sqlmodel import Session, col, select

from app.deliveries import installations
from app.deliveries.facts import NO_FACTS, CommitFacts
from app.deployments import previews
from app.deployments.registry import PRODUCTION_ENVIRONMENT, deployments_following
from app.deployments.revisions import create_revision
from app.feedback import comments
from app.feedback.reports import DEPLOY_PREVIEW
from app.github.webhooks import (
    NULL_SHA,
    CheckRunEvent,
    CheckRunRef,
    CheckSuiteEvent,
    InstallationEvent,
    InstallationRef,
    InstallationRepositoriesEvent,
    PullRequestEvent,
    PushEvent,
    RepositoryRef,
)
from app.kernel.crypto import SecretBox
from app.kernel.errors import GitHubError
from app.kernel.models import (
    Delivery,
    Deployment,
    Installation,
    PullRequest,
    PullRequestState,
    Repository,
    Revision,
    RevisionState,
)
from app.kernel.orders import RefusedApproval, TeardownOrder, WorkOrder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventContext:
    session: Session
    secrets: SecretBox
    now: datetime
    delivery_id: str
    facts: CommitFacts = field(default_factory=lambda: NO_FACTS)


Handler = Callable[[EventContext, dict[str, object]], WorkOrder]


def handle_ping(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    return WorkOrder("pong: the webhook reaches Slipway")


def handle_installation(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = InstallationEvent.model_validate(payload)
    teardowns: list[TeardownOrder] = []
    match event.action:
        case "created":
            summary = installations.installation_created(
                ctx.session, event.installation, event.repositories or [], ctx.now
            )
        case "deleted":
            summary = installations.installation_deleted(ctx.session, event.installation, ctx.now)
            repositories = ctx.session.exec(
                select(Repository.id).where(Repository.installation_id == event.installation.id)
            ).all()
            for repository_id in repositories:
                teardowns += _take_down_repository(ctx, repository_id, "the App was uninstalled")
        case "suspend" | "unsuspend":
            summary = installations.installation_suspended(
                ctx.session, event.installation, ctx.now, suspended=event.action == "suspend"
            )
        case other:
            summary = f"installation action {other!r} needs nothing"
    return WorkOrder(summary, teardowns=teardowns)


def handle_installation_repositories(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = InstallationRepositoriesEvent.model_validate(payload)
    summary = installations.repositories_changed(
        ctx.session,
        event.installation,
        event.repositories_added,
        event.repositories_removed,
        ctx.now,
    )
    teardowns: list[TeardownOrder] = []
    for listed in event.repositories_removed:
        teardowns += _take_down_repository(ctx, listed.id, "the repository left the App")
    return WorkOrder(summary, teardowns=teardowns)


def _take_down_repository(
    ctx: EventContext, repository_id: int, reason: str
) -> list[TeardownOrder]:
    """Previews go for good; production stops serving but keeps its database for a return."""
    orders: list[TeardownOrder] = []
    deployments = ctx.session.exec(
        select(Deployment).where(
            Deployment.repository_id == repository_id, col(Deployment.removed_at).is_(None)
        )
    ).all()
    for deployment in deployments:
        previews.mark_removed(ctx.session, deployment, reason, ctx.now)
        if deployment.is_preview:
            pull_request = previews.pull_request_of(ctx.session, deployment)
            if pull_request is not None:
                previews.close_pull_request(pull_request, f"because {reason}", ctx.now)
                ctx.session.add(pull_request)
        orders.append(TeardownOrder(deployment.id, drop_database=deployment.is_preview))
    return orders


def handle_push(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = PushEvent.model_validate(payload)
    if event.deleted or event.after == NULL_SHA:
        return WorkOrder(f"{event.ref} was deleted: nothing to deploy")
    if event.branch is None:
        return WorkOrder(f"{event.ref} is not a branch: nothing to deploy")
    if event.installation is None:
        return WorkOrder("push without an installation: the App is not installed there")
    repository = _connected_repository(ctx, event.installation, event.repository)
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


def _connected_repository(
    ctx: EventContext, installation_ref: InstallationRef, repository_ref: RepositoryRef
) -> Repository | WorkOrder:
    """The event's repository, connected to its installation; or why nothing is done."""
    installation = ctx.session.get(Installation, installation_ref.id)
    if installation is None:
        # The App was installed before this platform saw it; the event itself proves access.
        installation = installations.upsert_installation(ctx.session, installation_ref, ctx.now)
    if not installation.active:
        return WorkOrder(f"installation {installation.id} is suspended or deleted")
    repository = ctx.session.get(Repository, repository_ref.id)
    if repository is not None and not repository.connected:
        return WorkOrder(f"{repository_ref.full_name} is no longer connected to the App")
    repository = installations.connect_repository(
        ctx.session,
        installation.id,
        repository_ref.id,
        repository_ref.full_name,
        ctx.now,
        default_branch=repository_ref.branch,
    )
    ctx.session.flush()
    return repository


def handle_pull_request(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = PullRequestEvent.model_validate(payload)
    label = f"pull request #{event.number}"
    if event.action not in previews.OPENING_ACTIONS | previews.UPDATING_ACTIONS | {"closed"}:
        return WorkOrder(f"{label} {event.action}: nothing to do for a preview")
    if event.installation is None:
        return WorkOrder("pull request without an installation: the App is not installed there")
    default_branch = event.repository.branch
    if event.pull_request.base.ref != default_branch:
        return WorkOrder(
            f"{label} targets {event.pull_request.base.ref}, not the default branch "
            f"{default_branch}: no preview"
        )
    repository = _connected_repository(ctx, event.installation, event.repository)
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


def _open_or_update_preview(
    ctx: EventContext, repository: Repository, event: PullRequestEvent
) -> WorkOrder:
    label = f"pull request #{event.number}"
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
    pull_request = previews.record_pull_request(ctx.session, repository, event, ctx.now)
    pull_request.state = PullRequestState.open
    if not settings.enabled:
        outcome = WorkOrder(f"{label}: previews are turned off in slipway.toml")
        deployment = (
            ctx.session.get(Deployment, pull_request.deployment_id)
            if pull_request.deployment_id
            else None
        )
        if deployment is not None and deployment.removed_at is None:
            removed = previews.mark_removed(
                ctx.session, deployment, "previews were turned off in slipway.toml", ctx.now
            )
            pull_request.note = "because slipway.toml turned previews off"
            outcome.cancelled_revisions = [r.id for r in removed.cancelled]
            outcome.teardowns = [TeardownOrder(deployment.id, drop_database=True)]
        return outcome
    if event.pull_request.draft and not settings.drafts:
        return WorkOrder(f"{label} is a draft and slipway.toml says [previews] drafts = false")
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
        env_of=_preview_env_source(ctx.session, deployment, fork=pull_request.fork),
    )
    revision = result.revision
    pull_request.note = None
    comments.bump(pull_request, ctx.now)
    if not result.created:
        return WorkOrder(
            f"{label}: {head[:7]} is already revision #{revision.number} ({revision.id})"
        )
    summary = (
        f"revision #{revision.number} ({revision.id}) of preview {deployment.slug} for {head[:7]}"
    )
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


def _preview_env_source(session: Session, preview: Deployment, *, fork: bool) -> Deployment:
    """A same-repository preview runs with production's env as it is now; a fork's code
    gets none of it (its own, always empty, env)."""
    if fork:
        return preview
    production = session.exec(
        select(Deployment).where(
            Deployment.repository_id == preview.repository_id,
            Deployment.environment == PRODUCTION_ENVIRONMENT,
            col(Deployment.deleted_at).is_(None),
        )
    ).first()
    return production or preview


APPROVERS = frozenset({"admin", "maintain", "write"})
"""Roles whose press of "Deploy preview" lets a fork's commit run, or of "Re-run" builds a
commit again (a build runs the repository's code on the platform: it is a deploy)."""


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
        refused = _refused_rerun(ctx, deployment.repository_id, login, [revision.id])
        return refused or _rerun(ctx, revision, login)
    identifier = event.requested_action.identifier if event.requested_action else ""
    if identifier != DEPLOY_PREVIEW:
        return WorkOrder(f"{label}: unknown action {identifier!r}")
    return _approve(ctx, revision, login)


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
    refused = _refused_rerun(
        ctx, event.repository.id, login, [r.id for r in newest.values()], what="check suite"
    )
    if refused is not None:
        return refused
    outcome = WorkOrder(f"check suite of {sha[:7]} re-requested by @{login}")
    for revision in newest.values():
        part = _rerun(ctx, revision, login)
        outcome.summary += f"; {part.summary}"
        outcome.start_revisions += part.start_revisions
        outcome.announce_revisions += part.announce_revisions
        outcome.cancelled_revisions += part.cancelled_revisions
        outcome.comments += part.comments
    return outcome


def _revision_of_check_run(ctx: EventContext, check_run: CheckRunRef) -> Revision | None:
    """Slipway's check runs carry their revision's id as external_id."""
    if not check_run.external_id:
        return None
    revision = ctx.session.get(Revision, check_run.external_id)
    if revision is None or revision.check_run_id != check_run.id:
        return None
    return revision


def _role(ctx: EventContext, repository: Repository, login: str) -> str:
    """The sender's role, asked of GitHub at each press; unknown (refused) if it did not say."""
    try:
        return ctx.facts.permission(repository.installation_id, repository.full_name, login)
    except GitHubError as exc:
        log.warning("permission not read", extra={"login": login, "error": str(exc)})
        return "unknown (GitHub did not answer; press again)"


def _refused_rerun(
    ctx: EventContext,
    repository_id: int,
    login: str,
    revision_ids: list[str],
    what: str = "re-run",
) -> WorkOrder | None:
    """An outcome that does nothing unless `login` may deploy the repository (write or more).

    Anyone who can see a check run can send GitHub a re-request through the API; what it
    starts (a build of the repository's code, a new live revision) is a deploy.
    """
    repository = ctx.session.get(Repository, repository_id)
    if repository is None:
        return WorkOrder(f"{what} by @{login}: the repository is not connected")
    role = _role(ctx, repository, login)
    if role in APPROVERS:
        return None
    log.warning(
        "re-run refused",
        extra={
            "revision_ids": revision_ids,
            "repository": repository.full_name,
            "login": login,
            "role": role,
            "why": "only write, maintain or admin permission may build again",
        },
    )
    return WorkOrder(
        f"{what} by @{login} refused: @{login} has {role} permission on {repository.full_name} "
        "(write, maintain or admin may build again)"
    )


def _rerun(ctx: EventContext, revision: Revision, login: str) -> WorkOrder:
    """Build the revision's commit again as a new revision, when it is still what is wanted."""
    deployment = ctx.session.get(Deployment, revision.deployment_id)
    assert deployment is not None
    label = f"re-run of {revision.commit_sha[:7]} ({deployment.slug}) by @{login}"
    fork = False
    pull_request = previews.pull_request_of(ctx.session, deployment)
    refusal: str | None = None
    if deployment.removed_at is not None:
        refusal = "the deployment was removed"
    elif deployment.is_preview:
        if pull_request is None or pull_request.state is PullRequestState.closed:
            refusal = "its pull request is closed"
        elif pull_request.head_sha != revision.commit_sha:
            refusal = f"the pull request's head is now {pull_request.head_sha[:7]}"
        else:
            fork = pull_request.fork
    else:
        newest = ctx.session.exec(
            select(Revision)
            .where(Revision.deployment_id == deployment.id)
            .order_by(col(Revision.number).desc())
        ).first()
        if newest is not None and newest.commit_sha != revision.commit_sha:
            refusal = (
                f"{newest.commit_sha[:7]} is newer; building an older commit again would roll "
                "the deployment back"
            )
    if refusal is not None:
        log.info(
            "re-run refused",
            extra={"deployment_id": deployment.id, "revision_id": revision.id, "why": refusal},
        )
        return WorkOrder(f"{label} does nothing: {refusal}")
    result = create_revision(
        ctx.session,
        deployment,
        revision.commit_sha,
        revision.commit_message,
        ctx.secrets,
        ctx.now,
        delivery_id=ctx.delivery_id,
        fresh=True,
        approval_required=fork,
        env_of=(
            _preview_env_source(ctx.session, deployment, fork=fork)
            if deployment.is_preview
            else None
        ),
    )
    new = result.revision
    outcome = WorkOrder(
        f"{label}: revision #{new.number} ({new.id})",
        cancelled_revisions=[r.id for r in result.cancelled],
    )
    if new.approval_required:
        outcome.announce_revisions.append(new.id)
    else:
        outcome.start_revisions.append(new.id)
    if pull_request is not None:
        comments.bump(pull_request, ctx.now)
        outcome.comments.append(pull_request.id)
    return outcome


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
    role = _role(ctx, repository, login)
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


HANDLERS: dict[str, Handler] = {
    "ping": handle_ping,
    "installation": handle_installation,
    "installation_repositories": handle_installation_repositories,
    "push": handle_push,
    "pull_request": handle_pull_request,
    "check_run": handle_check_run,
    "check_suite": handle_check_suite,
}


def process_delivery(
    session: Session,
    delivery: Delivery,
    secrets: SecretBox,
    now: datetime,
    facts: CommitFacts | None = None,
) -> WorkOrder:
    """Apply one delivery; unknown events and unreadable payloads are recorded, not raised."""
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return WorkOrder(f"{delivery.event} events are recorded and ignored")
    payload = json.loads(delivery.payload)
    ctx = EventContext(
        session=session,
        secrets=secrets,
        now=now,
        delivery_id=delivery.id,
        facts=facts or NO_FACTS,
    )
    try:
        return handler(ctx, payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        log.warning(
            "delivery payload unreadable",
            extra={"delivery_id": delivery.id, "event": delivery.event, "problems": problems},
        )
        session.rollback()
        return WorkOrder(f"payload could not be read ({problems}); nothing done")
