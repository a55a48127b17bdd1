"""A revision's replica set: start, probe, drain and stop replicas.

The pieces both the revision pipeline ("make this revision's replicas healthy, then switch")
and the reconciler (replace dead replicas, scale, stop drained ones) are built on, so a replica
started by either is the same replica: same spec, same env, same health check.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import RouterError
from app.kernel.models import (
    RUNNING_REPLICA_STATES,
    Database,
    Deployment,
    Replica,
    ReplicaState,
    Repository,
    Revision,
)
from app.kernel.names import database_identifier
from app.kernel.ports import (
    Clock,
    ContainerRuntime,
    DatabaseProvisioner,
    Endpoint,
    HealthProbe,
    RouterPort,
    ServiceImages,
    StartedReplica,
)
from manifests.containers import (
    LIMITS,
    Confinement,
    ContainerSpec,
    DeploymentType,
    deployment_network,
    redis_spec,
    redis_uri,
    replica_env,
    replica_name,
    replica_spec,
)
from manifests.errors import RuntimeStartError, SlipwayError
from manifests.run import RunConfig
from manifests.tracing import TracedAs, Tracing, tracing_env

log = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 0.02
"""Between health probes of a starting replica: a probe costs one local HTTP request."""
INSPECT_EVERY_SECONDS = 0.25
"""How often a starting replica is checked for having exited: an inspect costs ~25 ms."""
DRAIN_POLL_SECONDS = 0.1
"""How often a draining replica's in-flight requests are read from the router."""
REDIS_PASSWORD_PURPOSE = b"slipway deployment redis password"
"""Domain separation: the Redis password is derived from the database's, never equal to it."""
MAX_PARALLEL_STARTS = 10
"""A production deployment's most replicas start at once (each `docker run` mostly waits)."""


def redis_password(database_password: str) -> str:
    """The deployment's Redis password, derived from its database's (see `Replicas._redis`)."""
    return hmac.new(database_password.encode(), REDIS_PASSWORD_PURPOSE, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ReplicaConfig:
    confinement: Confinement = field(default_factory=Confinement)
    health_timeout_seconds: float = 60.0
    drain_timeout_seconds: float = 30.0
    connection_limits: dict[DeploymentType, int] = field(
        default_factory=lambda: {DeploymentType.development: 20, DeploymentType.production: 50}
    )
    """Connections one deployment's role may hold on the cluster, by deployment type."""
    tracing: Tracing = field(default_factory=Tracing)
    """LangSmith or OpenTelemetry variables every replica gets (its user's own win)."""


@dataclass(frozen=True)
class RevisionRun:
    """Everything starting one more replica of a revision needs, worked out once."""

    deployment_id: str
    deployment_slug: str
    deployment_type: DeploymentType
    revision_id: str
    revision_number: int
    image: str
    run: RunConfig
    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    """Values to hide from anything shown (the database and Redis passwords, user secrets)."""
    notes: tuple[str, ...] = ()
    """What preparing it did that the build log should say (a Redis started)."""

    def spec(self, replica_id: str, confinement: Confinement) -> ContainerSpec:
        return replica_spec(
            deployment_id=self.deployment_id,
            revision_id=self.revision_id,
            name=replica_name(self.deployment_slug, self.revision_number, replica_id),
            image=self.image,
            port=self.run.port,
            limits=LIMITS[self.deployment_type],
            env=self.env,
            confinement=confinement,
            state_dir=self.run.state_dir,
        )


def ready_count(session: Session, revision_id: str | None) -> int:
    """Ready replicas of the revision: those the router sends requests to while it is live."""
    if revision_id is None:
        return 0
    return len(
        session.exec(
            select(Replica.id).where(
                Replica.revision_id == revision_id, Replica.state == ReplicaState.ready
            )
        ).all()
    )


def running_of(deployment_id: str) -> SelectOfScalar[Replica]:
    """The deployment's replicas that run (starting, ready or draining), of any of its revisions:
    what the route, the retirement rule and the API's view of a deployment count."""
    return (
        select(Replica)
        .join(Revision, col(Revision.id) == col(Replica.revision_id))
        .where(
            Revision.deployment_id == deployment_id,
            col(Replica.state).in_(RUNNING_REPLICA_STATES),
            col(Replica.stopped_at).is_(None),
        )
    )


class ReplicaStartFailed(RuntimeStartError):
    """A replica exited or never answered its health check; `ref` reads its output."""

    def __init__(self, message: str, ref: str) -> None:
        super().__init__(message)
        self.ref = ref


class Replicas:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        runtime: ContainerRuntime,
        health: HealthProbe,
        databases: DatabaseProvisioner,
        router: RouterPort,
        service_images: ServiceImages,
        config: ReplicaConfig,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._runtime = runtime
        self._health = health
        self._databases = databases
        self._router = router
        self._service_images = service_images
        self.config = config
        self._clock = clock

    # -- what a replica needs --------------------------------------------------------------
    def prepare(
        self, deployment: Deployment, revision: Revision, run: RunConfig, *, network_known: bool
    ) -> RevisionRun:
        """The database (made on the first revision), the network, the Redis of a LangGraph
        Server, and the env. `network_known`: a replica of the deployment runs, so its network
        exists and the ~30 ms check is skipped."""
        assert revision.image is not None
        database_uri, database_password = self.database(deployment)
        hidden = [database_password]
        notes: list[str] = []
        network = deployment_network(deployment.id)
        uri: str | None = None
        if run.langgraph_runtime is not None:
            self._runtime.ensure_network(network.name, network.labels)
            network_known = True
            uri, redis_password, started = self._redis(deployment, database_password)
            hidden.append(redis_password)
            if started:
                notes.append(f"started slipway-redis-{deployment.id}, the deployment's own Redis")
        if not network_known:
            self._runtime.ensure_network(network.name, network.labels)
        user_env = self._secrets.decrypt_env(revision.env_encrypted)
        traced = self._tracing_env(deployment, revision, user_env)
        return RevisionRun(
            deployment_id=deployment.id,
            deployment_slug=deployment.slug,
            deployment_type=deployment.type,
            revision_id=revision.id,
            revision_number=revision.number,
            image=revision.image,
            run=run,
            env=replica_env(
                user_env={**traced, **user_env},
                port=run.port,
                database_uri=database_uri,
                deployment_slug=deployment.slug,
                revision_id=revision.id,
                commit_sha=revision.commit_sha,
                redis_uri=uri,
            ),
            secrets=(*hidden, *self.config.tracing.secrets, *user_env.values()),
            notes=tuple(notes),
        )

    def _tracing_env(
        self, deployment: Deployment, revision: Revision, user_env: dict[str, str]
    ) -> dict[str, str]:
        tracing = self.config.tracing
        if tracing.langsmith is None and tracing.otel is None:
            return {}
        with self._sessions() as session:
            repository = session.get(Repository, deployment.repository_id)
        traced = TracedAs(
            deployment=deployment.slug,
            revision=revision.id,
            repository=repository.full_name if repository else "",
        )
        return tracing_env(tracing, traced, user_env)

    def database(self, deployment: Deployment) -> tuple[str, str]:
        """The deployment's database (URI, password), created on its first revision and kept."""
        with self._sessions() as session:
            database = session.get(Database, deployment.id)
            if database is None:
                identifier = database_identifier(deployment.id)
                database = Database(
                    deployment_id=deployment.id,
                    name=identifier,
                    role=identifier,
                    password_encrypted=self._secrets.encrypt(secrets.token_urlsafe(24)),
                    created_at=self._clock(),
                )
                session.add(database)
                try:
                    session.commit()
                except IntegrityError:  # another revision of this deployment got there first
                    session.rollback()
                    database = session.get(Database, deployment.id)
                    assert database is not None
            password = self._secrets.decrypt(database.password_encrypted)
            if database.provisioned_at is None:
                self._databases.ensure(
                    database.name,
                    database.role,
                    password,
                    connection_limit=self.config.connection_limits[deployment.type],
                )
                database.provisioned_at = self._clock()
                session.add(database)
                session.commit()
                log.info(
                    "database provisioned",
                    extra={"deployment_id": deployment.id, "database": database.name},
                )
            return self._databases.container_uri(database.name, database.role, password), password

    def _redis(self, deployment: Deployment, database_password: str) -> tuple[str, str, bool]:
        """The deployment's own Redis (URI, password, whether it was started now): kept running
        across revisions, made again when it is gone.

        Its password is derived from the database's (random, stored encrypted): as secret, kept
        as long, dropped with it, and no column of its own in the control plane.
        """
        password = redis_password(database_password)
        spec = redis_spec(
            deployment_id=deployment.id,
            image=self._service_images.redis(),
            password=password,
            confinement=self.config.confinement,
        )
        started = self._runtime.ensure_service(spec)
        if started:
            log.info(
                "redis started",
                extra={"deployment_id": deployment.id, "container": spec.name, "image": spec.image},
            )
        return redis_uri(deployment.id, password), password, started

    # -- start and probe --------------------------------------------------------------------
    def start(self, run: RevisionRun, count: int) -> list[Replica]:
        """Start `count` replicas at once and record them as starting (not routed yet).

        Each is recorded before its start, so a worker dying mid-start leaves a row the
        reconciler finds (and a container it finds by name).
        """
        rows = [
            Replica(
                revision_id=run.revision_id,
                container_name="",
                container_port=run.run.port,
                state=ReplicaState.starting,
                started_at=self._clock(),
            )
            for _ in range(count)
        ]
        specs = [run.spec(row.id, self.config.confinement) for row in rows]
        with self._sessions() as session:
            for row, spec in zip(rows, specs, strict=True):
                row.container_name = spec.name
                session.add(row)
            session.commit()
        with ThreadPoolExecutor(max_workers=min(count, MAX_PARALLEL_STARTS) or 1) as pool:
            outcomes = list(pool.map(self._start_one, specs))
        failure: RuntimeStartError | None = None
        with self._sessions() as session:
            for row, outcome in zip(rows, outcomes, strict=True):
                stored = session.get(Replica, row.id)
                assert stored is not None
                if isinstance(outcome, RuntimeStartError):
                    stored.state = ReplicaState.stopped
                    stored.stopped_at = self._clock()
                    stored.exit_reason = str(outcome)
                    failure = failure or outcome
                else:
                    stored.container_id = outcome.ref
                    stored.endpoint = outcome.endpoint.address
                session.add(stored)
            session.commit()
            started = [session.get(Replica, row.id) for row in rows]
        if failure is not None:
            self.stop([row.id for row in rows])
            raise failure
        return [replica for replica in started if replica is not None]

    def _start_one(self, spec: ContainerSpec) -> StartedReplica | RuntimeStartError:
        try:
            return self._runtime.start(spec)
        except RuntimeStartError as exc:
            return exc

    def wait_ready(
        self,
        run: RevisionRun,
        replicas: list[Replica],
        *,
        still_wanted: Callable[[], None] = lambda: None,
    ) -> None:
        """Probe every replica until each answers, then record it ready (routable).

        Raises ReplicaStartFailed for the first one that exits or misses the deadline;
        `still_wanted` raises to give up early (a teardown cancelled the revision).
        """
        timeout = self.config.health_timeout_seconds
        deadline = time.monotonic() + timeout
        pending = {replica.id: replica for replica in replicas}
        next_inspect = time.monotonic() + INSPECT_EVERY_SECONDS
        path, port = run.run.health_path, run.run.port
        while pending:
            for replica in list(pending.values()):
                assert replica.endpoint is not None
                if self._health.answers(Endpoint.parse(replica.endpoint), path):
                    self._mark_ready(replica.id)
                    del pending[replica.id]
            if not pending:
                return
            now = time.monotonic()
            if now >= next_inspect or now >= deadline:
                next_inspect = now + INSPECT_EVERY_SECONDS
                still_wanted()
                for replica in pending.values():
                    self._raise_if_exited(replica, port)
                if time.monotonic() > deadline:
                    replica = next(iter(pending.values()))
                    raise ReplicaStartFailed(
                        f"the app never answered its health check: no HTTP answer on port "
                        f"{port} at {path} within {timeout:g} s (it must listen on "
                        "0.0.0.0:$PORT)",
                        replica.container_id or replica.container_name,
                    )
            time.sleep(HEALTH_POLL_SECONDS)

    def _raise_if_exited(self, replica: Replica, port: int) -> None:
        ref = replica.container_id or replica.container_name
        status = self._runtime.status(ref)
        if status.running:
            return
        if status.oom_killed:
            raise ReplicaStartFailed(
                "the app ran out of memory at start (killed by the deployment type's memory limit)",
                ref,
            )
        code = "unknown" if status.exit_code is None else status.exit_code
        raise ReplicaStartFailed(
            f"the app exited with code {code} before answering HTTP on port {port}", ref
        )

    def _mark_ready(self, replica_id: str) -> None:
        with self._sessions() as session:
            replica = session.get(Replica, replica_id)
            assert replica is not None
            if replica.state is ReplicaState.starting:
                replica.state = ReplicaState.ready
                replica.ready_at = self._clock()
                session.add(replica)
                session.commit()

    def logs_tail(self, ref: str, lines: int) -> str:
        return self._runtime.logs_tail(ref, lines)

    # -- drain and stop ---------------------------------------------------------------------
    def drained(self, replicas: Iterable[Replica], now: datetime) -> list[Replica]:
        """Of these draining replicas, those with no request left (or out of time)."""
        draining = list(replicas)
        if not draining:
            return []
        try:
            in_flight = self._router.in_flight()
        except RouterError as exc:
            log.warning("in-flight requests unknown", extra={"error": str(exc)})
            in_flight = {}
        timeout = self.config.drain_timeout_seconds
        done = []
        for replica in draining:
            since = replica.draining_since or now
            if in_flight.get(replica.endpoint or "", 0) == 0:
                done.append(replica)
            elif (now - since).total_seconds() >= timeout:
                log.info(
                    "replica stopped before its requests finished",
                    extra={"replica": replica.id, "in_flight": in_flight[replica.endpoint or ""]},
                )
                done.append(replica)
        return done

    def drain(self, replica_ids: list[str]) -> None:
        """Wait (up to the drain timeout) until the router has no request for them, then stop
        them. They must already be out of the route."""
        deadline = time.monotonic() + self.config.drain_timeout_seconds + 1
        remaining = set(replica_ids)
        while remaining:
            with self._sessions() as session:
                replicas = session.exec(
                    select(Replica).where(
                        col(Replica.id).in_(remaining),
                        col(Replica.state).in_(RUNNING_REPLICA_STATES),
                    )
                ).all()
            done = (
                self.drained(replicas, self._clock()) if time.monotonic() < deadline else replicas
            )
            self.stop([replica.id for replica in done])
            remaining = {r.id for r in replicas} - {r.id for r in done}
            if remaining:
                time.sleep(DRAIN_POLL_SECONDS)

    def stop(
        self,
        replica_ids: Iterable[str],
        *,
        state: ReplicaState = ReplicaState.stopped,
        reason: str | None = None,
    ) -> None:
        """Remove them from the runtime and record them `state` (stopped or dead). One the
        runtime fails to remove stays recorded as it was, and is tried again later."""
        for replica in self._unstopped(replica_ids):
            if self._removed(replica):
                self._record_stopped(replica.id, state, reason)

    def bury(self, reasons: dict[str, str]) -> list[Replica]:
        """Record replicas that died (id → why) as dead, leaving what the runtime still holds
        of them (a dead app's address keeps refusing, so the router retries elsewhere) until
        `remove` is called, once the route no longer has them."""
        buried = self._unstopped(reasons)
        for replica in buried:
            self._record_stopped(replica.id, ReplicaState.dead, reasons[replica.id])
        return buried

    def remove(self, replicas: Iterable[Replica]) -> None:
        """What the runtime holds of replicas already recorded stopped; one left behind goes
        with its deployment (found by label)."""
        for replica in replicas:
            self._removed(replica)

    def _unstopped(self, replica_ids: Iterable[str]) -> list[Replica]:
        with self._sessions() as session:
            return list(
                session.exec(
                    select(Replica).where(
                        col(Replica.id).in_(list(replica_ids)), col(Replica.stopped_at).is_(None)
                    )
                ).all()
            )

    def _removed(self, replica: Replica) -> bool:
        if not replica.container_name:
            return True
        try:
            self._runtime.remove(replica.container_name)
        except SlipwayError as exc:
            log.warning("replica not removed", extra={"replica": replica.id, "error": str(exc)})
            return False
        return True

    def _record_stopped(self, replica_id: str, state: ReplicaState, reason: str | None) -> None:
        with self._sessions() as session:
            stored = session.get(Replica, replica_id)
            assert stored is not None
            stored.state = state
            stored.stopped_at = self._clock()
            if reason is not None:
                stored.exit_reason = reason
            session.add(stored)
            session.commit()

    def stop_revision(self, revision_id: str) -> None:
        """Every replica of the revision still running (a failed or cancelled start)."""
        with self._sessions() as session:
            ids = session.exec(
                select(Replica.id).where(
                    Replica.revision_id == revision_id, col(Replica.stopped_at).is_(None)
                )
            ).all()
        self.stop(ids)
