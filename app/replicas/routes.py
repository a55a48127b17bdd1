"""Routes as the control plane knows them: each deployment's hostname → its ready replicas.

Written by one writer at a time on every host: a Postgres advisory lock when the control plane
is Postgres (workers on several hosts share it), a file lock on SQLite (one host by design).
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlmodel import Session, col, select

from app.kernel.addresses import Route
from app.kernel.db import SessionFactory
from app.kernel.models import Deployment, Domain, DomainState, Replica, ReplicaState

ROUTED_DOMAIN_STATES = (DomainState.issuing.value, DomainState.active.value)
"""A custom domain is routed (and may get a certificate) once its DNS was seen pointing here."""
ROUTES_LOCK_KEY = 0x51175A8
"""Postgres advisory lock id for the route table (next to admission's)."""


class _Router(Protocol):
    def apply(self, routes: list[Route]) -> None: ...


class RouteTable:
    """The router's whole table, rendered from the control plane by one writer at a time.

    Every writer (a revision going live, the reconciler, a teardown, the periodic resync)
    renders the full table from the database under one lock, so no writer undoes another's
    change.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        router: _Router,
        hostname: Callable[[str], str],
        lock_path: Path,
    ) -> None:
        self._sessions = sessions
        self._router = router
        self._hostname = hostname
        self._lock_path = lock_path

    @contextmanager
    def locked(self) -> Iterator[None]:
        engine = self._sessions.engine
        if engine.dialect.name == "postgresql":
            # A session-level lock on a connection of its own: held across the caller's
            # transactions, released even if the caller's session fails.
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ROUTES_LOCK_KEY})
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": ROUTES_LOCK_KEY}
                    )
                    connection.commit()
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def apply(self) -> None:
        with self.locked(), self._sessions() as session:
            self.apply_in(session)

    def apply_in(self, session: Session) -> None:
        """With the lock held: the routes as `session` sees them (its pending changes too, so
        a switch is applied before it is committed, and undone if the router refuses it)."""
        self._router.apply(current_routes(session, self._hostname))


def current_routes(session: Session, hostname: Callable[[str], str]) -> list[Route]:
    """Every live deployment's hostname → the endpoints of its live revision's ready replicas
    (none while all of them are being replaced: the router then says so)."""
    session.flush()
    live = session.exec(
        select(Deployment.id, Deployment.slug).where(col(Deployment.live_revision_id).is_not(None))
    ).all()
    rows = session.exec(
        select(Deployment.id, Replica.endpoint)
        .join(Replica, col(Replica.revision_id) == col(Deployment.live_revision_id))
        .where(Replica.state == ReplicaState.ready, col(Replica.endpoint).is_not(None))
        .order_by(col(Replica.started_at), col(Replica.id))
    ).all()
    endpoints: dict[str, list[str]] = {deployment_id: [] for deployment_id, _ in live}
    for deployment_id, endpoint in rows:
        assert endpoint is not None
        endpoints.setdefault(deployment_id, []).append(endpoint)
    aliases: dict[str, list[str]] = {}
    for deployment_id, name in session.exec(
        select(Domain.deployment_id, Domain.name)
        .where(col(Domain.state).in_(ROUTED_DOMAIN_STATES))
        .order_by(col(Domain.name))
    ).all():
        aliases.setdefault(deployment_id, []).append(name)
    return [
        Route(
            hostname=hostname(slug),
            deployment_id=deployment_id,
            upstreams=tuple(endpoints[deployment_id]),
            aliases=tuple(aliases.get(deployment_id, ())),
        )
        for deployment_id, slug in live
    ]


@dataclass(frozen=True)
class CertificatePermission:
    """Which names the router may obtain a certificate for: the names it routes.

    Asked by the router (Caddy's on-demand TLS) at the first TLS handshake for a name, before
    it orders anything: a name pointed at this machine that Slipway does not serve gets no
    order, so nobody can spend the CA's rate limits (or this machine's storage) on it.
    """

    sessions: SessionFactory
    base_domain: str
    platform_host: str | None = None
    """PUBLIC_URL's host when the router serves Slipway's own API there."""

    def allows(self, name: str) -> bool:
        host = name.strip().rstrip(".").lower()
        if self.platform_host is not None and host == self.platform_host.lower():
            return True
        slug, dot, domain = host.partition(".")
        with self.sessions() as session:
            if dot and domain == self.base_domain and slug:
                live = session.exec(
                    select(Deployment.id).where(
                        Deployment.slug == slug, col(Deployment.live_revision_id).is_not(None)
                    )
                ).first()
                return live is not None
            custom = session.exec(
                select(Domain.name)
                .join(Deployment, col(Deployment.id) == col(Domain.deployment_id))
                .where(
                    Domain.name == host,
                    col(Domain.state).in_(ROUTED_DOMAIN_STATES),
                    col(Deployment.live_revision_id).is_not(None),
                )
            ).first()
        return custom is not None
