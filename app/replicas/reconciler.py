"""The reconciler: what runs converges to what is desired, every tick and at every worker start.

A tick looks only at the deployments that need it: those the runtime's events marked (a replica
died, started or went: `changed`), those with replicas starting or draining or fewer than they
should run, and production ones being scaled (requests in flight now, load remembered, or more
than one replica desired). Every SLIPWAY_RECONCILE_RESYNC_SECONDS a sweep lists every
container and compares it with every replica recorded as running, in the same two queries: a
death whose event was lost is found there, and only deployments where the two disagree (or that
a tick would look at anyway) are looked at one by one. When events may have been lost wholesale
(the worker's start, the event stream reopened: `resync`) every deployment is looked at one by
one. So a tick over idle deployments reads two small queries and Caddy's upstreams, lists no
container and writes nothing, however many there are, and a sweep adds one listing.

For each deployment it looks at, it compares the control plane (the live revision, the desired
replica count, the replicas recorded) with what the runtime runs and the router sees, and acts: a
replica that died leaves the route and is replaced (with a backoff when it keeps dying), the
autoscaler's count is started or drained, and replicas of finished revisions leave the route and
stop once their requests are done (the retirement rule, app/replicas/retirement.py). The
revision pipeline owns a revision until it is live; from then on, this does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from app.feedback.notify_outbox import NotificationOutbox
from app.kernel.db import SessionFactory
from app.kernel.errors import RouterError
from app.kernel.locks import DeploymentLocks
from app.kernel.models import (
    RUNNING_REPLICA_STATES,
    Deployment,
    Replica,
    ReplicaState,
    Revision,
    RevisionState,
)
from app.kernel.ports import Clock, ContainerRuntime, ImageBuilder, ReplicaStatus, RouterPort
from app.replicas.autoscaler import (
    AutoscaleDefaults,
    Decision,
    Reason,
    RunQueue,
    Sample,
    ScalerState,
    decide,
    record,
    scaling_policy,
)
from app.replicas.engine_events import EngineEventFollower
from app.replicas.health_alerts import Health, HealthAlerts
from app.replicas.replica_set import Replicas, ReplicaStartFailed, ready_count, running_of
from app.replicas.retirement import Retirement, start_draining
from app.replicas.routes import RouteTable
from app.replicas.run_queue import RunQueues
from manifests.config import deploy_config_of
from manifests.containers import DeploymentType
from manifests.errors import RuntimeStartError, SlipwayError
from manifests.recipes import langgraph_runtime_of, state_dir_of
from manifests.run import RunConfig, scale_table

log = logging.getLogger(__name__)

CRASH_WINDOW = timedelta(minutes=10)
"""Deaths of the live revision's replicas within this long count towards its backoff."""
CRASH_LOOP_DEATHS = 3
"""From this many deaths in the window the deployment shows `crash-looping`."""
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
"""A replica that keeps dying is started again after 1 s, 2 s, 4 s, ... at most 5 minutes."""
PARALLEL_DEPLOYMENTS = 4
"""Deployments converged at once in one pass (each mostly waits on the engine)."""


RESYNC_SECONDS = 60.0
"""Default of SLIPWAY_RECONCILE_RESYNC_SECONDS: every deployment is looked at this often even
without an event (the safety net for a lost one)."""


class Pass(Enum):
    """What one reconciler tick looks at."""

    tick = "tick"
    """The deployments marked by an event, busy, short or being scaled."""
    sweep = "sweep"
    """A tick's, and those whose recorded replicas the runtime's listing does not run."""
    full = "full"
    """Every deployment one by one: at the worker's start, and after events were lost."""


@dataclass(frozen=True)
class Observed:
    statuses: dict[str, ReplicaStatus] | None
    """Every replica the runtime knows, by name; None when it was not asked this tick (no
    event said anything changed): nothing is judged dead."""
    in_flight: dict[str, int] | None
    """Requests in flight by endpoint; None when the router could not be asked (no sample:
    the autoscaler holds its count)."""
    queues: dict[str, RunQueue] | None = None
    """The run queues of LangGraph deployments read this tick, by deployment (one whose read
    failed is absent: it scales on requests alone)."""


@dataclass(frozen=True)
class Watch:
    """What a tick between resyncs reads of the control plane, in two queries."""

    busy: frozenset[str]
    """Deployments with a replica starting or draining, or running for a revision that is no
    longer live (or of a deployment removed)."""
    short: frozenset[str]
    """Live deployments running fewer replicas of their live revision than desired."""
    scalable: dict[str, tuple[str, ...]]
    """Production deployments with a live revision: the endpoints of its ready replicas."""
    above_one: frozenset[str]
    """Deployments desiring more than one replica: the scale-down delay runs for them."""
    long: frozenset[str] = frozenset()
    """Live deployments serving more replicas of their live revision than desired."""
    containers: dict[str, tuple[str, ...]] | None = None
    """The containers of every replica recorded as running, by deployment (for the sweep)."""
    live_revisions: dict[str, str] = field(default_factory=dict)
    """Production deployments with a ready replica of their live revision: that revision."""


@dataclass(frozen=True)
class CrashLoop:
    deaths: int
    last_reason: str
    last_death_at: datetime
    next_start_at: datetime


def backoff_seconds(deaths: int) -> float:
    """No wait after the first death; then doubling from FIRST_BACKOFF_SECONDS."""
    if deaths <= 1:
        return 0.0
    return float(min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (deaths - 2)))


def crash_loop(session: Session, deployment: Deployment, now: datetime) -> CrashLoop | None:
    """The live revision's recent deaths, if any: what the backoff and the API show."""
    if deployment.live_revision_id is None:
        return None
    dead = session.exec(
        select(Replica)
        .where(
            Replica.revision_id == deployment.live_revision_id,
            Replica.state == ReplicaState.dead,
            col(Replica.stopped_at) >= now - CRASH_WINDOW,
        )
        .order_by(col(Replica.stopped_at).desc())
    ).all()
    return _loop_of(list(dead))


def crash_loops(
    session: Session, deployments: Sequence[Deployment], now: datetime
) -> dict[str, CrashLoop]:
    """`crash_loop` of many deployments in one query (a page listing them all), by id."""
    live = {d.live_revision_id: d.id for d in deployments if d.live_revision_id}
    if not live:
        return {}
    dead = session.exec(
        select(Replica)
        .where(
            col(Replica.revision_id).in_(list(live)),
            Replica.state == ReplicaState.dead,
            col(Replica.stopped_at) >= now - CRASH_WINDOW,
        )
        .order_by(col(Replica.stopped_at).desc())
    ).all()
    by_revision: dict[str, list[Replica]] = {}
    for replica in dead:
        by_revision.setdefault(replica.revision_id, []).append(replica)
    loops = {live[r]: _loop_of(replicas) for r, replicas in by_revision.items()}
    return {d: loop for d, loop in loops.items() if loop is not None}


def _loop_of(dead: list[Replica]) -> CrashLoop | None:
    """The loop that dead replicas (newest first) make, if any."""
    if not dead or dead[0].stopped_at is None:
        return None
    last = dead[0]
    assert last.stopped_at is not None
    return CrashLoop(
        deaths=len(dead),
        last_reason=last.exit_reason or "it stopped",
        last_death_at=last.stopped_at,
        next_start_at=last.stopped_at + timedelta(seconds=backoff_seconds(len(dead))),
    )


def is_crash_looping(loop: CrashLoop | None) -> bool:
    return loop is not None and loop.deaths >= CRASH_LOOP_DEATHS


def running_replicas(session: Session, deployment_id: str) -> list[Replica]:
    """Replicas of any of the deployment's revisions that are starting, ready or draining."""
    return list(
        session.exec(
            running_of(deployment_id).order_by(col(Replica.started_at), col(Replica.id))
        ).all()
    )


def running_replicas_of(
    session: Session, deployment_ids: Sequence[str]
) -> dict[str, list[Replica]]:
    """`running_replicas` of many deployments in one query, by deployment id."""
    rows = session.exec(
        select(Revision.deployment_id, Replica)
        .join(Revision, col(Revision.id) == col(Replica.revision_id))
        .where(
            col(Revision.deployment_id).in_(list(deployment_ids)),
            col(Replica.state).in_(RUNNING_REPLICA_STATES),
            col(Replica.stopped_at).is_(None),
        )
        .order_by(col(Replica.started_at), col(Replica.id))
    ).all()
    found: dict[str, list[Replica]] = {}
    for deployment_id, replica in rows:
        found.setdefault(deployment_id, []).append(replica)
    return found


class Reconciler:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        runtime: ContainerRuntime,
        replicas: Replicas,
        routes: RouteTable,
        router: RouterPort,
        builder: ImageBuilder,
        locks: DeploymentLocks,
        autoscale: AutoscaleDefaults,
        clock: Clock,
        wall: Callable[[], float] = time.time,
        resync_seconds: float = RESYNC_SECONDS,
        notifications: NotificationOutbox,
        run_queues: RunQueues | None = None,
    ) -> None:
        """`wall` also times the resyncs (a clock set back starts one); `run_queues` reads
        LangGraph deployments' run queues (None: they scale on requests alone)."""
        self._sessions = sessions
        self._runtime = runtime
        self._replicas = replicas
        self._routes = routes
        self._router = router
        self._builder = builder
        self._locks = locks
        self._autoscale = autoscale
        self._clock = clock
        self._wall = wall
        self._resync_seconds = resync_seconds
        self._run_queues = run_queues
        self._retirement = Retirement(sessions=sessions, replicas=replicas, clock=clock)
        self._alerts = HealthAlerts(sessions=sessions, notifications=notifications, clock=clock)
        self._mutex = threading.Lock()
        self._changed: set[str] = set()
        self._resync_requested = True
        """The first pass after a start is a full one."""
        self._last_resync: float | None = None
        self._hot: set[str] = set()
        """Deployments whose last decision was worth storing (load remembered, a count
        changing): sampled every tick until they are quiet again."""

    # -- what the runtime's events say (any thread) ----------------------------------------
    def follower(self) -> EngineEventFollower:
        """What keeps this reconciler told of the runtime's events (started by the worker)."""
        return EngineEventFollower(self._runtime, on_event=self.changed, on_resync=self.resync)

    def changed(self, deployment_id: str) -> None:
        """Something happened to one of the deployment's containers: look at it next tick."""
        with self._mutex:
            self._changed.add(deployment_id)

    def resync(self) -> None:
        """Events may have been lost: look at everything next tick."""
        with self._mutex:
            self._resync_requested = True

    def _take_work(self) -> tuple[Pass, set[str]]:
        """What kind of pass this tick is, and the deployments marked since the last."""
        now = self._wall()
        with self._mutex:
            last = self._last_resync
            kind = Pass.tick
            if self._resync_requested or last is None:
                kind = Pass.full
            elif now - last >= self._resync_seconds or now < last:
                kind = Pass.sweep
            if kind is not Pass.tick:
                self._resync_requested = False
                self._last_resync = now
            changed, self._changed = self._changed, set()
        return kind, changed

    def _give_back(self, *, full: bool, changed: set[str]) -> None:
        """A tick that could not look: what it took is looked at next tick."""
        with self._mutex:
            self._resync_requested |= full
            self._changed |= changed

    # -- one tick ----------------------------------------------------------------------------
    def reconcile(self) -> None:
        """One pass: over everything at a resync, else over what needs looking at."""
        kind, changed = self._take_work()
        if kind is Pass.full:
            ids = self._deployments_to_look_at()
            seen = self._observe() if ids else None
            if ids and seen is None:
                self._give_back(full=True, changed=changed)
                return
        else:
            ids, seen = self._light(changed, sweep=kind is Pass.sweep)
        if not ids or seen is None:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_DEPLOYMENTS, len(ids))) as pool:
            for deployment_id, outcome in zip(
                ids, pool.map(lambda i: self._guarded(i, seen), ids), strict=True
            ):
                if outcome is not None:
                    log.warning(
                        "deployment not reconciled",
                        extra={"deployment_id": deployment_id, "error": outcome},
                    )

    def _light(
        self, changed: set[str], *, sweep: bool = False
    ) -> tuple[list[str], Observed | None]:
        """Between resyncs: the deployments marked, busy, short or being scaled; the runtime
        is listed only when an event came, Caddy asked only when something can scale.

        A `sweep` also lists the runtime and adds the deployments whose recorded replicas it
        does not run (a death whose event was lost) or that serve more than desired."""
        watch = self._watch(containers=sweep)
        ids = set(changed) | watch.busy | watch.short
        with self._mutex:
            hot = set(self._hot)
        ids |= set(watch.scalable) & (watch.above_one | hot)
        in_flight = None
        queues: dict[str, RunQueue] = {}
        if watch.scalable:
            in_flight = self._in_flight()
            ids |= {
                deployment_id
                for deployment_id, endpoints in watch.scalable.items()
                if in_flight and any(in_flight.get(e, 0) > 0 for e in endpoints)
            }
            # Background runs hold no request: a queue with runs is looked at like load.
            queues = self._queues(watch)
            ids |= {deployment_id for deployment_id, queue in queues.items() if queue.total}
        statuses = None
        if sweep:
            try:
                statuses = self._runtime.statuses()
            except SlipwayError as exc:
                log.warning("replicas unknown this tick", extra={"error": str(exc)})
                self._give_back(full=True, changed=changed)
                return [], None
            ids |= watch.long | _disagreeing(watch.containers or {}, statuses)
        if not ids:
            return [], None
        if changed and statuses is None:
            try:
                statuses = self._runtime.statuses()
            except SlipwayError as exc:
                log.warning("replicas unknown this tick", extra={"error": str(exc)})
                self._give_back(full=False, changed=changed)
        return sorted(ids), Observed(statuses=statuses, in_flight=in_flight, queues=queues)

    def _watch(self, *, containers: bool = False) -> Watch:
        """Two queries whatever the number of deployments: the replicas running, and the
        deployments that should run something (with `containers`, the replicas' containers)."""
        with self._sessions() as session:
            running = session.execute(
                select_columns(
                    col(Revision.deployment_id),
                    col(Replica.revision_id),
                    col(Replica.state),
                    col(Replica.endpoint),
                    col(Deployment.live_revision_id),
                    col(Deployment.removed_at),
                    col(Replica.container_name),
                )
                .join(Replica, col(Replica.revision_id) == col(Revision.id))
                .join(Deployment, col(Deployment.id) == col(Revision.deployment_id))
                .where(
                    col(Replica.state).in_(RUNNING_REPLICA_STATES),
                    col(Replica.stopped_at).is_(None),
                )
            ).all()
            live_rows = session.exec(
                select(
                    Deployment.id,
                    Deployment.type,
                    Deployment.desired_replicas,
                    Deployment.live_revision_id,
                ).where(
                    col(Deployment.live_revision_id).is_not(None),
                    col(Deployment.removed_at).is_(None),
                )
            ).all()
        live = [(d, kind, want) for d, kind, want, _revision in live_rows]
        busy: set[str] = set()
        serving: dict[str, int] = {}
        endpoints: dict[str, list[str]] = {}
        names: dict[str, list[str]] = {}
        for row in running:
            deployment_id, revision_id, state, endpoint, live_revision_id, removed_at, name = row
            names.setdefault(deployment_id, []).append(name)
            current = revision_id == live_revision_id and removed_at is None
            if state != ReplicaState.ready or not current:
                busy.add(deployment_id)
            if current and state != ReplicaState.draining:
                serving[deployment_id] = serving.get(deployment_id, 0) + 1
            if current and state == ReplicaState.ready and endpoint:
                endpoints.setdefault(deployment_id, []).append(endpoint)
        return Watch(
            busy=frozenset(busy),
            short=frozenset(d for d, _type, want in live if serving.get(d, 0) < want),
            scalable={
                d: tuple(endpoints.get(d, ()))
                for d, kind, _want in live
                if kind == DeploymentType.production
            },
            live_revisions={
                d: revision
                for d, kind, _want, revision in live_rows
                if kind == DeploymentType.production and revision and endpoints.get(d)
            },
            above_one=frozenset(d for d, _type, want in live if want > 1),
            long=frozenset(d for d, _type, want in live if serving.get(d, 0) > want),
            containers={d: tuple(n) for d, n in names.items()} if containers else None,
        )

    def _queues(self, watch: Watch) -> dict[str, RunQueue]:
        """The run queues of the LangGraph deployments among those with a ready replica."""
        if self._run_queues is None:
            return {}
        try:
            return self._run_queues.read(watch.live_revisions)
        except Exception:
            log.exception("run queues not read this tick")
            return {}

    def _in_flight(self) -> dict[str, int] | None:
        try:
            return self._router.in_flight()
        except RouterError as exc:
            log.warning("router load unknown this tick", extra={"error": str(exc)})
            return None

    def _observe(self) -> Observed | None:
        """What runs (the runtime) and what it serves (the router), once for the whole pass.

        None when the runtime cannot say: nothing is judged dead on a failed listing.
        """
        try:
            statuses = self._runtime.statuses()
        except SlipwayError as exc:
            log.warning("replicas unknown this tick", extra={"error": str(exc)})
            return None
        queues = self._queues(self._watch()) if self._run_queues is not None else {}
        return Observed(statuses=statuses, in_flight=self._in_flight(), queues=queues)

    def _guarded(self, deployment_id: str, seen: Observed) -> str | None:
        """One deployment, under its lock; a failure stays with that deployment, which is
        looked at again next tick (as is one another process holds)."""
        try:
            with self._locks.try_hold(deployment_id) as held:
                if held:
                    self.reconcile_deployment(deployment_id, seen)
                else:
                    self.changed(deployment_id)
        except SlipwayError as exc:
            self.changed(deployment_id)
            return str(exc)
        except Exception as exc:
            self.changed(deployment_id)
            log.exception("reconciler crashed", extra={"deployment_id": deployment_id})
            return f"internal error ({type(exc).__name__})"
        return None

    def _deployments_to_look_at(self) -> list[str]:
        with self._sessions() as session:
            live = session.exec(
                select(Deployment.id).where(
                    col(Deployment.live_revision_id).is_not(None),
                    col(Deployment.removed_at).is_(None),
                )
            ).all()
            running = session.exec(
                select(Revision.deployment_id)
                .join(Replica, col(Replica.revision_id) == col(Revision.id))
                .where(col(Replica.stopped_at).is_(None))
                .distinct()
            ).all()
        return sorted(set(live) | set(running))

    # -- one deployment -----------------------------------------------------------------------
    def reconcile_deployment(self, deployment_id: str, seen: Observed) -> None:
        buried, route_changed = self._bury_the_dead(deployment_id, seen.statuses)
        try:
            route_changed |= self._retirement.begin(deployment_id).newly_draining > 0
            self._retirement.stop_drained(deployment_id)
            if route_changed:
                self._routes.apply()
        finally:
            # Only now: until the route no longer has them, their addresses must refuse.
            self._replicas.remove(buried)
        self._converge(deployment_id, seen.in_flight, (seen.queues or {}).get(deployment_id))

    def _bury_the_dead(
        self, deployment_id: str, statuses: dict[str, ReplicaStatus] | None
    ) -> tuple[list[Replica], bool]:
        """Replicas the runtime no longer runs: recorded dead with why, out of the route from
        the next render (and whether that changes it)."""
        if statuses is None:
            return [], False
        now = self._clock()
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            replicas = running_replicas(session, deployment_id)
        dead: list[tuple[Replica, ReplicaStatus]] = []
        for replica in replicas:
            if replica.state is ReplicaState.starting and not _stale(replica, now):
                continue  # its starter is probing it (and sees it exit)
            status = statuses.get(replica.container_name)
            if status is None:
                status = ReplicaStatus(running=False)
            if not status.running or replica.state is ReplicaState.starting:
                dead.append((replica, status))
        if not dead:
            return [], False
        reasons = {
            replica.id: (
                "it never answered its health check (the worker starting it stopped)"
                if replica.state is ReplicaState.starting
                else status.exit_reason
            )
            for replica, status in dead
        }
        buried = self._replicas.bury(reasons)
        route_changed = False
        for replica, _status in dead:
            reason = reasons[replica.id]
            live = deployment is not None and replica.revision_id == deployment.live_revision_id
            route_changed |= live and replica.state is ReplicaState.ready
            log.warning(
                "replica died",
                extra={
                    "deployment_id": deployment_id,
                    "revision_id": replica.revision_id,
                    "replica": replica.id,
                    "reason": reason,
                },
            )
            if live:
                self._record(deployment_id, Reason.replica_died, now)
        return buried, route_changed

    def _converge(
        self, deployment_id: str, in_flight: dict[str, int] | None, queue: RunQueue | None = None
    ) -> None:
        """Sample, decide, then start what is missing or drain what is too much."""
        now = self._clock()
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if (
                deployment is None
                or deployment.live_revision_id is None
                or deployment.removed_at is not None
            ):
                return
            revision = session.get(Revision, deployment.live_revision_id)
            if revision is None or revision.state is not RevisionState.live:
                return
            replicas = session.exec(
                select(Replica).where(
                    Replica.revision_id == revision.id,
                    col(Replica.state).in_([ReplicaState.starting, ReplicaState.ready]),
                )
            ).all()
            loop = crash_loop(session, deployment, now)
        ready = [r for r in replicas if r.state is ReplicaState.ready]
        starting = [r for r in replicas if r.state is ReplicaState.starting]
        self._alerts.observe(
            deployment,
            Health(
                ready=len(ready),
                crash_looping=is_crash_looping(loop),
                deaths=loop.deaths if loop else 0,
                last_reason=loop.last_reason if loop else "",
            ),
        )
        run = self._run_config(revision)
        desired = self._desired(deployment, run, ready, in_flight, queue)
        missing = desired - len(ready) - len(starting)
        if missing > 0:
            if loop is not None and now < loop.next_start_at:
                return  # backing off: the API shows crash-looping with the last reason
            self._start(deployment, revision, run, missing)
        elif missing < 0:
            self._scale_down(deployment, ready, -missing)

    def _desired(
        self,
        deployment: Deployment,
        run: RunConfig,
        ready: Sequence[Replica],
        in_flight: dict[str, int] | None,
        queue: RunQueue | None = None,
    ) -> int:
        """The autoscaler's count for production; exactly one for everything else."""
        queue_env = None
        if (
            self._run_queues is not None
            and deployment.type is DeploymentType.production
            and deployment.live_revision_id is not None
        ):
            facts = self._run_queues.facts(deployment.live_revision_id)
            queue_env = facts.env if facts.queued else None
        policy = scaling_policy(
            deployment.type, self._autoscale, run.scale_config(), run_queue_env=queue_env
        )
        at = self._wall()
        sample = None
        if policy.fixed:
            # The count does not depend on load: no need to ask Caddy, nor to store samples.
            sample = Sample(at=at, concurrency=0.0, replicas=len(ready))
        elif in_flight is not None:
            concurrency = float(sum(in_flight.get(r.endpoint or "", 0) for r in ready))
            sample = Sample(
                at=at,
                concurrency=concurrency,
                replicas=len(ready),
                queue=queue if policy.jobs_per_worker is not None else None,
            )
        before = ScalerState.from_json(deployment.scaler_state)
        state, decision = decide(policy, before, sample, actual=len(ready), now=at)
        idle = _idle(before, sample, decision, deployment.desired_replicas)
        with self._mutex:
            if idle:
                self._hot.discard(deployment.id)
            else:
                self._hot.add(deployment.id)
        if not idle:
            self._store(deployment.id, state, decision.desired)
        if decision.desired != deployment.desired_replicas:
            log.info(
                "replicas desired",
                extra={
                    "deployment_id": deployment.id,
                    "desired": decision.desired,
                    "actual": len(ready),
                    "reason": str(decision.reason),
                    "stable_concurrency": decision.stable_concurrency,
                    "panic_concurrency": decision.panic_concurrency,
                    "pending_runs": decision.queue.pending if decision.queue else None,
                    "running_runs": decision.queue.running if decision.queue else None,
                },
            )
        return decision.desired

    def _start(
        self, deployment: Deployment, revision: Revision, run: RunConfig, count: int
    ) -> None:
        prepared = self._replicas.prepare(deployment, revision, run, network_known=False)
        try:
            started = self._replicas.start(prepared, count)
        except RuntimeStartError as exc:
            log.warning(
                "replica not started",
                extra={
                    "deployment_id": deployment.id,
                    "revision_id": revision.id,
                    "error": str(exc),
                },
            )
            return
        try:
            self._replicas.wait_ready(prepared, started)
        except ReplicaStartFailed as exc:
            failed = [r for r in started if exc.ref in (r.container_id, r.container_name)]
            self._replicas.stop([r.id for r in failed], state=ReplicaState.dead, reason=str(exc))
            log.warning(
                "replica did not become healthy",
                extra={
                    "deployment_id": deployment.id,
                    "revision_id": revision.id,
                    "error": str(exc),
                },
            )
        self._routes.apply()
        log.info(
            "replicas started",
            extra={"deployment_id": deployment.id, "revision_id": revision.id, "count": count},
        )

    def _scale_down(self, deployment: Deployment, ready: Sequence[Replica], count: int) -> None:
        """The newest go first: the oldest have warm caches and their clients' connections."""
        leaving = sorted(ready, key=lambda r: r.ready_at or r.started_at, reverse=True)[:count]
        now = self._clock()
        with self._sessions() as session:
            for replica in leaving:
                stored = session.get(Replica, replica.id)
                if stored is not None and stored.state is ReplicaState.ready:
                    start_draining(stored, now)
                    session.add(stored)
            session.commit()
        self._routes.apply()
        log.info("replicas draining", extra={"deployment_id": deployment.id, "count": len(leaving)})

    # -- helpers ------------------------------------------------------------------------------
    def _run_config(self, revision: Revision) -> RunConfig:
        """As recorded at build time; a revision from before that is read off its image."""
        if revision.run_config:
            return RunConfig.from_json(revision.run_config)
        labels = (self._builder.labels(revision.image) if revision.image else None) or {}
        deploy = deploy_config_of(labels)
        run = RunConfig(
            port=deploy.port if deploy else 8000,
            health_path=deploy.health_path if deploy else "/",
            langgraph_runtime=langgraph_runtime_of(labels),
            scale=scale_table(labels),
            state_dir=state_dir_of(labels),
        )
        with self._sessions() as session:
            stored = session.get(Revision, revision.id)
            if stored is not None:
                stored.run_config = run.to_json()
                session.add(stored)
                session.commit()
        return run

    def _store(self, deployment_id: str, state: ScalerState, desired: int) -> None:
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                return
            deployment.scaler_state = state.to_json()
            deployment.desired_replicas = desired
            session.add(deployment)
            session.commit()

    def _record(self, deployment_id: str, reason: Reason, now: datetime) -> None:
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                return
            state = ScalerState.from_json(deployment.scaler_state)
            actual = ready_count(session, deployment.live_revision_id)
            at = self._wall()
            decision = Decision(
                at=at,
                stable_concurrency=0.0,
                panic_concurrency=0.0,
                desired=deployment.desired_replicas,
                actual=actual,
                reason=reason,
            )
            deployment.scaler_state = record(state, decision).to_json()
            session.add(deployment)
            session.commit()


def _disagreeing(
    containers: dict[str, tuple[str, ...]], statuses: dict[str, ReplicaStatus]
) -> set[str]:
    """Deployments with a replica recorded as running whose container the runtime does not
    run (or no longer has)."""
    return {
        deployment_id
        for deployment_id, names in containers.items()
        if any(name not in statuses or not statuses[name].running for name in names)
    }


STALE_START = timedelta(minutes=5)
"""A replica still `starting` after this long lost its starter (a worker died mid-start)."""


def _stale(replica: Replica, now: datetime) -> bool:
    return now - replica.started_at > STALE_START


def _idle(before: ScalerState, sample: Sample | None, decision: Decision, desired: int) -> bool:
    """Nothing worth a write: no load now or in the remembered samples, and the same count as
    the last steady decision (most deployments, most ticks; each write is a control-plane
    transaction the webhook receiver would wait behind on SQLite)."""
    return (
        sample is not None
        and sample.concurrency == 0
        and not (sample.queue and sample.queue.total)
        and all(s.concurrency == 0 and not (s.queue and s.queue.total) for s in before.samples)
        and decision.desired == desired
        and before.latest is not None
        and before.latest.reason == decision.reason
        and before.latest.desired == decision.desired
        and before.latest.actual == decision.actual
    )
