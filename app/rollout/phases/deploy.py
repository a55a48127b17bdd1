"""Deploy: the revision's replica set made healthy (its database, network, Redis for a LangGraph
Server, as many replicas as the live revision runs now), not yet routed.

A teardown may cancel the revision at any moment: every step that takes time is followed by a
compare-and-set on the state, and RevisionAbandoned ends the phase as soon as it is not
`deploying` any more.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.deployments.revisions import transition
from app.feedback.reports import LOG_TAIL_LINES
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import RevisionAbandoned
from app.kernel.models import Deployment, Replica, Revision, RevisionState
from app.kernel.ports import Clock
from app.replicas.autoscaler import AutoscaleDefaults, scaling_policy
from app.replicas.replica_set import Replicas, ReplicaStartFailed, ready_count
from app.rollout.phases.build import Image
from app.rollout.phases.context import RevisionContext, record
from manifests.containers import LIMITS, REDIS_LIMITS, DeploymentType, redis_name
from manifests.errors import RuntimeStartError
from manifests.run import RunConfig

DEPLOYING = frozenset({RevisionState.deploying})


class Deploy:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        replicas: Replicas,
        secrets: SecretBox,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._replicas = replicas
        self._secrets = secrets
        self._clock = clock

    def begin(self, ctx: RevisionContext, image: Image) -> bool:
        """The revision leaves `building` for `deploying` with its image; False when it was
        cancelled meanwhile (its build method is recorded all the same)."""
        with self._sessions() as session:
            moved = transition(
                session,
                ctx.revision.id,
                frozenset({RevisionState.building}),
                RevisionState.deploying,
                image=image.tag,
                build_method=image.method,
                build_finished_at=self._clock(),
                deploy_started_at=self._clock(),
            )
        if not moved:
            record(self._sessions, ctx.revision.id, build_method=image.method)
        return moved

    def run(self, ctx: RevisionContext, image: Image) -> None:
        """Raises RevisionAbandoned once cancelled, RuntimeStartError when a replica exits or
        never answers its health check (its output's last lines are in the log)."""
        revision, deployment, run = ctx.revision, ctx.deployment, image.run
        with self._sessions() as session:
            _advance(session, revision.id, run_config=run.to_json())
            network_known = _has_running_replica(session, deployment.id)
        ready_to_run = self._replicas.prepare(
            deployment,
            revision.model_copy(update={"image": image.tag}),
            run,
            network_known=network_known,
        )
        with self._sessions() as session:
            # A teardown that raced the provisioning redoes it.
            _advance(session, revision.id, database_ready_at=self._clock())
            count = _replica_count(session, deployment.id, run, ctx.config.autoscale)
        redact = ctx.redact
        for secret in ready_to_run.secrets:
            redact = redact.including(secret)
        for note in ready_to_run.notes:
            ctx.log.append(
                f"slipway: {note} ({REDIS_LIMITS.memory_bytes // 1024**2} MB, on its network only)"
            )
        if run.langgraph_runtime is not None:
            self._langgraph_note(ctx, run.langgraph_runtime)
        limits = LIMITS[deployment.type]
        ctx.log.append(
            f"slipway: starting {count} replica{'s' if count != 1 else ''} "
            f"({deployment.type.value}: {limits.cpus:g} CPU, {limits.memory_bytes // 1024**3} GB "
            "each)"
        )
        self._replicas.stop_revision(revision.id)  # left by an earlier attempt (a retried job)
        started = self._replicas.start(ready_to_run, count)
        self._recorded_while_deploying(revision.id, replica_started_at=self._clock())
        try:
            self._replicas.wait_ready(
                ready_to_run, started, still_wanted=lambda: self._still_deploying(revision.id)
            )
        except ReplicaStartFailed as exc:
            output = redact(self._replicas.logs_tail(exc.ref, LOG_TAIL_LINES))
            if output.strip():
                ctx.log.append("slipway: container output (last lines):\n" + output.rstrip())
            raise RuntimeStartError(str(exc)) from None
        ctx.event("revision healthy", replicas=len(started))
        with self._sessions() as session:
            transition(
                session, revision.id, DEPLOYING, RevisionState.deploying, healthy_at=self._clock()
            )

    # -- the state, checked as the phase goes ----------------------------------------------
    def _recorded_while_deploying(self, revision_id: str, **values: object) -> None:
        """Record what happened (it did, whatever the state), then RevisionAbandoned if a
        teardown cancelled the revision meanwhile."""
        with self._sessions() as session:
            session.execute(
                update(Revision).where(col(Revision.id) == revision_id).values(**values)
            )
            session.commit()
            state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
        if state is not RevisionState.deploying:
            raise RevisionAbandoned(f"revision {revision_id} is {state}")

    def _still_deploying(self, revision_id: str) -> None:
        with self._sessions() as session:
            state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
        if state is not RevisionState.deploying:
            raise RevisionAbandoned(f"revision {revision_id} is {state}")

    def _langgraph_note(self, ctx: RevisionContext, runtime: str) -> None:
        """Say where the graph's state lives: the platform's checkpointer, never the graph's."""
        where = (
            "the deployment's own Postgres database"
            if runtime == "pg"
            else "files on the deployment's own volume (inmem: kept across replicas and "
            "revisions, removed with the deployment)"
        )
        ctx.log.append(
            f"slipway: langgraph: the managed checkpointer and store ({runtime} runtime) keep "
            f"threads, runs and checkpoints in {where}; a checkpointer the graph compiles "
            "itself is not used"
        )
        ctx.event(
            "langgraph managed checkpointer", runtime=runtime, redis=redis_name(ctx.deployment.id)
        )
        if "REDIS_URI" in self._secrets.decrypt_env(ctx.revision.env_encrypted):
            ctx.log.append(
                "slipway: langgraph: REDIS_URI from the deployment's env is not used; the "
                "server gets the deployment's own Redis (unset it to silence this)"
            )


def _advance(session: Session, revision_id: str, **values: object) -> None:
    """Record what the phase reached, if the revision is still deploying (one
    compare-and-set); else RevisionAbandoned."""
    if transition(session, revision_id, DEPLOYING, RevisionState.deploying, **values):
        return
    state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
    raise RevisionAbandoned(f"revision {revision_id} is {state}")


def _has_running_replica(session: Session, deployment_id: str) -> bool:
    """A replica of the deployment runs, so its network exists."""
    return (
        session.exec(
            select(Replica.id)
            .join(Revision, col(Revision.id) == col(Replica.revision_id))
            .where(Revision.deployment_id == deployment_id, col(Replica.stopped_at).is_(None))
        ).first()
        is not None
    )


def _replica_count(
    session: Session, deployment_id: str, run: RunConfig, autoscale: AutoscaleDefaults
) -> int:
    deployment = session.get(Deployment, deployment_id)
    assert deployment is not None
    serving = ready_count(session, deployment.live_revision_id)
    return replica_count(
        deployment.type, autoscale, run, serving=serving, desired=deployment.desired_replicas
    )


def replica_count(
    kind: DeploymentType,
    autoscale: AutoscaleDefaults,
    run: RunConfig,
    *,
    serving: int,
    desired: int,
) -> int:
    """As many replicas as the live revision runs now (`serving` ready, `desired` by the
    autoscaler), within this revision's bounds: a rollout never drops capacity under load, and
    `[scale] min` holds from the first request (not from whenever the reconciler next looks at
    an idle deployment)."""
    policy = scaling_policy(kind, autoscale, run.scale_config())
    return min(policy.bounded(max(serving, desired)), LIMITS[kind].max_replicas)
