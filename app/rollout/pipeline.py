"""The life of one revision: source → image → database → replica → health → route → live.

Safe to run twice for the same revision (arq delivers at least once, and a worker that died
mid-way is retried): every step either checks what is already done or is idempotent, and the
state column moves only by compare-and-set, so a cancelled revision never goes live.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, col, select

from app.deployments.revisions import transition
from app.deployments.teardown import Teardown
from app.feedback.outbox import ReportOutbox
from app.feedback.reports import LOG_TAIL_LINES, Redactor, RevisionRef, load_ref
from app.kernel.addresses import deployment_url, route_hostname
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import RevisionAbandoned
from app.kernel.models import (
    FINISHED_STATES,
    IN_FLIGHT_STATES,
    Deployment,
    PullRequest,
    PullRequestState,
    Replica,
    ReplicaState,
    Revision,
    RevisionState,
)
from app.kernel.ports import Clock, ContainerRuntime, GitHubPort, ImageBuilder, PreviewNotifier
from app.replicas.autoscaler import AutoscaleDefaults, scaling_policy
from app.replicas.replica_set import Replicas, ReplicaStartFailed, ready_count, start_draining
from app.replicas.routes import RouteTable
from app.rollout.admission import Admission
from app.rollout.heartbeats import heartbeat
from builders.errors import BuildCancelled
from builders.source import UnpackLimits, unpack_tarball
from manifests.config import (
    RepositoryConfig,
    deploy_labels,
    load_repository_config,
    scale_labels,
)
from manifests.containers import LABEL_PREFIX, LIMITS, REDIS_LIMITS, DeploymentType, redis_name
from manifests.errors import Annotation, ConfigError, RuntimeStartError, SlipwayError
from manifests.image_names import revision_image_tag
from manifests.recipes import (
    BuildTarget,
    Recipe,
    default_recipes,
    langgraph_runtime_of,
    plan_build,
    state_dir_of,
)
from manifests.run import RunConfig, scale_table

log = logging.getLogger(__name__)

KEEP_IMAGES = 3
"""Images kept per deployment (the live revision's and the ones before it, for a rollback)."""


@dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path
    build_timeout_seconds: float
    base_domain: str
    router_port: int
    autoscale: AutoscaleDefaults
    """The platform's scaling bounds, which a revision's `[scale]` narrows."""
    unpack_limits: UnpackLimits = field(default_factory=UnpackLimits)
    max_download_bytes: int = 1024**3
    recipes: tuple[Recipe, ...] = field(default_factory=default_recipes)
    """How a commit becomes an image, in order of precedence (see manifests/recipes.py)."""
    platform_secrets: tuple[str, ...] = field(default=(), repr=False)
    """Secrets of the platform's own a log could show (index credentials): redacted too."""

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def log_path(self, revision: Revision) -> Path:
        return self.logs_dir / revision.deployment_id / f"{revision.id}.log"

    def hostname(self, slug: str) -> str:
        return route_hostname(slug, self.base_domain)

    def url(self, slug: str) -> str:
        return deployment_url(slug, self.base_domain, self.router_port)


class RevisionPipeline:
    def __init__(
        self,
        *,
        config: PipelineConfig,
        sessions: SessionFactory,
        secrets: SecretBox,
        github: GitHubPort,
        reports: ReportOutbox,
        builder: ImageBuilder,
        runtime: ContainerRuntime,
        routes: RouteTable,
        replicas: Replicas,
        clock: Clock,
        teardown: Teardown,
        notifier: PreviewNotifier,
        admission: Admission,
    ) -> None:
        self.config = config
        self._sessions = sessions
        self._secrets = secrets
        self._github = github
        self._reports = reports
        self._builder = builder
        self._runtime = runtime
        self._routes = routes
        self._replicas = replicas
        self._clock = clock
        self._teardown = teardown
        self._notifier = notifier
        self._admission = admission

    # -- public entry points ----------------------------------------------------------------
    def announce(self, revision_id: str) -> None:
        """Have the check run and the GitHub deployment opened (once; later calls do nothing)."""
        self._reports.add(revision_id, "announce")

    def report_cancelled(self, revision_id: str) -> None:
        self._reports.add(revision_id, "cancelled")

    def report_approved(self, revision_id: str) -> None:
        """A maintainer approved a fork's commit: the approval check run closes, and the build
        gets its own check run and GitHub deployment."""
        login = self._ref(revision_id).revision.approved_by or "a maintainer"
        self._reports.add(revision_id, "approved", login=login)

    def report_approval_refused(self, revision_id: str, login: str, role: str) -> None:
        self._reports.add(revision_id, "approval_refused", login=login, role=role)

    def run(self, revision_id: str, *, resume: bool = True) -> RevisionState:
        """Take the revision as far as it goes. `resume` picks up a revision a dead worker left
        building or deploying; without it (a first try) such a revision belongs to another job.
        A queued revision starts only when admitted (build slots, preview places); otherwise it
        stays queued, says why, and is dispatched again when capacity frees.
        """
        ref = self._ref(revision_id)
        if ref.revision.state is RevisionState.live:
            self._retire_finished(ref.deployment.id)  # a retry after dying at the switch
        if ref.revision.state not in IN_FLIGHT_STATES:
            return ref.revision.state
        if ref.revision.approval_required and ref.revision.approved_by is None:
            self._event(ref, "revision waits for approval")
            return ref.revision.state
        if ref.revision.state is not RevisionState.queued and not resume:
            return ref.revision.state
        self.announce(revision_id)
        log_path = self.config.log_path(ref.revision)
        self._event(ref, "revision started", state=ref.revision.state.value)
        if ref.revision.state is RevisionState.queued:
            reason = self._admit(revision_id)
            if reason is not None:
                self._waiting(revision_id, reason)
                return RevisionState.queued
        else:
            with self._sessions() as session:
                if not transition(
                    session,
                    revision_id,
                    IN_FLIGHT_STATES,
                    RevisionState.building,
                    build_started_at=self._clock(),
                ):
                    return self._ref(revision_id).revision.state
        ref = self._ref(revision_id)
        if ref.revision.wait_reason is not None:
            self._stopped_waiting(ref)
        self._reports.add(revision_id, "building")
        self._changed(ref)
        redact = self._redactor(ref)
        with self._heartbeat(revision_id):
            return self._build_and_deploy(revision_id, ref, log_path, redact)

    def _heartbeat(self, revision_id: str) -> AbstractContextManager[None]:
        """Beat while this job builds and starts the revision (see app/rollout/recovery.py)."""
        return heartbeat(self._sessions, revision_id, self._clock)

    def _build_and_deploy(
        self, revision_id: str, ref: RevisionRef, log_path: Path, redact: Redactor
    ) -> RevisionState:
        try:
            image, run = self._build(ref, log_path, redact)
            with self._sessions() as session:
                moved = transition(
                    session,
                    revision_id,
                    frozenset({RevisionState.building}),
                    RevisionState.deploying,
                    image=image,
                    build_finished_at=self._clock(),
                    deploy_started_at=self._clock(),
                )
            self._notifier.capacity_freed()  # its build slot: the revision left `building`
            if not moved:
                self._event(ref, "revision cancelled after build")
                self._runtime.remove_image(image)
                self._finish_removal(ref.deployment.id)
                return RevisionState.cancelled
            ref = self._ref(revision_id)
            self._reports.add(revision_id, "deploying", image=image)
            self._changed(ref)
            self._deploy(ref, image, run, log_path, redact)
        except BuildCancelled:
            self._event(ref, "revision cancelled during build")
            self._notifier.capacity_freed()
            self._finish_removal(ref.deployment.id)
            return RevisionState.cancelled
        except RevisionAbandoned:
            self._event(ref, "revision cancelled during its start")
            self._replicas.stop_revision(revision_id)
            self._finish_removal(ref.deployment.id)
            return RevisionState.cancelled
        except SlipwayError as exc:
            annotations = exc.annotations if isinstance(exc, ConfigError) else ()
            self._fail(revision_id, str(exc), log_path, redact, annotations=annotations)
            return RevisionState.failed
        except Exception as exc:
            log.exception("revision crashed", extra={"revision_id": revision_id})
            self._fail(
                revision_id,
                f"internal error in Slipway ({type(exc).__name__}); the platform log has details",
                log_path,
                redact,
            )
            return RevisionState.failed
        finally:
            shutil.rmtree(self.config.builds_dir / revision_id, ignore_errors=True)
        return self._ref(revision_id).revision.state

    # -- build ------------------------------------------------------------------------------
    def _build(self, ref: RevisionRef, log_path: Path, redact: Redactor) -> tuple[str, RunConfig]:
        """(image tag, how it runs), as the platform decided while building it."""
        revision = ref.revision
        tag = revision_image_tag(ref.deployment.id, revision.id)
        if revision.rollback_of is not None:
            reused = self._reuse_image(ref, tag, log_path)
            if reused is not None:
                return tag, reused
        work = self.config.builds_dir / revision.id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _append(
            log_path,
            f"slipway: revision #{revision.number} of {ref.deployment.slug}, "
            f"commit {revision.commit_sha}",
        )
        tarball = work / "source.tar.gz"
        started = time.monotonic()
        self._github.download_tarball(
            ref.installation_id,
            ref.repository.full_name,
            revision.commit_sha,
            tarball,
            max_bytes=self.config.max_download_bytes,
        )
        source = unpack_tarball(tarball, work / "src", self.config.unpack_limits)
        tarball.unlink()
        _append(log_path, f"slipway: fetched source in {time.monotonic() - started:.1f} s")
        repo_config = load_repository_config(source)
        target = BuildTarget(
            work_dir=work,
            production=ref.deployment.type is DeploymentType.production,
            cache_scope=str(ref.repository.id),
        )
        plan = plan_build(source, repo_config, target, self.config.recipes)
        if plan.deploy is not None:
            repo_config = repo_config.model_copy(update={"deploy": plan.deploy})
        for note in plan.notes:
            _append(log_path, f"slipway: {redact(note)}")
        labels = {
            **plan.labels,
            f"{LABEL_PREFIX}.deployment": ref.deployment.id,
            f"{LABEL_PREFIX}.revision": revision.id,
            f"{LABEL_PREFIX}.commit": revision.commit_sha,
            **deploy_labels(repo_config.deploy),
            **scale_labels(repo_config.scale),
        }
        built = self._builder.build(
            plan,
            tag,
            labels,
            log_path,
            cancelled=lambda: self._is_cancelled(revision.id),
            timeout_seconds=self.config.build_timeout_seconds,
            redact=redact,
        )
        self._update_revision(revision.id, build_method=built.method)
        self._event(ref, "revision built", image=tag, seconds=round(built.seconds, 2))
        return tag, run_config(repo_config, labels)

    def _reuse_image(self, ref: RevisionRef, tag: str, log_path: Path) -> RunConfig | None:
        """A rollback runs its source revision's image again: no download, no build.

        How it runs is the record the platform made when it built that image: never what the
        image's labels say (a Dockerfile's LABEL line is the tenant's to write). None when the
        image was pruned, or predates that record: the commit is then built again, and the log
        says so.
        """
        with self._sessions() as session:
            source = session.get(Revision, ref.revision.rollback_of)
            assert source is not None
            # The image depends on the commit alone (env is not a build input), so any
            # revision of this deployment built from it will do: an earlier rollback's too.
            same_commit = session.exec(
                select(Revision)
                .where(
                    Revision.deployment_id == source.deployment_id,
                    Revision.commit_sha == source.commit_sha,
                    col(Revision.image).is_not(None),
                    Revision.id != ref.revision.id,
                )
                .order_by(col(Revision.number).desc())
            ).all()
        what = f"revision #{source.number} ({source.commit_sha[:7]})"
        candidates: dict[str, str] = {}
        for built in [source, *same_commit]:
            if built.image and built.run_config and built.image not in candidates:
                candidates[built.image] = built.run_config
        for image, recorded in candidates.items():
            if self._builder.retag(image, tag) is None:
                continue
            _append(log_path, f"slipway: rollback to {what}: reusing its image {image}")
            self._update_revision(ref.revision.id, build_method="reused")
            self._event(ref, "revision image reused", source_revision_id=source.id)
            return RunConfig.from_json(recorded)
        _append(
            log_path,
            f"slipway: rollback to {what}: its image is no longer kept, so the commit is built "
            "again",
        )
        return None

    def _is_cancelled(self, revision_id: str) -> bool:
        with self._sessions() as session:
            state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
        return state is RevisionState.cancelled

    # -- deploy -----------------------------------------------------------------------------
    def _deploy(
        self,
        ref: RevisionRef,
        image: str,
        run: RunConfig,
        log_path: Path,
        redact: Redactor,
    ) -> None:
        """Make this revision's replica set healthy, then switch the route to it."""
        revision, deployment = ref.revision, ref.deployment
        self._still_deploying(revision.id)
        self._update_revision(revision.id, run_config=run.to_json())
        ready_to_run = self._replicas.prepare(
            deployment,
            revision.model_copy(update={"image": image}),
            run,
            network_known=self._has_running_replica(deployment.id),
        )
        self._still_deploying(revision.id)  # a teardown that raced the provisioning redoes it
        for secret in ready_to_run.secrets:
            redact = redact.including(secret)
        self._update_revision(revision.id, database_ready_at=self._clock())
        for note in ready_to_run.notes:
            _append(
                log_path,
                f"slipway: {note} ({REDIS_LIMITS.memory_bytes // 1024**2} MB, on its network only)",
            )
        if run.langgraph_runtime is not None:
            self._langgraph_note(ref, run.langgraph_runtime, log_path)
            if "REDIS_URI" in self._secrets.decrypt_env(revision.env_encrypted):
                _append(
                    log_path,
                    "slipway: langgraph: REDIS_URI from the deployment's env is not used; the "
                    "server gets the deployment's own Redis (unset it to silence this)",
                )
        count = self._replica_count(deployment.id, run)
        limits = LIMITS[deployment.type]
        _append(
            log_path,
            f"slipway: starting {count} replica{'s' if count != 1 else ''} "
            f"({deployment.type.value}: {limits.cpus:g} CPU, {limits.memory_bytes // 1024**3} GB "
            "each)",
        )
        self._replicas.stop_revision(revision.id)  # left by an earlier attempt (a retried job)
        started = self._replicas.start(ready_to_run, count)
        self._update_revision(revision.id, replica_started_at=self._clock())
        self._still_deploying(revision.id)
        try:
            self._replicas.wait_ready(
                ready_to_run, started, still_wanted=lambda: self._still_deploying(revision.id)
            )
        except ReplicaStartFailed as exc:
            output = redact(self._replicas.logs_tail(exc.ref, LOG_TAIL_LINES))
            if output.strip():
                _append(log_path, "slipway: container output (last lines):\n" + output.rstrip())
            raise RuntimeStartError(str(exc)) from None
        self._event(ref, "revision healthy", replicas=len(started))
        with self._sessions() as session:
            transition(
                session,
                revision.id,
                frozenset({RevisionState.deploying}),
                RevisionState.deploying,
                healthy_at=self._clock(),
            )
        self._go_live(revision.id, log_path)

    def _replica_count(self, deployment_id: str, run: RunConfig) -> int:
        """As many replicas as the live revision runs now, within this revision's bounds: a
        rollout never drops capacity under load, and `[scale] min` holds from the first
        request (not from whenever the reconciler next looks at an idle deployment)."""
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            assert deployment is not None
            serving = ready_count(session, deployment.live_revision_id)
            policy = scaling_policy(deployment.type, self.config.autoscale, run.scale_config())
            wanted = policy.bounded(max(serving, deployment.desired_replicas))
            return min(wanted, LIMITS[deployment.type].max_replicas)

    # -- admission ---------------------------------------------------------------------------
    def startable(self) -> list[str]:
        """Queued revisions the limits would let start now (their jobs decide for real)."""
        with self._sessions() as session:
            return [rid for rid, reason in self._admission.decisions(session).items() if not reason]

    def _admit(self, revision_id: str) -> str | None:
        """Move the revision to building if the limits allow; else the reason it waits."""
        with self._sessions() as session, self._admission.locked(session):
            reason = self._admission.decisions(session).get(revision_id, "no longer queued")
            if reason is None and not transition(
                session,
                revision_id,
                frozenset({RevisionState.queued}),
                RevisionState.building,
                build_started_at=self._clock(),
            ):
                reason = "no longer queued"
        return reason

    def _waiting(self, revision_id: str, reason: str) -> None:
        """Tell the user once per reason: on the check run and in the preview's comment."""
        ref = self._ref(revision_id)
        if ref.revision.wait_reason == reason or reason == "no longer queued":
            return
        self._update_revision(revision_id, wait_reason=reason)
        self._event(ref, "revision waits", reason=reason)
        self._set_note(ref.deployment.id, reason)
        self._reports.add(revision_id, "waiting", reason=reason)
        self._changed(ref)

    def _stopped_waiting(self, ref: RevisionRef) -> None:
        self._update_revision(ref.revision.id, wait_reason=None)
        self._set_note(ref.deployment.id, None)

    def _set_note(self, deployment_id: str, note: str | None) -> None:
        with self._sessions() as session:
            pull_request = session.exec(
                select(PullRequest).where(
                    PullRequest.deployment_id == deployment_id,
                    PullRequest.state == PullRequestState.open,
                )
            ).first()
            if pull_request is not None:
                pull_request.note = note
                session.add(pull_request)
                session.commit()

    def _still_deploying(self, revision_id: str) -> None:
        """Raise RevisionAbandoned once a teardown cancelled the revision mid-start."""
        with self._sessions() as session:
            state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
        if state is not RevisionState.deploying:
            raise RevisionAbandoned(f"revision {revision_id} is {state}")

    def _finish_removal(self, deployment_id: str) -> None:
        """A revision of a removed deployment stopped late: redo the teardown for what it made."""
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None or deployment.removed_at is None:
                return
            is_preview = deployment.is_preview
        try:
            self._teardown.remove(
                deployment_id, drop_database=is_preview, reason="the deployment was removed"
            )
        except SlipwayError as exc:
            log.warning(
                "late teardown incomplete",
                extra={"deployment_id": deployment_id, "error": str(exc)},
            )

    def _changed(self, ref: RevisionRef) -> None:
        if ref.deployment.is_preview:
            self._notifier.deployment_changed(ref.deployment.id)

    def _has_running_replica(self, deployment_id: str) -> bool:
        with self._sessions() as session:
            return (
                session.exec(
                    select(Replica.id)
                    .join(Revision, col(Revision.id) == col(Replica.revision_id))
                    .where(
                        Revision.deployment_id == deployment_id,
                        col(Replica.stopped_at).is_(None),
                    )
                ).first()
                is not None
            )

    def _langgraph_note(self, ref: RevisionRef, runtime: str, log_path: Path) -> None:
        """Say where the graph's state lives: the platform's checkpointer, never the graph's."""
        where = (
            "the deployment's own Postgres database"
            if runtime == "pg"
            else "files on the deployment's own volume (inmem: kept across replicas and "
            "revisions, removed with the deployment)"
        )
        _append(
            log_path,
            f"slipway: langgraph: the managed checkpointer and store ({runtime} runtime) keep "
            f"threads, runs and checkpoints in {where}; a checkpointer the graph compiles "
            "itself is not used",
        )
        self._event(
            ref,
            "langgraph managed checkpointer",
            runtime=runtime,
            redis=redis_name(ref.deployment.id),
        )

    # -- route switch -----------------------------------------------------------------------
    def _go_live(self, revision_id: str, log_path: Path) -> bool:
        """Move the route to this revision's ready replicas in one router update, then drain
        and stop the old ones; an older revision never wins.

        False when a newer revision went live while this one deployed: it then ends
        superseded without taking the route.
        """
        with self._routes.locked(), self._sessions() as session:
            revision = session.get(Revision, revision_id)
            assert revision is not None
            deployment = session.get(Deployment, revision.deployment_id)
            assert deployment is not None
            previous = (
                session.get(Revision, deployment.live_revision_id)
                if deployment.live_revision_id
                else None
            )
            abandoned = revision.state is not RevisionState.deploying  # a teardown cancelled it
            newer_is_live = previous is not None and previous.number > revision.number
            if not newer_is_live and not abandoned:
                now = self._clock()
                revision.state = RevisionState.live
                revision.live_at = now
                deployment.live_revision_id = revision.id
                deployment.updated_at = now
                if previous is not None and previous.id != revision.id:
                    previous.state = RevisionState.superseded
                    previous.finished_at = now
                    _start_draining(session, previous.id, now)
                self._routes.apply_in(session)  # before the commit: a refused switch is undone
                session.commit()
        if abandoned:
            raise RevisionAbandoned(f"revision {revision_id} was cancelled before it went live")
        if newer_is_live:
            assert previous is not None
            with self._sessions() as session:
                transition(
                    session,
                    revision_id,
                    frozenset({RevisionState.deploying}),
                    RevisionState.superseded,
                    finished_at=self._clock(),
                    error=f"superseded by revision #{previous.number}, which went live first",
                )
            self._replicas.stop_revision(revision_id)
            self._reports.add(revision_id, "cancelled")
            return False
        _append(log_path, f"slipway: live at {self.config.url(deployment.slug)}")
        ref = self._ref(revision_id)
        self._event(ref, "revision live", url=self.config.url(ref.deployment.slug))
        self._reports.add(
            revision_id,
            "succeeded",
            url=self.config.url(ref.deployment.slug),
            image=ref.revision.image or "",
        )
        after = self._ref(revision_id)
        if after.revision.state is not RevisionState.live:
            # Retired (a newer revision, a teardown) between going live and queueing "success":
            # its retirement may be queued before it, so it is queued again, after.
            self._reports.add(
                revision_id,
                "removed",
                reason=after.revision.error or "replaced by a newer revision",
            )
        self._changed(ref)
        self._retire_finished(ref.deployment.id)
        if previous is not None and previous.id != revision_id:
            self._reports.add(previous.id, "superseded", by_id=revision_id)
        self._prune_images(ref.deployment.id, keep_from=ref.revision.number - KEEP_IMAGES + 1)
        return True

    def _retire_finished(self, deployment_id: str) -> None:
        """Drain, then stop, replicas still running for finished revisions (superseded,
        failed, cancelled).

        Runs after every route switch, and again when a retried job finds its revision already
        live (the worker died between the switch and the clean-up); the reconciler does the
        same every tick for whatever is left.
        """
        with self._sessions() as session:
            leftover = session.exec(
                select(Replica)
                .join(Revision, col(Revision.id) == col(Replica.revision_id))
                .where(
                    Revision.deployment_id == deployment_id,
                    col(Revision.state).in_(FINISHED_STATES),
                    col(Replica.stopped_at).is_(None),
                )
            ).all()
            now = self._clock()
            for replica in leftover:
                if replica.state is not ReplicaState.draining:
                    start_draining(replica, now)
                    session.add(replica)
            session.commit()
        self._replicas.drain([replica.id for replica in leftover])

    def sync_routes(self) -> None:
        """Put the database's routes into the router (after either of them restarted)."""
        self._routes.apply()

    # -- failure ----------------------------------------------------------------------------
    def _fail(
        self,
        revision_id: str,
        reason: str,
        log_path: Path,
        redact: Redactor,
        *,
        annotations: tuple[Annotation, ...] = (),
    ) -> None:
        reason = redact(reason)
        _append(log_path, f"slipway: failed: {reason}")
        for annotation in annotations:
            _append(
                log_path,
                f"slipway: {annotation.path}:{annotation.start_line}: {redact(annotation.message)}",
            )
        with self._sessions() as session:
            moved = transition(
                session,
                revision_id,
                IN_FLIGHT_STATES,
                RevisionState.failed,
                error=reason,
                finished_at=self._clock(),
            )
        ref = self._ref(revision_id)
        if not moved:
            # Cancelled meanwhile, or already live when a later step failed: its replicas
            # are not this failure's to stop.
            log.warning(
                "error after the revision left the pipeline",
                extra={
                    "revision_id": revision_id,
                    "state": ref.revision.state.value,
                    "reason": reason,
                },
            )
            return
        self._notifier.capacity_freed()  # a failed build frees its slot
        self._replicas.stop_revision(revision_id)
        if ref.revision.image is not None:  # a failed revision's image is never run again
            self._runtime.remove_image(ref.revision.image)
            self._update_revision(revision_id, image=None)
        self._event(ref, "revision failed", reason=reason)
        self._reports.add(
            revision_id,
            "failed",
            reason=reason,
            log_tail=redact(_tail(log_path, LOG_TAIL_LINES)),
            serving_id=ref.deployment.live_revision_id,
            url=self.config.url(ref.deployment.slug),
            annotations=[{**a.as_github(), "message": redact(a.message)} for a in annotations],
        )
        self._changed(ref)

    def _prune_images(self, deployment_id: str, keep_from: int) -> None:
        """Images of finished revisions older than the last few are removed: disks are finite."""
        with self._sessions() as session:
            old = session.exec(
                select(Revision).where(
                    Revision.deployment_id == deployment_id,
                    Revision.number < keep_from,
                    col(Revision.image).is_not(None),
                    col(Revision.state).in_(FINISHED_STATES),
                )
            ).all()
            for revision in old:
                assert revision.image is not None
                self._runtime.remove_image(revision.image)
                revision.image = None
                session.add(revision)
            session.commit()

    # -- helpers ----------------------------------------------------------------------------
    def _update_revision(self, revision_id: str, **values: object) -> None:
        """Record facts the pipeline learned (GitHub ids, build method, when a phase ended).

        Never the state: that moves only through `transition`, by compare-and-set.
        """
        assert "state" not in values
        with self._sessions() as session:
            revision = session.get(Revision, revision_id)
            assert revision is not None
            for name, value in values.items():
                setattr(revision, name, value)
            session.commit()

    def _ref(self, revision_id: str) -> RevisionRef:
        with self._sessions() as session:
            return load_ref(session, revision_id)

    def _redactor(self, ref: RevisionRef) -> Redactor:
        env = self._secrets.decrypt_env(ref.revision.env_encrypted)
        return Redactor([*env.values(), *self.config.platform_secrets])

    def _event(self, ref: RevisionRef, event: str, **fields: object) -> None:
        self._event_ids(ref.deployment.id, ref.revision.id, event, **fields)

    @staticmethod
    def _event_ids(
        deployment_id: str, revision_id: str | None, event: str, **fields: object
    ) -> None:
        log.info(
            event, extra={"deployment_id": deployment_id, "revision_id": revision_id, **fields}
        )


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text.rstrip("\n") + "\n")


def _tail(path: Path, lines: int) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(content.splitlines()[-lines:])


def _start_draining(session: Session, revision_id: str, now: datetime) -> None:
    """The revision's running replicas leave the route (in the same switch) and drain."""
    for replica in session.exec(
        select(Replica).where(
            Replica.revision_id == revision_id,
            col(Replica.state).in_([ReplicaState.starting, ReplicaState.ready]),
        )
    ).all():
        start_draining(replica, now)
        session.add(replica)


def run_config(repo_config: RepositoryConfig, labels: dict[str, str]) -> RunConfig:
    """How a revision built now runs: from the repository's config and the labels the platform
    put on its image (the recipe's and its own), never read back from the image."""
    return RunConfig(
        port=repo_config.deploy.port,
        health_path=repo_config.deploy.health_path,
        langgraph_runtime=langgraph_runtime_of(labels),
        scale=scale_table(labels),
        state_dir=state_dir_of(labels),
    )
