"""Installations and their connected Repositories, kept in step with GitHub's events."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from app.github.webhooks import InstallationRef, RepositoryListed
from app.kernel.models import Installation, Repository


def upsert_installation(session: Session, ref: InstallationRef, now: datetime) -> Installation:
    installation = session.get(Installation, ref.id)
    if installation is None:
        installation = Installation(
            id=ref.id,
            account_login=ref.account.login if ref.account else f"installation-{ref.id}",
            account_type=ref.account.type if ref.account else "User",
            created_at=now,
            updated_at=now,
        )
        session.add(installation)
    elif ref.account is not None:
        installation.account_login = ref.account.login
        installation.account_type = ref.account.type
        installation.updated_at = now
    return installation


def connect_repository(
    session: Session,
    installation_id: int,
    repository_id: int,
    full_name: str,
    now: datetime,
    default_branch: str | None = None,
) -> Repository:
    repository = session.get(Repository, repository_id)
    if repository is None:
        repository = Repository(
            id=repository_id,
            installation_id=installation_id,
            full_name=full_name,
            default_branch=default_branch or "main",
            created_at=now,
            updated_at=now,
        )
        session.add(repository)
        return repository
    repository.installation_id = installation_id
    repository.full_name = full_name  # repositories get renamed and transferred
    repository.connected = True
    if default_branch:
        repository.default_branch = default_branch
    repository.updated_at = now
    return repository


def installation_created(
    session: Session, ref: InstallationRef, repositories: list[RepositoryListed], now: datetime
) -> str:
    installation = upsert_installation(session, ref, now)
    installation.deleted_at = None
    installation.suspended_at = None
    for listed in repositories:
        connect_repository(session, ref.id, listed.id, listed.full_name, now)
    return f"installation {ref.id} created with {len(repositories)} repositories"


def installation_deleted(session: Session, ref: InstallationRef, now: datetime) -> str:
    installation = upsert_installation(session, ref, now)
    installation.deleted_at = now
    disconnected = _disconnect_all(session, ref.id, now)
    return f"installation {ref.id} deleted; {disconnected} repositories disconnected"


def installation_suspended(
    session: Session, ref: InstallationRef, now: datetime, suspended: bool
) -> str:
    installation = upsert_installation(session, ref, now)
    installation.suspended_at = now if suspended else None
    return f"installation {ref.id} {'suspended' if suspended else 'unsuspended'}"


def repositories_changed(
    session: Session,
    ref: InstallationRef,
    added: list[RepositoryListed],
    removed: list[RepositoryListed],
    now: datetime,
) -> str:
    upsert_installation(session, ref, now)
    for listed in added:
        connect_repository(session, ref.id, listed.id, listed.full_name, now)
    for listed in removed:
        repository = session.get(Repository, listed.id)
        if repository is not None:
            repository.connected = False
            repository.updated_at = now
    return f"{len(added)} repositories connected, {len(removed)} disconnected"


def _disconnect_all(session: Session, installation_id: int, now: datetime) -> int:
    repositories = session.exec(
        select(Repository).where(Repository.installation_id == installation_id)
    ).all()
    for repository in repositories:
        repository.connected = False
        repository.updated_at = now
    return len(repositories)
