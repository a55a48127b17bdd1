"""Routes as the control plane knows them: each deployment's hostname → its live replicas."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from sqlmodel import Session, col, select

from app.db import SessionFactory
from app.models import Deployment, Replica
from app.router import Route

LOCALHOST = "127.0.0.1"


class _Router(Protocol):
    def apply(self, routes: list[Route]) -> None: ...


class RouteTable:
    """The router's whole table, rendered from the control plane by one writer at a time.

    Every writer (a revision going live, a teardown, the periodic resync) renders the full
    table from the database under one lock, so no writer undoes another's change.
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
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def apply(self) -> None:
        with self.locked(), self._sessions() as session:
            self.apply_in(session)

    def apply_in(
        self, session: Session, override: dict[str, tuple[str, tuple[int, ...]]] | None = None
    ) -> None:
        """With the lock held: the database's routes, plus `override` for one going live."""
        self._router.apply(current_routes(session, self._hostname, override))


def current_routes(
    session: Session,
    hostname: Callable[[str], str],
    override: dict[str, tuple[str, tuple[int, ...]]] | None = None,
) -> list[Route]:
    """Routes from the database; `override` maps deployment id → (slug, host ports) going live."""
    override = override or {}
    routes: list[Route] = []
    deployments = session.exec(
        select(Deployment).where(col(Deployment.live_revision_id).is_not(None))
    ).all()
    for deployment in deployments:
        if deployment.id in override:
            continue
        ports = session.exec(
            select(Replica.host_port).where(
                Replica.revision_id == deployment.live_revision_id,
                col(Replica.stopped_at).is_(None),
                col(Replica.host_port).is_not(None),
            )
        ).all()
        routes.append(_route(deployment.id, hostname(deployment.slug), ports))
    for deployment_id, (slug, ports) in override.items():
        routes.append(_route(deployment_id, hostname(slug), ports))
    return routes


def _route(deployment_id: str, hostname: str, ports: object) -> Route:
    assert isinstance(ports, list | tuple)
    return Route(
        hostname=hostname,
        deployment_id=deployment_id,
        upstreams=tuple(f"{LOCALHOST}:{port}" for port in ports if port is not None),
    )
