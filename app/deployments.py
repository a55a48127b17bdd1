"""Deployments: found or created for a repository branch, addressed by a DNS-safe slug."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session, col, select

from app.errors import NotFoundError
from app.models import Deployment, DeploymentType, Repository

PRODUCTION_ENVIRONMENT = "production"
MAX_LABEL = 63
"""A DNS label (the slug is one) has at most 63 characters."""


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:MAX_LABEL].rstrip("-") or "app"


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
        slug=_free_slug(session, repository),
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


def _free_slug(session: Session, repository: Repository) -> str:
    """The repository name when free, else name-owner, else with a number: short URLs first."""
    candidates = [slugify(repository.name), slugify(f"{repository.name}-{repository.owner}")]
    candidates += [slugify(f"{repository.name}-{repository.owner}-{n}") for n in range(2, 100)]
    for candidate in candidates:
        taken = session.exec(select(Deployment.id).where(Deployment.slug == candidate)).first()
        if taken is None:
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
