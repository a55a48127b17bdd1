"""Revisions: created once per deployment + commit + env, newest wins over pending ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from app.deployments.environment import StoredEnv
from app.kernel.crypto import SecretBox
from app.kernel.errors import NotFoundError
from app.kernel.models import IN_FLIGHT_STATES, PENDING_STATES, Deployment, Revision, RevisionState


@dataclass
class NewRevision:
    revision: Revision
    created: bool
    cancelled: list[Revision] = field(default_factory=list)
    """Older revisions of the deployment that were queued or building and lost to this one."""


def create_revision(
    session: Session,
    deployment: Deployment,
    commit_sha: str,
    commit_message: str,
    secrets: SecretBox,
    now: datetime,
    delivery_id: str | None = None,
    *,
    fresh: bool = False,
    approval_required: bool = False,
    env_of: Deployment | StoredEnv | None = None,
    requested_by: str | None = None,
) -> NewRevision:
    """Idempotent: the same commit with the same env is the same revision, however often pushed.

    `fresh` builds it again as a new attempt all the same: a Re-run, a reopened pull request,
    a push to a deployment that was removed. The env is the deployment's own, or `env_of`'s
    (a same-repository preview runs with production's under its preview overrides).
    """
    source = env_of or deployment
    env = secrets.decrypt_env(source.env_encrypted)
    env_hash = secrets.env_hash(env)
    existing = session.exec(
        select(Revision)
        .where(
            Revision.deployment_id == deployment.id,
            Revision.commit_sha == commit_sha,
            Revision.env_hash == env_hash,
        )
        .order_by(col(Revision.attempt).desc())
    ).first()
    if existing is not None and not fresh:
        return NewRevision(revision=existing, created=False)
    revision = Revision(
        deployment_id=deployment.id,
        number=_next_number(session, deployment.id),
        commit_sha=commit_sha,
        commit_message=commit_message.splitlines()[0][:500] if commit_message else "",
        env_hash=env_hash,
        attempt=existing.attempt + 1 if existing is not None else 1,
        env_encrypted=source.env_encrypted,
        secret_names=source.secret_names,
        approval_required=approval_required,
        delivery_id=delivery_id,
        requested_by=requested_by,
        created_at=now,
    )
    return _add_newest(session, revision, now)


def create_rollback(
    session: Session,
    deployment: Deployment,
    target: Revision,
    secrets: SecretBox,
    now: datetime,
    *,
    requested_by: str | None,
) -> NewRevision:
    """A new revision that runs `target`'s image (tagged anew) with `target`'s env.

    Always a new revision (a rollback is asked for on purpose), numbered after every other,
    so nothing older that is still building can take the route from it.
    """
    env_hash = secrets.env_hash(secrets.decrypt_env(target.env_encrypted))
    attempts = session.exec(
        select(func.max(Revision.attempt)).where(
            Revision.deployment_id == deployment.id,
            Revision.commit_sha == target.commit_sha,
            Revision.env_hash == env_hash,
        )
    ).one()
    revision = Revision(
        deployment_id=deployment.id,
        number=_next_number(session, deployment.id),
        commit_sha=target.commit_sha,
        commit_message=target.commit_message,
        env_hash=env_hash,
        attempt=(attempts or 0) + 1,
        env_encrypted=target.env_encrypted,
        secret_names=target.secret_names,
        rollback_of=target.id,
        requested_by=requested_by,
        created_at=now,
    )
    return _add_newest(session, revision, now)


def _next_number(session: Session, deployment_id: str) -> int:
    """After every other revision of the deployment: nothing older can take the route from it."""
    last = session.exec(
        select(func.max(Revision.number)).where(Revision.deployment_id == deployment_id)
    ).one()
    return (last or 0) + 1


def _add_newest(session: Session, revision: Revision, now: datetime) -> NewRevision:
    """The new revision stored; the pending ones it supersedes are cancelled."""
    session.add(revision)
    session.flush()
    cancelled = cancel_older_pending(session, revision.deployment_id, revision.number, now)
    return NewRevision(revision=revision, created=True, cancelled=cancelled)


def cancel_older_pending(
    session: Session, deployment_id: str, number: int, now: datetime
) -> list[Revision]:
    older = list(
        session.exec(
            select(Revision).where(
                Revision.deployment_id == deployment_id,
                Revision.number < number,
                col(Revision.state).in_(PENDING_STATES),
            )
        ).all()
    )
    for revision in older:
        revision.state = RevisionState.cancelled
        revision.error = f"superseded by revision #{number} before it went live"
        revision.finished_at = now
    return older


def cancel_in_flight(
    session: Session, deployment_id: str, reason: str, now: datetime
) -> list[Revision]:
    """Every revision of the deployment still queued, building or deploying ends cancelled."""
    in_flight = list(
        session.exec(
            select(Revision).where(
                Revision.deployment_id == deployment_id,
                col(Revision.state).in_(IN_FLIGHT_STATES),
            )
        ).all()
    )
    for revision in in_flight:
        revision.state = RevisionState.cancelled
        revision.error = reason
        revision.finished_at = now
        session.add(revision)
    return in_flight


def transition(
    session: Session,
    revision_id: str,
    allowed_from: frozenset[RevisionState],
    to: RevisionState,
    **values: object,
) -> bool:
    """Compare-and-set on the state column, so a cancelled revision never moves forward."""
    result = session.execute(
        update(Revision)
        .where(col(Revision.id) == revision_id, col(Revision.state).in_(allowed_from))
        .values(state=to, **values)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def get_revision(session: Session, revision_id: str) -> Revision:
    revision = session.get(Revision, revision_id)
    if revision is None:
        raise NotFoundError(f"no revision with id {revision_id}")
    return revision


def list_revisions(session: Session, deployment_id: str) -> list[Revision]:
    return list(
        session.exec(
            select(Revision)
            .where(Revision.deployment_id == deployment_id)
            .order_by(col(Revision.number).desc())
        ).all()
    )
