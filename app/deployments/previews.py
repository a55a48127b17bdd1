"""Pull-request previews in the control plane: which pull request gets a preview, and its state.

A preview is a `development` deployment of one pull request, addressed as
`pr-<number>--<production slug>` for the life of the pull request (also across close and
reopen). This module decides and records; side effects (containers, databases, router,
GitHub) belong to the pipeline, the teardown service and the comment service.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from app.deployments.environment import StoredEnv, preview_env
from app.deployments.registry import (
    MAX_LABEL,
    PRODUCTION_ENVIRONMENT,
    production_deployment,
    slug_available,
)
from app.deployments.revisions import cancel_in_flight
from app.github.webhooks import PullRequestEvent
from app.kernel.crypto import SecretBox
from app.kernel.models import (
    Deployment,
    PullRequest,
    PullRequestState,
    Repository,
    Revision,
    RevisionState,
)
from manifests.containers import DeploymentType

SKIP_DEPLOY = re.compile(r"\[(skip deploy|deploy skip|skip ci|ci skip)\]", re.IGNORECASE)
"""Markers in a head commit's message that make no revision (GitHub's own `[skip ci]` too)."""
OPENING_ACTIONS = frozenset({"opened", "reopened", "ready_for_review"})
UPDATING_ACTIONS = frozenset({"synchronize"})
LABEL_ACTIONS = frozenset({"labeled", "unlabeled"})
"""A label put on or taken off: the preview follows it when `[previews] trigger = "label"`, and
the label put on brings back a preview removed for going unused under either trigger."""
DEFAULT_LABEL = "preview"


def skips_deploy(message: str) -> bool:
    return SKIP_DEPLOY.search(message or "") is not None


def preview_environment(number: int) -> str:
    """The GitHub environment a preview reports to."""
    return f"pr-{number}"


def preview_slug(number: int, production_slug: str) -> str:
    """`pr-<n>--<production slug>`, cut to one DNS label."""
    prefix = f"pr-{number}--"
    return (prefix + production_slug)[:MAX_LABEL].rstrip("-")


@dataclass(frozen=True)
class PreviewSettings:
    """The repository's `[previews]` table at the head commit."""

    enabled: bool = True
    drafts: bool = True
    by_label: bool = False
    """`trigger = "label"`: a preview only while the pull request carries `label`."""
    label: str = DEFAULT_LABEL
    idle_ttl: str | None = None
    """`idle_ttl`: unused this long, the preview is removed as on close ("3d", "30s")."""

    def is_label(self, name: str | None) -> bool:
        """GitHub keeps one label per name whatever its case, so the case does not matter."""
        return name is not None and name.casefold() == self.label.casefold()


class Verdict(enum.Enum):
    build = "build"
    """The pull request should have a preview of its head commit."""
    remove = "remove"
    """It should have none: a preview it has is removed, as on close."""
    wait = "wait"
    """Not now (a draft), but what it has stays."""
    ignore = "ignore"
    """The delivery says nothing previews care about (another label)."""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str = ""
    """For the work order's summary."""
    note: str | None = None
    """For the comment, completing "The preview was removed ..." (remove only)."""


def shown_label(label: str) -> str:
    """The label as the comment shows it, inside a code span it cannot break out of."""
    return label.replace("`", "'")


def removed_for_idleness(deployment: Deployment | None) -> bool:
    """The preview is out of service because it went unused for its `idle_ttl` (and since then
    neither deleted nor removed for another reason): its label put on brings it back."""
    return (
        deployment is not None
        and deployment.idle_removed_at is not None
        and deployment.removed_at is not None
        and deployment.deleted_at is None
    )


def decide(
    settings: PreviewSettings,
    *,
    action: str,
    labels: Iterable[str],
    changed_label: str | None = None,
    draft: bool = False,
    idle_removed: bool = False,
) -> Decision:
    """Whether an open pull request's delivery builds, removes or leaves its preview; pure.

    `labels` are the ones it carries after the delivery's change; `changed_label` is the one
    a `labeled` or `unlabeled` delivery put on or took off. `idle_removed`: its preview was
    removed for going unused (`removed_for_idleness`), so the label put on (under either
    trigger, as `/deploy` would) builds its head again; on a live preview it changes nothing.
    """
    brings_back = action == "labeled" and idle_removed and settings.is_label(changed_label)
    if (
        action in LABEL_ACTIONS
        and not brings_back
        and not (settings.by_label and settings.is_label(changed_label))
    ):
        trigger = f'the "{settings.label}" label' if settings.by_label else "every pull request"
        return Decision(
            Verdict.ignore, f"label {changed_label!r} {action}: previews follow {trigger}"
        )
    if not settings.enabled:
        return Decision(
            Verdict.remove,
            "previews are turned off in slipway.toml",
            "because slipway.toml turned previews off",
        )
    if settings.by_label and not any(settings.is_label(name) for name in labels):
        shown = shown_label(settings.label)
        if action == "unlabeled":
            return Decision(
                Verdict.remove,
                f'the "{settings.label}" label was taken off',
                f"when the `{shown}` label was taken off the pull request "
                "(labelling it again deploys a new one)",
            )
        return Decision(
            Verdict.remove,
            f'no "{settings.label}" label (slipway.toml: [previews] trigger = "label")',
            f"because the pull request does not carry the `{shown}` label",
        )
    if draft and not settings.drafts:
        return Decision(Verdict.wait, "a draft, and slipway.toml says [previews] drafts = false")
    if brings_back:
        return Decision(
            Verdict.build,
            f'the "{settings.label}" label brings back the preview removed for going unused',
        )
    return Decision(Verdict.build)


@dataclass
class RemovedDeployment:
    """What marking a deployment removed changed, for the reports that follow."""

    deployment: Deployment
    cancelled: list[Revision] = field(default_factory=list)
    retired: Revision | None = None
    """The revision that was live until now."""


def record_pull_request(
    session: Session, repository: Repository, event: PullRequestEvent, now: datetime
) -> PullRequest:
    """The pull request's row, with head, draft and fork as this delivery tells them."""
    pr = event.pull_request
    head_repo = pr.head.repo
    row = session.exec(
        select(PullRequest).where(
            PullRequest.repository_id == repository.id, PullRequest.number == event.number
        )
    ).first()
    if row is None:
        row = PullRequest(
            repository_id=repository.id,
            number=event.number,
            head_sha=pr.head.sha,
            head_ref=pr.head.ref,
            head_full_name=head_repo.full_name if head_repo else "(deleted fork)",
            created_at=now,
        )
    row.head_sha = pr.head.sha
    row.head_ref = pr.head.ref
    row.head_full_name = head_repo.full_name if head_repo else "(deleted fork)"
    row.fork = event.from_fork
    row.draft = pr.draft
    row.updated_at = now
    session.add(row)
    session.flush()
    return row


def preview_deployment(
    session: Session, repository: Repository, pull_request: PullRequest, now: datetime
) -> tuple[Deployment, bool]:
    """The pull request's preview, created or brought back; True when it was new or removed.

    The production deployment is made (without a revision) when the repository has none yet,
    so the preview's address is the one it keeps once production exists.
    """
    deployment = (
        session.get(Deployment, pull_request.deployment_id) if pull_request.deployment_id else None
    )
    if deployment is not None:
        revived = deployment.removed_at is not None
        deployment.removed_at = None
        deployment.idle_removed_at = None
        deployment.branch = pull_request.head_ref
        deployment.updated_at = now
        session.add(deployment)
        return deployment, revived
    production = production_deployment(session, repository, now)
    deployment = Deployment(
        repository_id=repository.id,
        slug=_free_preview_slug(session, repository, pull_request.number, production.slug, now),
        environment=preview_environment(pull_request.number),
        branch=pull_request.head_ref,
        type=DeploymentType.development,
        pull_request_number=pull_request.number,
        created_at=now,
        updated_at=now,
    )
    session.add(deployment)
    session.flush()
    pull_request.deployment_id = deployment.id
    session.add(pull_request)
    return deployment, True


def _free_preview_slug(
    session: Session, repository: Repository, number: int, production_slug: str, now: datetime
) -> str:
    """Checked like every slug (reserved, taken, held), though `pr-<n>--` rarely collides."""
    slug = preview_slug(number, production_slug)
    for suffix in range(2, 100):
        if slug_available(session, slug, repository.id, now):
            return slug
        slug = preview_slug(number, f"{production_slug[: MAX_LABEL - 12]}-{suffix}")
    raise RuntimeError(f"no free slug for pull request #{number} of {production_slug}")


def mark_removed(
    session: Session, deployment: Deployment, reason: str, now: datetime
) -> RemovedDeployment:
    """Take the deployment out of service in the control plane; safe to call again.

    Whatever was in flight is cancelled (a build or start still running notices and stops),
    the live revision is retired and the deployment leaves the route table. The teardown
    service then removes what ran.
    """
    removed = RemovedDeployment(deployment=deployment)
    removed.cancelled = cancel_in_flight(session, deployment.id, reason, now)
    if deployment.live_revision_id is not None:
        live = session.get(Revision, deployment.live_revision_id)
        if live is not None and live.state is RevisionState.live:
            live.state = RevisionState.superseded
            live.error = reason
            live.finished_at = now
            session.add(live)
            removed.retired = live
    deployment.live_revision_id = None
    if deployment.removed_at is None:
        deployment.removed_at = now
    deployment.updated_at = now
    session.add(deployment)
    return removed


def pull_request_of(session: Session, deployment: Deployment) -> PullRequest | None:
    if deployment.pull_request_number is None:
        return None
    return session.exec(
        select(PullRequest).where(PullRequest.deployment_id == deployment.id)
    ).first()


def close_pull_request(pull_request: PullRequest, why: str, now: datetime) -> None:
    """`why` completes "The preview was removed ...", e.g. "when the pull request was merged"."""
    pull_request.state = PullRequestState.closed
    pull_request.note = why
    pull_request.updated_at = now


def env_source(
    session: Session, box: SecretBox, preview: Deployment, *, fork: bool
) -> Deployment | StoredEnv:
    """A same-repository preview runs with production's env as it is now, under production's
    preview overrides; a fork's code gets none of either (its own, always empty, env)."""
    if fork:
        return preview
    production = session.exec(
        select(Deployment).where(
            Deployment.repository_id == preview.repository_id,
            Deployment.environment == PRODUCTION_ENVIRONMENT,
            col(Deployment.deleted_at).is_(None),
        )
    ).first()
    if production is None:
        return preview
    return preview_env(box, production)
