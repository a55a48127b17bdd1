"""/api/deployments/{id}/domains: a deployment's custom domains (app/deployments/domains.py)."""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from redis.exceptions import RedisError

from app.api.schemas import DnsRecordView, DomainView, NewDomainBody
from app.deployments.domains import Domains, other_name_note
from app.kernel.addresses import site_url
from app.kernel.db import SessionFactory
from app.kernel.models import Deployment, Domain, DomainState
from app.kernel.orders import CHECK_DOMAINS, QUEUE_NAME, SYNC_ROUTES
from app.kernel.settings import Settings

log = logging.getLogger(__name__)


def _view(
    domain: Domain, slug: str, domains: Domains, settings: Settings, held: set[str]
) -> DomainView:
    """`held`: the names the deployment has, to say when the apex or its www is missing."""
    pending = domain.state == DomainState.pending_dns
    records = domains.records(domain, slug) if pending else []
    return DomainView(
        domain=domain.name,
        deployment_id=domain.deployment_id,
        state=domain.state,
        reason=domain.reason,
        records=[DnsRecordView(type=r.type, name=r.name, value=r.value) for r in records],
        url=site_url(domain.name, settings.router_public_port, https=settings.https),
        created_at=domain.created_at,
        checked_at=domain.checked_at,
        active_at=domain.active_at,
        note=other_name_note(domain.name, held, slug),
    )


def _slug(sessions: SessionFactory, deployment_id: str) -> str:
    with sessions() as session:
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None  # the service found it first
        return deployment.slug


async def _soon(queue: ArqRedis, job: str) -> None:
    """A check (or the route table, after a removal) now rather than at the worker's next
    round: the worker does both every few seconds, so a lost enqueue only delays it."""
    try:
        await queue.enqueue_job(job, _job_id=job, _queue_name=QUEUE_NAME)
    except (RedisError, OSError) as exc:
        log.warning("job not enqueued", extra={"job": job, "error": repr(exc)})


class DomainController(Controller):
    path = "/deployments/{deployment_id:str}/domains"

    @get("/", sync_to_thread=True)
    def list_domains(
        self,
        deployment_id: FromPath[str],
        domains: NamedDependency[Domains],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> list[DomainView]:
        found = domains.of(deployment_id)
        slug = _slug(sessions, deployment_id)
        held = {domain.name for domain in found}
        return [_view(domain, slug, domains, settings, held) for domain in found]

    @post("/", status_code=HTTP_201_CREATED)
    async def add_domain(
        self,
        deployment_id: FromPath[str],
        data: JSONBody[NewDomainBody],
        domains: NamedDependency[Domains],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
        queue: NamedDependency[ArqRedis],
    ) -> DomainView:
        domain = await asyncio.to_thread(domains.add, deployment_id, data.domain)
        await _soon(queue, CHECK_DOMAINS)
        slug = await asyncio.to_thread(_slug, sessions, deployment_id)
        held = {d.name for d in await asyncio.to_thread(domains.of, deployment_id)}
        return await asyncio.to_thread(_view, domain, slug, domains, settings, held)

    @delete("/{domain:str}", status_code=HTTP_204_NO_CONTENT)
    async def remove_domain(
        self,
        deployment_id: FromPath[str],
        domain: FromPath[str],
        domains: NamedDependency[Domains],
        queue: NamedDependency[ArqRedis],
    ) -> None:
        await asyncio.to_thread(domains.remove, deployment_id, domain)
        await _soon(queue, SYNC_ROUTES)
