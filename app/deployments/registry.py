"""Deployments: found or created for a repository branch, addressed by a DNS-safe slug.

A slug is an address other people reach (`<slug>.<BASE_DOMAIN>`), so who gets one is decided
here, for every way one is given (the repository's name, a preview, a name asked for through
the API): never a reserved name, never one a live deployment has, and not one another
repository's deployment had until its hold ends.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from app.kernel.errors import ConflictError, InvalidRequest, NotFoundError
from app.kernel.models import Deployment, Repository, Revision, SlugHold
from manifests.containers import DeploymentType
from manifests.run import RunConfig

PRODUCTION_ENVIRONMENT = "production"
MAX_LABEL = 63
"""A DNS label (the slug is one) has at most 63 characters."""
DEFAULT_SLUG_HOLD = timedelta(days=7)
"""How long a deleted deployment's slug stays its repository's (SLIPWAY_SLUG_HOLD_DAYS sets it)."""
RESERVED_SLUGS = frozenset(
    {
        # The platform's own names: its API, dashboard and setup live, or may live, at them.
        "slipway", "api", "admin", "setup", "dashboard", "status", "webhooks", "app", "apps",
        "console", "login", "auth", "oauth", "account", "accounts", "docs", "static",
        "assets", "cdn", "metrics", "health", "registry", "router", "caddy",
        # Names that mean the domain itself or its mail and DNS to people and to software:
        # a tenant holding one could receive mail, pass a domain check or look official.
        "www", "mail", "email", "webmail", "smtp", "imap", "pop", "pop3", "mx", "ftp",
        "sftp", "ns", "ns1", "ns2", "dns", "autoconfig", "autodiscover", "localhost",
        "_acme-challenge", "_dmarc", "_domainkey", "wpad", "isatap",
    }
)  # fmt: skip
"""Slugs no deployment is given (a DNS label under BASE_DOMAIN each): an automatic slug takes
the next free variant, a name asked for is refused. Deployments that had one before it was
listed keep it."""


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:MAX_LABEL].rstrip("-") or "app"


def check_slug_available(session: Session, slug: str, repository_id: int, now: datetime) -> None:
    """Refuse (InvalidRequest: reserved; ConflictError: someone has it) unless `slug` may go
    to a new deployment of the repository; the message is for the person who asked for it."""
    if slug in RESERVED_SLUGS:
        raise InvalidRequest(
            f"the name {slug!r} is reserved (names of the platform, of the domain's mail and "
            "DNS, and the like): choose another"
        )
    if session.exec(select(Deployment.id).where(Deployment.slug == slug)).first() is not None:
        raise ConflictError(f"the name {slug!r} is taken by another deployment")
    hold = session.get(SlugHold, slug)
    if hold is not None and hold.held_until > now and hold.repository_id != repository_id:
        raise ConflictError(
            f"the name {slug!r} belonged to a deployment deleted on "
            f"{hold.released_at:%Y-%m-%d}; it stays its repository's until "
            f"{hold.held_until:%Y-%m-%d %H:%M} UTC: choose another"
        )


def slug_available(session: Session, slug: str, repository_id: int, now: datetime) -> bool:
    try:
        check_slug_available(session, slug, repository_id, now)
    except (InvalidRequest, ConflictError):
        return False
    return True


def hold_slug(session: Session, deployment: Deployment, now: datetime, hold: timedelta) -> None:
    """Keep the slug of a deployment being deleted for its repository until now + hold."""
    # One row per slug: a later deletion (the repository took it back) renews the hold.
    session.merge(
        SlugHold(
            slug=deployment.slug,
            repository_id=deployment.repository_id,
            deployment_id=deployment.id,
            released_at=now,
            held_until=now + hold,
        )
    )


def production_deployment(session: Session, repository: Repository, now: datetime) -> Deployment:
    """The default branch's deployment, created on its first push."""
    existing = session.exec(
        select(Deployment).where(
            Deployment.repository_id == repository.id,
            Deployment.environment == PRODUCTION_ENVIRONMENT,
        )
    ).first()
    if existing is not None:
        return existing
    deployment = Deployment(
        repository_id=repository.id,
        slug=_free_slug(session, repository, now),
        environment=PRODUCTION_ENVIRONMENT,
        branch=repository.default_branch,
        type=DeploymentType.production,
        created_at=now,
        updated_at=now,
    )
    session.add(deployment)
    session.flush()
    return deployment


def deployments_following(
    session: Session, repository: Repository, branch: str, now: datetime
) -> list[Deployment]:
    """Every deployment a push to `branch` concerns (previews follow pull requests instead).

    The default branch always has its production deployment, made on its first push, unless
    its owner deleted it.
    """
    following = list(
        session.exec(
            select(Deployment)
            .where(
                Deployment.repository_id == repository.id,
                Deployment.branch == branch,
                col(Deployment.pull_request_number).is_(None),
                col(Deployment.deleted_at).is_(None),
            )
            .order_by(col(Deployment.created_at))
        ).all()
    )
    if branch == repository.default_branch:
        production = production_deployment(session, repository, now)
        if production.deleted_at is None and production not in following:
            following.insert(0, production)
    return following


def _free_slug(session: Session, repository: Repository, now: datetime) -> str:
    """The repository name when free, else name-owner, else with a number: short URLs first."""
    candidates = [slugify(repository.name), slugify(f"{repository.name}-{repository.owner}")]
    candidates += [slugify(f"{repository.name}-{repository.owner}-{n}") for n in range(2, 100)]
    for candidate in candidates:
        if slug_available(session, candidate, repository.id, now):
            return candidate
    raise RuntimeError(f"no free slug for {repository.full_name}")


def get_deployment(session: Session, deployment_id: str) -> Deployment:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFoundError(f"no deployment with id {deployment_id}")
    return deployment


def list_deployments(session: Session) -> list[Deployment]:
    """Every deployment but the deleted ones (their rows stay, for their revisions' history)."""
    return list(
        session.exec(
            select(Deployment)
            .where(col(Deployment.deleted_at).is_(None))
            .order_by(col(Deployment.created_at))
        ).all()
    )


def is_langgraph(session: Session, deployment: Deployment) -> bool:
    """Its live revision runs a LangGraph Server (as recorded when it was built)."""
    if deployment.live_revision_id is None:
        return False
    revision = session.get(Revision, deployment.live_revision_id)
    if revision is None or not revision.run_config:
        return False
    return RunConfig.from_json(revision.run_config).langgraph_runtime is not None
