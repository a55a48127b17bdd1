"""The API over deployments, their revisions and their env.

Thin over app/deployments/operations.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from litestar.status_codes import (
    HTTP_202_ACCEPTED,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from redis.exceptions import RedisError
from sqlmodel import Session, col, select

from app.access.follows import LogFollows
from app.api.auth import SIGNED_LINK, caller_of
from app.api.schemas import (
    Accepted,
    DeleteBody,
    Deleted,
    DeployBody,
    DeploymentPatchBody,
    DeploymentView,
    EnvChangeBody,
    EnvView,
    IdleView,
    NewDeploymentBody,
    RevisionView,
    RollbackBody,
    RunQueueView,
    ScalingDecisionView,
    ScalingPolicyView,
    ScalingSampleView,
    ScalingView,
    ScopedEnvView,
    TracingView,
    deployment_status,
)
from app.backups.service import last_backup
from app.bootstrap import backup_policy, idle_rules
from app.deployments import revisions
from app.deployments.environment import EnvChange
from app.deployments.operations import DeploymentOperations, Done, NewDeployment
from app.deployments.registry import get_deployment, is_langgraph, list_deployments
from app.deployments.usage import (
    channel_notices,
    idle_verdict,
    notice_held_because,
    preview_removal,
)
from app.feedback.notify_outbox import NotificationOutbox, NotificationView
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import Deployment, Repository, Revision, RevisionState
from app.kernel.orders import CARRY_OUT, QUEUE_NAME, RUN_REVISION, WorkOrder, revision_job_id
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.replicas.autoscaler import RunQueue, autoscale_defaults
from app.replicas.reconciler import (
    crash_loop,
    crash_loops,
    is_crash_looping,
    running_replicas,
    running_replicas_of,
)
from app.replicas.scaling import moment, scaling_report
from app.rollout.pipeline import PipelineConfig
from manifests.tracing import project_name, studio_url

log = logging.getLogger(__name__)

SAMPLES_SHOWN = 60
"""The newest samples shown (two minutes at the default tick); the decisions go further back."""
FOLLOW_POLL_SECONDS = 0.5
FOLLOW_RETRY_AFTER_SECONDS = 30
"""What a caller refused a follow (429) is told to wait: a build log follow lasts minutes."""
DELETE_WARNING = (
    "its database is backed up once more, then dropped; that last backup is kept until {until} "
    "(listed at {backups_url}: download it with `slipway db dump {deployment_id} --backup ID`), "
    "then it is gone for good"
)


def deployment_view(session: Session, deployment: Deployment, settings: Settings) -> DeploymentView:
    """A deployment as the API (and the dashboard) show it."""
    repository = session.get(Repository, deployment.repository_id)
    now = utcnow()
    loop = crash_loop(session, deployment, now)
    url = settings.deployment_url(deployment.slug)
    return DeploymentView.of(
        deployment,
        repository.full_name if repository else "",
        url,
        replicas=running_replicas(session, deployment.id),
        crash_looping=is_crash_looping(loop),
        last_exit_reason=loop.last_reason if loop else None,
        last_backup=last_backup(session, deployment.id),
        tracing=_tracing_view(session, deployment, settings, url),
        idle=_idle_view(session, deployment, settings, now),
    )


def _queue_view(queue: RunQueue | None) -> RunQueueView | None:
    return None if queue is None else RunQueueView(pending=queue.pending, running=queue.running)


def deployment_summaries(
    session: Session, deployments: list[Deployment], settings: Settings
) -> list[DeploymentView]:
    """Many deployments as a list shows them, in a handful of queries whatever their number:
    state (crash loops included), URL, repository and replicas; no backup, tracing or idle
    details, which `deployment_view` adds for one deployment's page."""
    ids = [d.id for d in deployments]
    names = dict(
        session.exec(
            select(Repository.id, Repository.full_name).where(
                col(Repository.id).in_({d.repository_id for d in deployments})
            )
        ).all()
    )
    replicas = running_replicas_of(session, ids)
    loops = crash_loops(session, deployments, utcnow())
    return [
        DeploymentView.of(
            d,
            names.get(d.repository_id, ""),
            settings.deployment_url(d.slug),
            replicas=replicas.get(d.id, []),
            crash_looping=is_crash_looping(loops.get(d.id)),
            last_exit_reason=loops[d.id].last_reason if d.id in loops else None,
        )
        for d in deployments
    ]


def _tracing_view(
    session: Session, deployment: Deployment, settings: Settings, url: str
) -> TracingView | None:
    langsmith = settings.tracing.langsmith
    if langsmith is None or deployment.deleted_at is not None:
        return None
    return TracingView(
        project=project_name(deployment.slug),
        project_url=deployment.tracing_project_url,
        studio_url=studio_url(langsmith, url) if is_langgraph(session, deployment) else None,
        error=deployment.tracing_error,
    )


def _idle_view(
    session: Session, deployment: Deployment, settings: Settings, now: datetime
) -> IdleView | None:
    if deployment.removed_at is not None:
        return None
    rules = idle_rules(settings)
    verdict = idle_verdict(session, deployment, rules, now)
    return IdleView(
        keep=deployment.keep,
        last_used_at=deployment.last_used_at,
        unused_days=verdict.unused_days,
        notice_at=verdict.notice_at,
        delete_at=verdict.delete_at,
        notice_issue=(
            deployment.idle_issue_number
            if (deployment.idle_noticed_at or deployment.idle_notice_tried_at)
            and deployment.idle_notice_error is None
            else None
        ),
        notice_error=deployment.idle_notice_error,
        notice_retry_at=deployment.idle_notice_retry_at,
        delete_held=(
            notice_held_because(deployment, channel_notices(session, deployment))
            if verdict.held
            else None
        ),
        idle_ttl=deployment.preview_idle_ttl if deployment.is_preview else None,
        remove_at=preview_removal(deployment, rules, now),
    )


async def carry_out(queue: ArqRedis, outcome: WorkOrder) -> None:
    """Hand the operation's work to the workers (what it changed is already saved)."""
    try:
        # The revisions' own jobs first, saving a hop: each announces its revision itself.
        for revision_id in outcome.start_revisions:
            await queue.enqueue_job(
                RUN_REVISION,
                revision_id,
                _job_id=revision_job_id(revision_id),
                _queue_name=QUEUE_NAME,
            )
        await queue.enqueue_job(CARRY_OUT, outcome.as_dict(), _queue_name=QUEUE_NAME)
    except (RedisError, OSError) as exc:
        log.error("operation not enqueued", extra={"summary": outcome.summary, "error": repr(exc)})
        raise HTTPException(
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
            detail="the change was saved, but the job queue is unavailable: queued revisions "
            "start once it is back; repeat the request to be sure",
        ) from None


class DeploymentController(Controller):
    path = "/deployments"

    @get("/", sync_to_thread=True)
    def list_deployments(
        self, sessions: NamedDependency[SessionFactory], settings: NamedDependency[Settings]
    ) -> list[DeploymentView]:
        with sessions() as session:
            return [deployment_view(session, d, settings) for d in list_deployments(session)]

    @post("/", status_code=HTTP_202_ACCEPTED)
    async def create_deployment(
        self,
        data: JSONBody[NewDeploymentBody],
        request: Request[Any, Any, Any],
        operations: NamedDependency[DeploymentOperations],
        settings: NamedDependency[Settings],
        sessions: NamedDependency[SessionFactory],
        queue: NamedDependency[ArqRedis],
    ) -> Accepted:
        asked = NewDeployment(
            repository=data.repository,
            branch=data.branch,
            name=data.name,
            type=data.type,
            deploy_on_push=data.deploy_on_push,
        )
        done = await asyncio.to_thread(operations.create, asked, caller_of(request))
        return await _accepted(done, sessions, settings, queue)

    @get("/{deployment_id:str}", sync_to_thread=True)
    def get_deployment(
        self,
        deployment_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> DeploymentView:
        with sessions() as session:
            return deployment_view(session, get_deployment(session, deployment_id), settings)

    @delete("/{deployment_id:str}", status_code=HTTP_202_ACCEPTED)
    async def delete_deployment(
        self,
        deployment_id: FromPath[str],
        data: JSONBody[DeleteBody],
        request: Request[Any, Any, Any],
        operations: NamedDependency[DeploymentOperations],
        settings: NamedDependency[Settings],
        queue: NamedDependency[ArqRedis],
    ) -> Deleted:
        done = await asyncio.to_thread(
            operations.delete, deployment_id, data.confirm, caller_of(request)
        )
        await carry_out(queue, done.outcome)
        deleted_at = done.deployment.deleted_at or utcnow()
        until = deleted_at + backup_policy(settings).retention
        backups_url = f"{settings.api_url}/api/deployments/{deployment_id}/backups"
        return Deleted(
            deployment_id=deployment_id,
            status=deployment_status(done.deployment),
            progress_url=f"{settings.api_url}/api/deployments/{deployment_id}",
            warning=DELETE_WARNING.format(
                until=until.strftime("%Y-%m-%d %H:%M UTC"),
                backups_url=backups_url,
                deployment_id=deployment_id,
            ),
            backups_url=backups_url,
            backup_kept_until=until,
        )

    @patch("/{deployment_id:str}", sync_to_thread=True)
    def update_deployment(
        self,
        deployment_id: FromPath[str],
        data: JSONBody[DeploymentPatchBody],
        request: Request[Any, Any, Any],
        operations: NamedDependency[DeploymentOperations],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> DeploymentView:
        operations.keep(deployment_id, data.keep, caller_of(request))
        with sessions() as session:
            return deployment_view(session, get_deployment(session, deployment_id), settings)

    @get("/{deployment_id:str}/scaling", sync_to_thread=True)
    def get_scaling(
        self,
        deployment_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
        secrets: NamedDependency[SecretBox],
    ) -> ScalingView:
        """Replica counts, the policy, and the autoscaler's recent samples and decisions (with
        a LangGraph deployment's run queue beside the concurrency)."""
        with sessions() as session:
            deployment = get_deployment(session, deployment_id)
            report = scaling_report(session, deployment, autoscale_defaults(settings), secrets)
        policy, state = report.policy, report.state
        return ScalingView(
            deployment_id=deployment.id,
            type=deployment.type.value,
            current=report.current,
            desired=deployment.desired_replicas,
            policy=ScalingPolicyView(
                min_replicas=policy.min_replicas,
                max_replicas=policy.max_replicas,
                target_concurrency=policy.target_concurrency,
                stable_window_seconds=policy.stable_window_seconds,
                panic_window_seconds=policy.panic_window_seconds,
                scale_down_delay_seconds=policy.scale_down_delay_seconds,
                jobs_per_worker=policy.jobs_per_worker,
                notes=list(policy.notes),
            ),
            samples=[
                ScalingSampleView(
                    at=moment(s.at),
                    concurrency=s.concurrency,
                    replicas=s.replicas,
                    queue=_queue_view(s.queue),
                )
                for s in state.samples[-SAMPLES_SHOWN:]
            ],
            decisions=[
                ScalingDecisionView(
                    at=moment(d.at),
                    stable_concurrency=d.stable_concurrency,
                    panic_concurrency=d.panic_concurrency,
                    desired=d.desired,
                    actual=d.actual,
                    reason=str(d.reason),
                    queue=_queue_view(d.queue),
                    queue_replicas=d.queue_replicas,
                )
                for d in state.decisions
            ],
        )

    @get("/{deployment_id:str}/notifications", sync_to_thread=True)
    def list_notifications(
        self,
        deployment_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        notices: NamedDependency[NotificationOutbox],
    ) -> list[NotificationView]:
        """The newest notifications first, with their attempts and last error."""
        with sessions() as session:
            get_deployment(session, deployment_id)
        return notices.history(deployment_id)

    @get("/{deployment_id:str}/revisions", sync_to_thread=True)
    def list_revisions(
        self,
        deployment_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> list[RevisionView]:
        with sessions() as session:
            get_deployment(session, deployment_id)
            return [
                RevisionView.of(r, settings.api_url)
                for r in revisions.list_revisions(session, deployment_id)
            ]

    @post("/{deployment_id:str}/revisions", status_code=HTTP_202_ACCEPTED)
    async def deploy(
        self,
        deployment_id: FromPath[str],
        data: JSONBody[DeployBody],
        request: Request[Any, Any, Any],
        operations: NamedDependency[DeploymentOperations],
        settings: NamedDependency[Settings],
        sessions: NamedDependency[SessionFactory],
        queue: NamedDependency[ArqRedis],
    ) -> Accepted:
        done = await asyncio.to_thread(
            operations.deploy, deployment_id, data.ref, caller_of(request)
        )
        return await _accepted(done, sessions, settings, queue)

    @post("/{deployment_id:str}/rollback", status_code=HTTP_202_ACCEPTED)
    async def rollback(
        self,
        deployment_id: FromPath[str],
        data: JSONBody[RollbackBody],
        request: Request[Any, Any, Any],
        operations: NamedDependency[DeploymentOperations],
        settings: NamedDependency[Settings],
        sessions: NamedDependency[SessionFactory],
        queue: NamedDependency[ArqRedis],
    ) -> Accepted:
        done = await asyncio.to_thread(
            operations.rollback, deployment_id, data.revision, caller_of(request)
        )
        return await _accepted(done, sessions, settings, queue)

    @get("/{deployment_id:str}/env")
    async def get_env(
        self, deployment_id: FromPath[str], operations: NamedDependency[DeploymentOperations]
    ) -> EnvView:
        env, overrides = await asyncio.to_thread(operations.env_with_overrides, deployment_id)
        return EnvView(
            vars=env.variables,
            secrets=env.secrets,
            previews=(
                None
                if overrides is None
                else ScopedEnvView(vars=overrides.variables, secrets=overrides.secrets)
            ),
        )

    @patch("/{deployment_id:str}/env", status_code=HTTP_202_ACCEPTED)
    async def change_env(
        self,
        deployment_id: FromPath[str],
        data: JSONBody[EnvChangeBody],
        request: Request[Any, Any, Any],
        operations: NamedDependency[DeploymentOperations],
        settings: NamedDependency[Settings],
        sessions: NamedDependency[SessionFactory],
        queue: NamedDependency[ArqRedis],
    ) -> Accepted:
        change = EnvChange(set=data.set, secrets=data.secrets, unset=data.unset)
        done = await asyncio.to_thread(
            operations.change_env, deployment_id, change, caller_of(request), data.scope
        )
        return await _accepted(done, sessions, settings, queue)


async def _accepted(
    done: Done, sessions: SessionFactory, settings: Settings, queue: ArqRedis
) -> Accepted:
    await carry_out(queue, done.outcome)
    with sessions() as session:
        deployment = get_deployment(session, done.deployment.id)
        return Accepted(
            deployment=deployment_view(session, deployment, settings),
            revision=RevisionView.of(done.revision, settings.api_url) if done.revision else None,
            message=done.outcome.summary,
        )


class RevisionController(Controller):
    path = "/revisions"

    @get("/{revision_id:str}", sync_to_thread=True)
    def get_revision(
        self,
        revision_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> RevisionView:
        with sessions() as session:
            return RevisionView.of(revisions.get_revision(session, revision_id), settings.api_url)

    @get("/{revision_id:str}/logs", media_type="text/plain; charset=utf-8")
    async def logs(
        self,
        request: Request[Any, Any, Any],
        revision_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        pipeline_config: NamedDependency[PipelineConfig],
        settings: NamedDependency[Settings],
        follows: NamedDependency[LogFollows],
        follow: FromQuery[bool] = False,
    ) -> Stream:
        """The build log: a snapshot, or with follow=true everything until the revision ends
        (or SLIPWAY_LOG_FOLLOW_MAX_SECONDS pass); a caller follows a few logs at once at most."""
        return await build_log(
            request, revision_id, sessions, pipeline_config, settings, follows, follow=follow
        )


async def build_log(
    request: Request[Any, Any, Any],
    revision_id: str,
    sessions: SessionFactory,
    pipeline_config: PipelineConfig,
    settings: Settings,
    follows: LogFollows,
    *,
    follow: bool,
) -> Stream:
    """A revision's build log, for the API and the dashboard alike (the caller is checked
    already, and is the request's user): a snapshot, or with `follow` everything until the
    revision ends (or SLIPWAY_LOG_FOLLOW_MAX_SECONDS pass), counted against the caller's
    share of follows. The file and the database are read in threads: the event loop serves
    everyone."""

    def revision_of() -> Revision:
        with sessions() as session:
            return revisions.get_revision(session, revision_id)

    revision = await asyncio.to_thread(revision_of)
    path: Path = pipeline_config.log_path(revision)
    if not follow:
        text = await asyncio.to_thread(_snapshot, path)
        if text is None and revision.state is not RevisionState.queued:
            raise NotFoundException(detail=f"revision {revision_id} has no build log")
        return Stream(iter([text or b""]), media_type="text/plain; charset=utf-8")
    follower = _follower(request)
    if not follows.take(follower):
        raise HTTPException(
            status_code=HTTP_429_TOO_MANY_REQUESTS,
            detail=f"this caller already follows {settings.log_follows_per_caller} build "
            "logs; close one, or read the log without follow=true",
            headers={"Retry-After": str(FOLLOW_RETRY_AFTER_SECONDS)},
        )
    lines = _follow(path, revision_id, sessions, settings.log_follow_max_seconds)
    return Stream(
        _given_back(lines, lambda: follows.give_back(follower)),
        media_type="text/plain; charset=utf-8",
    )


def _follower(request: Request[Any, Any, Any]) -> str:
    """Who holds a follow: a token by its name, a signed link by the log it opens (however
    many links to that log were signed, they count together)."""
    caller = caller_of(request)
    if caller is SIGNED_LINK:
        return f"link:{request.url.path}"
    return f"token:{caller.name}"


async def _given_back(
    chunks: AsyncIterator[bytes], give_back: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The follow's place is given back however it ends: the revision finished, the time
    ran out, or the client went away (the stream is cancelled or closed)."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        give_back()


async def _follow(
    path: Path, revision_id: str, sessions: SessionFactory, max_seconds: float
) -> AsyncIterator[bytes]:
    """The log as it grows; ends once the revision is live or finished (and all is sent),
    or is gone, or after `max_seconds`."""
    offset = 0
    deadline = time.monotonic() + max_seconds

    def state() -> RevisionState | None:
        with sessions() as session:
            found = session.get(Revision, revision_id)
            return found.state if found is not None else None

    while time.monotonic() < deadline:
        now = await asyncio.to_thread(state)
        done = now is None or now is RevisionState.live or now.finished
        chunk = await asyncio.to_thread(_read_from, path, offset)
        if chunk:
            offset += len(chunk)
            yield chunk
        if done:
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)


def _snapshot(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""
