"""A commit built again on request (Re-run on a check run, Re-run all on a check suite), and
who may ask for it or approve a fork's commit: a build runs the repository's code on the
platform, so it is a deploy, and GitHub lets anyone who can see a check run press its buttons.
"""

from __future__ import annotations

import logging

from sqlmodel import col, select

from app.deliveries.approvals import APPROVERS
from app.deliveries.context import EventContext
from app.deployments import previews
from app.deployments.revisions import create_revision
from app.feedback import comments
from app.kernel.errors import GitHubError
from app.kernel.models import Deployment, PullRequestState, Repository, Revision
from app.kernel.orders import WorkOrder

log = logging.getLogger(__name__)


def role_of(ctx: EventContext, repository: Repository, login: str) -> str:
    """The sender's role, asked of GitHub at each press; unknown (refused) if it did not say."""
    try:
        return ctx.facts.permission(repository.installation_id, repository.full_name, login)
    except GitHubError as exc:
        log.warning("permission not read", extra={"login": login, "error": str(exc)})
        return "unknown (GitHub did not answer; press again)"


def refused_rerun(
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
    role = role_of(ctx, repository, login)
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


def rerun(ctx: EventContext, revision: Revision, login: str) -> WorkOrder:
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
            previews.env_source(ctx.session, ctx.secrets, deployment, fork=fork)
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
