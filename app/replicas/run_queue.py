"""The run queues of LangGraph deployments, read for the autoscaler and the metrics.

A graph run in the background (`runs.create`, a cron) holds no request while it works, so the
router sees nothing of it; its deployment's database does. Each reconciler tick reads the queue
of every production LangGraph deployment on the `pg` runtime that has a ready replica: one small
query each over a connection kept open (app/adapters/run_queue.py), nothing for any other
deployment. A read that fails is logged with the deployment's id and not tried again for
RETRY_SECONDS, so a broken database costs a tick at most its statement timeout once in a while
and the autoscaler goes by requests alone meanwhile; no failure reaches another deployment.

What was read last is kept in memory for the metrics sampler (same worker), which so costs no
query of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlmodel import col, select

from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import Database, Revision
from app.kernel.ports import DatabaseLogin, RunQueueReader
from app.replicas.autoscaler import JOBS_PER_WORKER_ENV, RunQueue
from manifests.run import RunConfig

log = logging.getLogger(__name__)

QUEUED_RUNTIME = "pg"
"""The LangGraph runtime whose runs are in the deployment's database (production's always)."""
RETRY_SECONDS = 30.0
FRESH_SECONDS = 30.0
"""A reading older than this is not reported to the metrics (the deployment went quiet)."""


@dataclass(frozen=True)
class QueueFacts:
    """What a revision says about its queue; revisions never change, so this is kept."""

    queued: bool
    """A LangGraph Server on the `pg` runtime."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Of its env only N_JOBS_PER_WORKER, if set (the rest, secrets among it, is not kept)."""


class RunQueues:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        reader: RunQueueReader | None,
        wall: Callable[[], float] = time.time,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        """`reader` None (no cluster configured, a unit test): no queue is ever read."""
        self._sessions = sessions
        self._secrets = secrets
        self._reader = reader
        self._wall = wall
        self._retry_seconds = retry_seconds
        self._mutex = threading.Lock()
        self._reading = threading.Lock()
        self._facts: dict[str, QueueFacts] = {}
        self._logins: dict[str, DatabaseLogin] = {}
        self._failed_until: dict[str, float] = {}
        self._latest: dict[str, tuple[float, RunQueue]] = {}

    def facts(self, revision_id: str) -> QueueFacts:
        """Whether the revision has a queue to read, and the N_JOBS_PER_WORKER it runs with."""
        with self._mutex:
            known = self._facts.get(revision_id)
        if known is not None:
            return known
        with self._sessions() as session:
            revision = session.get(Revision, revision_id)
        facts = QueueFacts(queued=False)
        if revision is not None and revision.run_config:
            run = RunConfig.from_json(revision.run_config)
            if run.langgraph_runtime == QUEUED_RUNTIME:
                env = self._secrets.decrypt_env(revision.env_encrypted)
                kept = {k: v for k, v in env.items() if k == JOBS_PER_WORKER_ENV}
                facts = QueueFacts(queued=True, env=kept)
        with self._mutex:
            self._facts[revision_id] = facts
        return facts

    def read(self, live: Mapping[str, str]) -> dict[str, RunQueue]:
        """The queues of these deployments (id → live revision id, each with a ready replica)
        that have one; a deployment whose read failed (now or lately) is absent."""
        if self._reader is None:
            return {}
        with self._reading:
            return self._read(self._reader, live)

    def _read(self, reader: RunQueueReader, live: Mapping[str, str]) -> dict[str, RunQueue]:
        queued = {d: r for d, r in live.items() if self.facts(r).queued}
        reader.keep_only(queued)
        revisions = set(live.values())
        with self._mutex:
            self._facts = {r: f for r, f in self._facts.items() if r in revisions}
        logins = self._logins_of(queued)
        now = self._wall()
        read: dict[str, RunQueue] = {}
        for deployment_id in sorted(queued):
            login = logins.get(deployment_id)
            if login is None or self._failed_until.get(deployment_id, 0.0) > now:
                continue
            try:
                pending, running = reader.run_counts(deployment_id, login)
                queue = RunQueue(pending=pending, running=running)
            except Exception as exc:
                self._failed_until[deployment_id] = now + self._retry_seconds
                log.warning(
                    "run queue not read: scaling on requests alone",
                    extra={"deployment_id": deployment_id, "error": str(exc)},
                )
                continue
            self._failed_until.pop(deployment_id, None)
            read[deployment_id] = queue
        with self._mutex:
            self._latest.update({d: (now, q) for d, q in read.items()})
            for gone in [d for d in self._latest if d not in queued]:
                del self._latest[gone]
        return read

    def latest(self) -> dict[str, RunQueue]:
        """The newest reading of each deployment read within FRESH_SECONDS."""
        now = self._wall()
        with self._mutex:
            return {d: q for d, (at, q) in self._latest.items() if now - at <= FRESH_SECONDS}

    def _logins_of(self, deployment_ids: Mapping[str, str]) -> dict[str, DatabaseLogin]:
        """The deployments' own database logins, kept once read (a role's password is never
        changed while its database exists)."""
        missing = [d for d in deployment_ids if d not in self._logins]
        if missing:
            with self._sessions() as session:
                rows = session.exec(
                    select(Database).where(
                        col(Database.deployment_id).in_(missing),
                        col(Database.provisioned_at).is_not(None),
                    )
                ).all()
                for database in rows:
                    self._logins[database.deployment_id] = DatabaseLogin(
                        name=database.name,
                        role=database.role,
                        password=self._secrets.decrypt(database.password_encrypted),
                    )
        for gone in [d for d in self._logins if d not in deployment_ids]:
            del self._logins[gone]
        return {d: self._logins[d] for d in deployment_ids if d in self._logins}
