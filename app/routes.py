"""Routes as the control plane knows them: each deployment's hostname → its live replicas."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, col, select

from app.models import Deployment, Replica
from app.router import Route

LOCALHOST = "127.0.0.1"


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
