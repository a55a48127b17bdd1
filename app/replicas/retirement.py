"""Retirement: when a replica leaves the route, and when it stops. Written once, for everyone.

The rule: a replica whose revision is finished (superseded, failed, cancelled), or whose
deployment was removed, leaves the route (it is `draining` from the next render on); a
draining replica stops once the router has no request in flight for it, or its drain timeout
passed. The revision pipeline applies it right after a route switch, in the switch's own
transaction and then waiting for the old replicas' requests; the reconciler applies it every
tick to whatever is left, without waiting. Replicas the autoscaler lets go drain the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, or_, select

from app.kernel.db import SessionFactory
from app.kernel.models import (
    FINISHED_STATES,
    Deployment,
    Replica,
    ReplicaState,
    Revision,
)
from app.kernel.ports import Clock
from app.replicas.replica_set import Replicas, running_of


def start_draining(replica: Replica, now: datetime) -> None:
    """Out of the route from the next render on; stopped once its requests are done."""
    replica.state = ReplicaState.draining
    replica.draining_since = now


@dataclass(frozen=True)
class Retiring:
    replicas: list[Replica]
    """Every running replica the rule says must go (the ones already draining too)."""
    newly_draining: int
    """How many of them left the route now: the route table changes when this is not 0."""


def retire_finished(session: Session, deployment_id: str, now: datetime) -> Retiring:
    """Apply the rule's first half in `session`: the deployment's replicas that must go and
    still run leave the route. Committed only when one moved, so a caller holding the route
    lock can render the table from the same session first (see RouteTable.apply_in)."""
    deployment = session.get(Deployment, deployment_id)
    removed = deployment is None or deployment.removed_at is not None
    leaving = list(
        session.exec(
            running_of(deployment_id).where(or_(col(Revision.state).in_(FINISHED_STATES), removed))
        ).all()
    )
    moved = 0
    for replica in leaving:
        if replica.state is not ReplicaState.draining:
            start_draining(replica, now)
            session.add(replica)
            moved += 1
    return Retiring(replicas=leaving, newly_draining=moved)


class Retirement:
    """The rule carried out: mark, then stop what is drained (now, or once it is)."""

    def __init__(self, *, sessions: SessionFactory, replicas: Replicas, clock: Clock) -> None:
        self._sessions = sessions
        self._replicas = replicas
        self._clock = clock

    def begin(self, deployment_id: str) -> Retiring:
        """The replicas that must go leave the route (the caller applies the route after)."""
        with self._sessions() as session:
            retiring = retire_finished(session, deployment_id, self._clock())
            if retiring.newly_draining:
                session.commit()
        return retiring

    def stop_drained(self, deployment_id: str) -> None:
        """Stop the deployment's draining replicas whose requests are done; never waits (the
        reconciler looks again next tick)."""
        with self._sessions() as session:
            draining = session.exec(
                select(Replica)
                .join(Revision, col(Revision.id) == col(Replica.revision_id))
                .where(
                    Revision.deployment_id == deployment_id,
                    Replica.state == ReplicaState.draining,
                )
            ).all()
        done = self._replicas.drained(draining, self._clock())
        if done:
            self._replicas.stop([replica.id for replica in done])

    def retire(self, deployment_id: str) -> None:
        """Both halves, waiting (up to the drain timeout) for the leaving replicas' requests:
        what a revision's run does once it is live, so the old revision is gone when it ends."""
        retiring = self.begin(deployment_id)
        self._replicas.drain([replica.id for replica in retiring.replicas])
