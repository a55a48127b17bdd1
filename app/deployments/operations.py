"""What people ask of deployments through the API: create, deploy, env, roll back, delete.

Each operation checks everything first and changes the control plane in one transaction, or
raises a domain error and changes nothing. What must then happen (builds, reports, teardowns)
comes back as an WorkOrder, the same work order a webhook delivery produces, for the
worker to carry out.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.access.tokens import Caller
from app.deployments import previews
from app.deployments.environment import (
    Env,
    EnvChange,
    EnvScope,
    apply_change,
    check_limits,
    deployment_env,
    overlay,
    preview_overrides,
    scoped_env,
    store_scoped_env,
)
from app.deployments.previews import mark_removed
from app.deployments.registry import (
    DEFAULT_SLUG_HOLD,
    MAX_LABEL,
    PRODUCTION_ENVIRONMENT,
    RESERVED_SLUGS,
    check_slug_available,
    get_deployment,
    hold_slug,
)
from app.deployments.revisions import create_revision, create_rollback
from app.feedback.notify_outbox import NotificationOutbox, NotifyEvent
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import ConflictError, GitHubError, InvalidRequest, NotFoundError
from app.kernel.models import Deployment, Repository, Revision
from app.kernel.orders import TeardownOrder, WorkOrder
from app.kernel.ports import Clock, Commit, CommitResolver
from manifests.containers import DeploymentType

log = logging.getLogger(__name__)

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
PREVIEW_ENVIRONMENT = re.compile(r"pr-[0-9]+")
GIT_REF = re.compile(r"[A-Za-z0-9._/@+-]{1,255}")
"""Branch, tag or commit names as people type them (git allows more; GitHub's API needs
these to be URL-safe in a path)."""


@dataclass(frozen=True)
class NewDeployment:
    repository: str
    branch: str
    name: str
    type: DeploymentType = DeploymentType.development
    deploy_on_push: bool = True


@dataclass
class Done:
    """An operation's result: what to show the caller and what the worker must do."""

    deployment: Deployment
    outcome: WorkOrder
    revision: Revision | None = None


class DeploymentOperations:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        commits: CommitResolver,
        clock: Clock,
        slug_hold: timedelta = DEFAULT_SLUG_HOLD,
        notifications: NotificationOutbox | None = None,
    ) -> None:
        self._slug_hold = slug_hold
        self._notifications = notifications
        self._sessions = sessions
        self._secrets = secrets
        self._commits = commits
        self._clock = clock

    # -- create and deploy ------------------------------------------------------------------
    def create(self, request: NewDeployment, caller: Caller) -> Done:
        """A deployment of any branch; with deploy_on_push it deploys the branch's head now."""
        slug = check_slug(request.name)
        _check_ref(request.branch, "branch")
        with self._sessions() as session:
            repository = session.exec(
                select(Repository).where(Repository.full_name == request.repository)
            ).first()
            if repository is None or not repository.connected:
                raise InvalidRequest(
                    f"repository {request.repository!r} is not connected: install the GitHub "
                    "App on it first"
                )
            installation_id, full_name = repository.installation_id, repository.full_name
            check_slug_available(session, slug, repository.id, self._clock())
        head = (
            self._resolve(installation_id, full_name, request.branch)
            if (request.deploy_on_push)
            else None
        )
        now = self._clock()
        with self._sessions() as session:
            deployment = Deployment(
                repository_id=repository.id,
                slug=slug,
                environment=slug,
                branch=request.branch,
                type=request.type,
                deploy_on_push=request.deploy_on_push,
                created_at=now,
                updated_at=now,
            )
            session.add(deployment)
            try:
                session.flush()
            except IntegrityError:
                raise ConflictError(f"the name {slug!r} is taken by another deployment") from None
            outcome = WorkOrder(f"deployment {slug} of {full_name}@{request.branch} created")
            revision = None
            if head is not None:
                revision = self._new_revision(session, deployment, head, caller, outcome)
            session.commit()
        log.info(
            "deployment created",
            extra={"deployment_id": deployment.id, "slug": slug, "by": caller.name},
        )
        return Done(deployment=deployment, outcome=outcome, revision=revision)

    def deploy(self, deployment_id: str, ref: str | None, caller: Caller) -> Done:
        """Build and run the commit `ref` names now (default: the head of its branch)."""
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            repository = session.get(Repository, deployment.repository_id)
            assert repository is not None
            installation_id, full_name = repository.installation_id, repository.full_name
        ref = ref or deployment.branch
        _check_ref(ref, "ref")
        commit = self._resolve(installation_id, full_name, ref)
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            outcome = WorkOrder(f"deploy {ref} ({commit.sha[:7]}) requested by {caller.name}")
            revision = self._new_revision(session, deployment, commit, caller, outcome)
            session.commit()
        return Done(deployment=deployment, outcome=outcome, revision=revision)

    def _new_revision(
        self,
        session: Session,
        deployment: Deployment,
        commit: Commit,
        caller: Caller,
        outcome: WorkOrder,
    ) -> Revision:
        # Asked for on purpose: a commit already deployed with this env is built again.
        pull_request = previews.pull_request_of(session, deployment)
        result = create_revision(
            session,
            deployment,
            commit.sha,
            commit.message,
            self._secrets,
            self._clock(),
            fresh=True,
            requested_by=caller.name,
            env_of=(
                previews.env_source(session, self._secrets, deployment, fork=pull_request.fork)
                if pull_request is not None
                else None
            ),
        )
        outcome.start_revisions.append(result.revision.id)
        outcome.cancelled_revisions += [r.id for r in result.cancelled]
        return result.revision

    def _resolve(self, installation_id: int, full_name: str, ref: str) -> Commit:
        try:
            commit = self._commits.resolve_commit(installation_id, full_name, ref)
        except GitHubError as exc:
            raise ConflictError(f"GitHub could not be asked what {ref!r} is: {exc}") from exc
        if commit is None:
            raise InvalidRequest(f"{full_name} has no branch, tag or commit {ref!r}")
        return commit

    # -- env --------------------------------------------------------------------------------
    def env(self, deployment_id: str, scope: EnvScope = EnvScope.deployment) -> Env:
        with self._sessions() as session:
            return scoped_env(self._secrets, get_deployment(session, deployment_id), scope)

    def env_with_overrides(self, deployment_id: str) -> tuple[Env, Env | None]:
        """The deployment's env and, for a production deployment, its previews' overrides."""
        with self._sessions() as session:
            deployment = get_deployment(session, deployment_id)
            own = deployment_env(self._secrets, deployment)
            if deployment.environment != PRODUCTION_ENVIRONMENT:
                return own, None
            return own, preview_overrides(self._secrets, deployment)

    def change_env(
        self,
        deployment_id: str,
        change: EnvChange,
        caller: Caller,
        scope: EnvScope = EnvScope.deployment,
    ) -> Done:
        """New env, new revision: of the live commit (else the newest), built like a push.

        A change that changes nothing makes no revision. Scope "previews" changes what the
        production deployment's previews get over its env: no revision of production (its own
        env is unchanged); each preview picks it up at its next revision.
        """
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            if deployment.is_preview:
                raise ConflictError(
                    "a preview runs with its production deployment's env; change that instead "
                    '(with "scope": "previews" for what previews alone get)'
                )
            if scope is EnvScope.previews and deployment.environment != PRODUCTION_ENVIRONMENT:
                raise ConflictError(
                    f"{deployment.slug} has no previews: only the production deployment of a "
                    "repository's default branch has them"
                )
            before = scoped_env(self._secrets, deployment, scope)
            after = apply_change(before, change)
            outcome = WorkOrder(f"{self._env_name(deployment, scope)} unchanged")
            if after == before:
                return Done(deployment=deployment, outcome=outcome)
            if scope is EnvScope.previews:
                check_limits(overlay(deployment_env(self._secrets, deployment), after))
            else:
                check_limits(overlay(after, preview_overrides(self._secrets, deployment)))
            store_scoped_env(self._secrets, deployment, scope, after)
            deployment.updated_at = self._clock()
            session.add(deployment)
            revision = None
            outcome.summary = f"{self._env_name(deployment, scope)} changed by {caller.name}"
            if scope is EnvScope.previews:
                outcome.summary += ": each preview gets it at its next revision"
            else:
                base = self._commit_to_redeploy(session, deployment)
                if base is not None:
                    revision = self._new_revision(session, deployment, base, caller, outcome)
            session.commit()
        # Names only: values never reach the log.
        log.info(
            "env changed",
            extra={
                "deployment_id": deployment_id,
                "scope": scope.value,
                "set": sorted(change.set),
                "secrets": sorted(change.secrets),
                "unset": sorted(change.unset),
                "by": caller.name,
            },
        )
        return Done(deployment=deployment, outcome=outcome, revision=revision)

    @staticmethod
    def _env_name(deployment: Deployment, scope: EnvScope) -> str:
        if scope is EnvScope.previews:
            return f"env of {deployment.slug}'s previews"
        return f"env of {deployment.slug}"

    @staticmethod
    def _commit_to_redeploy(session: Session, deployment: Deployment) -> Commit | None:
        revision = (
            session.get(Revision, deployment.live_revision_id)
            if deployment.live_revision_id
            else session.exec(
                select(Revision)
                .where(Revision.deployment_id == deployment.id)
                .order_by(col(Revision.number).desc())
            ).first()
        )
        return Commit(revision.commit_sha, revision.commit_message) if revision else None

    # -- rollback ---------------------------------------------------------------------------
    def rollback(self, deployment_id: str, number: int, caller: Caller) -> Done:
        """Revision `number`'s image and env again, as the newest revision.

        The deployment's env goes back to that revision's too, so the next push keeps running
        what was rolled back to.
        """
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            target = session.exec(
                select(Revision).where(
                    Revision.deployment_id == deployment.id, Revision.number == number
                )
            ).first()
            if target is None:
                raise NotFoundError(f"{deployment.slug} has no revision #{number}")
            if target.approval_required and target.approved_by is None:
                raise ConflictError(f"revision #{number} was never approved to run")
            deployment.env_encrypted = target.env_encrypted
            deployment.secret_names = target.secret_names
            deployment.updated_at = self._clock()
            session.add(deployment)
            result = create_rollback(
                session, deployment, target, self._secrets, self._clock(), requested_by=caller.name
            )
            outcome = WorkOrder(
                f"rollback of {deployment.slug} to revision #{number} by {caller.name}",
                start_revisions=[result.revision.id],
                cancelled_revisions=[r.id for r in result.cancelled],
            )
            session.commit()
            slug, new_number = deployment.slug, result.revision.number
        self._notify(
            deployment_id,
            NotifyEvent.rollback,
            f"{slug}: rollback to revision #{number}",
            f"{caller.name} rolled {slug} back to revision #{number} (as revision "
            f"#{new_number}).\nDeployment {deployment_id}.",
            revision_id=result.revision.id,
        )
        return Done(deployment=deployment, outcome=outcome, revision=result.revision)

    # -- delete -----------------------------------------------------------------------------
    def delete(self, deployment_id: str, confirm: str, caller: Caller) -> Done:
        """Everything goes, the database too; the slug stays the repository's for a while."""
        with self._sessions() as session:
            deployment = get_deployment(session, deployment_id)
            if deployment.deleted_at is not None:
                # Asked again (the first answer was lost, or the queue was down): the
                # teardown is ordered again; it does only what is left.
                return Done(
                    deployment=deployment,
                    outcome=WorkOrder(
                        f"deployment {deployment_id} is being deleted",
                        teardowns=[TeardownOrder(deployment_id, drop_database=True)],
                    ),
                )
            if confirm != deployment.slug:
                raise InvalidRequest(
                    f"confirm: give the deployment's slug ({deployment.slug!r}) to delete it; "
                    "its database is dropped (its last backup is kept for a while)"
                )
            if deployment.is_preview:
                raise ConflictError(
                    "a preview goes when its pull request closes (or set [previews] enabled = "
                    "false in slipway.toml); it cannot be deleted on its own"
                )
            order = delete_deployment(
                session,
                deployment,
                f"deployment deleted by {caller.name}",
                self._clock(),
                self._slug_hold,
            )
        log.info("deployment deleted", extra={"deployment_id": deployment_id, "by": caller.name})
        self._notify(
            deployment_id,
            NotifyEvent.deleted,
            f"{confirm}: deleted",
            f"{caller.name} deleted {confirm} and its database.\nDeployment {deployment_id}.",
        )
        return Done(deployment=deployment, outcome=order)

    def keep(self, deployment_id: str, keep: bool, caller: Caller) -> Deployment:
        """Exempt the deployment from the idle rules (or end the exemption)."""
        with self._sessions() as session:
            deployment = self._active(session, deployment_id)
            if deployment.keep != keep:
                deployment.keep = keep
                deployment.updated_at = self._clock()
                session.add(deployment)
                session.commit()
                session.refresh(deployment)
                log.info(
                    "idle exemption changed",
                    extra={"deployment_id": deployment_id, "keep": keep, "by": caller.name},
                )
            return deployment

    @staticmethod
    def _active(session: Session, deployment_id: str) -> Deployment:
        deployment = get_deployment(session, deployment_id)
        if deployment.deleted_at is not None:
            raise NotFoundError(f"deployment {deployment_id} was deleted")
        return deployment

    def _notify(
        self,
        deployment_id: str,
        event: NotifyEvent,
        title: str,
        body: str,
        *,
        revision_id: str | None = None,
    ) -> None:
        if self._notifications is not None:
            self._notifications.add(deployment_id, event, title, body, revision_id=revision_id)


def delete_deployment(
    session: Session, deployment: Deployment, reason: str, now: datetime, slug_hold: timedelta
) -> WorkOrder:
    """Delete as DELETE /api/deployments/{id} does (the API and the idle rules): removed, its
    slug held for its repository, its database dropped by the teardown the order carries."""
    removed = mark_removed(session, deployment, reason, now)
    deployment.deleted_at = now
    hold_slug(session, deployment, now, slug_hold)
    deployment.slug = f"deleted--{deployment.id.replace('_', '-')}"
    session.add(deployment)
    session.commit()
    return WorkOrder(
        reason,
        cancelled_revisions=[r.id for r in removed.cancelled],
        teardowns=[TeardownOrder(deployment.id, drop_database=True)],
    )


def check_slug(name: str) -> str:
    if not isinstance(name, str) or not DNS_LABEL.fullmatch(name) or len(name) > MAX_LABEL:
        raise InvalidRequest(
            f"name {name!r}: a deployment's name is its address, a DNS label: 1-{MAX_LABEL} "
            "lowercase letters, digits and '-', not starting or ending with '-'"
        )
    if "--" in name or PREVIEW_ENVIRONMENT.fullmatch(name) or name == "production":
        raise InvalidRequest(
            f"name {name!r} is kept for Slipway's own deployments ('--', 'pr-<n>' and "
            "'production' name previews and the default branch's deployment)"
        )
    if name in RESERVED_SLUGS:
        raise InvalidRequest(
            f"name {name!r} is reserved (names of the platform, of the domain's mail and DNS, "
            "and the like): choose another"
        )
    return name


def _check_ref(ref: str, field: str) -> None:
    if not isinstance(ref, str) or not GIT_REF.fullmatch(ref) or ".." in ref:
        raise InvalidRequest(f"{field} {ref!r} is not a branch, tag or commit name")
