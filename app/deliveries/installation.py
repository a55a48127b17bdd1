"""installation and installation_repositories events: Installations and their connected
Repositories kept in step with GitHub, and the deployments of a repository that leaves taken down.

Every other event's repository is connected here too (`connected_repository`): the App may have
been installed before this platform saw it, and the event itself proves access.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from app.deliveries.context import EventContext
from app.deployments import previews
from app.github.webhooks import (
    InstallationEvent,
    InstallationRef,
    InstallationRepositoriesEvent,
    RepositoryListed,
    RepositoryRef,
)
from app.kernel.models import Deployment, Installation, Repository
from app.kernel.orders import TeardownOrder, WorkOrder


def handle_installation(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = InstallationEvent.model_validate(payload)
    teardowns: list[TeardownOrder] = []
    match event.action:
        case "created":
            summary = installation_created(
                ctx.session, event.installation, event.repositories or [], ctx.now
            )
        case "deleted":
            summary = installation_deleted(ctx.session, event.installation, ctx.now)
            repositories = ctx.session.exec(
                select(Repository.id).where(Repository.installation_id == event.installation.id)
            ).all()
            for repository_id in repositories:
                teardowns += _take_down_repository(ctx, repository_id, "the App was uninstalled")
        case "suspend" | "unsuspend":
            summary = installation_suspended(
                ctx.session, event.installation, ctx.now, suspended=event.action == "suspend"
            )
        case other:
            summary = f"installation action {other!r} needs nothing"
    return WorkOrder(summary, teardowns=teardowns)


def handle_installation_repositories(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    event = InstallationRepositoriesEvent.model_validate(payload)
    summary = repositories_changed(
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


def connected_repository(
    ctx: EventContext, installation_ref: InstallationRef, repository_ref: RepositoryRef
) -> Repository | WorkOrder:
    """The event's repository, connected to its installation; or why nothing is done."""
    installation = ctx.session.get(Installation, installation_ref.id)
    if installation is None:
        # The App was installed before this platform saw it; the event itself proves access.
        installation = upsert_installation(ctx.session, installation_ref, ctx.now)
    if not installation.active:
        return WorkOrder(f"installation {installation.id} is suspended or deleted")
    repository = ctx.session.get(Repository, repository_ref.id)
    if repository is not None and not repository.connected:
        return WorkOrder(f"{repository_ref.full_name} is no longer connected to the App")
    repository = connect_repository(
        ctx.session,
        installation.id,
        repository_ref.id,
        repository_ref.full_name,
        ctx.now,
        default_branch=repository_ref.branch,
    )
    ctx.session.flush()
    return repository


# -- the rows ------------------------------------------------------------------------------------


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
