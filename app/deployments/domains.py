"""Custom domains: a deployment's own names, beside `<slug>.<BASE_DOMAIN>`.

A domain is one deployment's only, and is routed only once its DNS points at the platform (a
CNAME to the deployment's own host, or the same A/AAAA addresses), as the machine's resolver
sees it: nobody can take traffic for a name they do not control, and a name already pointed
here by someone else cannot be claimed by another tenant first (409). Then, with automatic
HTTPS, its certificate is obtained (`issuing`) before it is `active`. Previews never take one:
their addresses come and go with pull requests.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from app.deployments.registry import get_deployment
from app.kernel.db import SessionFactory
from app.kernel.errors import ConflictError, InvalidRequest, NotFoundError
from app.kernel.models import Deployment, Domain, DomainState
from app.kernel.ports import Certificates, Clock, DnsAnswer, Resolver

log = logging.getLogger(__name__)

LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_NAME_LENGTH = 253
ISSUE_TIMEOUT = timedelta(minutes=10)
"""A domain whose certificate has not come this long after its DNS pointed here is failed (the
CA could not validate it: a CAA record, ports 80/443 closed, a proxy in front)."""


@dataclass(frozen=True)
class DnsRecord:
    type: str
    name: str
    value: str


def normalize_domain(text: str, *, base_domain: str, platform_host: str | None) -> str:
    """The name as stored (lower case, no trailing dot), or InvalidRequest saying what is wrong.

    Names under BASE_DOMAIN are the platform's own (each deployment has one there already), and
    so is PUBLIC_URL's host."""
    name = text.strip().rstrip(".").lower()
    if not name:
        raise InvalidRequest("domain: give a name such as app.example.com")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise InvalidRequest(f"domain: {name} is an address; give a name such as app.example.com")
    labels = name.split(".")
    if (
        len(name) > MAX_NAME_LENGTH
        or len(labels) < 2
        or not all(LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidRequest(
            f"domain: {text.strip()[:100]!r} is not a domain name such as app.example.com "
            "(letters, digits and hyphens, at least two labels; no wildcards)"
        )
    if name == base_domain or name.endswith(f".{base_domain}"):
        raise InvalidRequest(
            f"domain: names under {base_domain} are the platform's own; a deployment is "
            f"already served at <name>.{base_domain}"
        )
    if platform_host is not None and name == platform_host:
        raise InvalidRequest(f"domain: {name} is the platform's own address")
    return name


def is_apex(name: str) -> bool:
    """A registered domain itself (example.com), which DNS does not let have a CNAME. Judged
    by its two labels: a name under a two-label suffix (example.co.uk) is shown both records."""
    return name.count(".") == 1


def other_name(name: str) -> str | None:
    """The name people also type for the same site: an apex's `www.`, a `www.` name's apex."""
    if is_apex(name):
        return f"www.{name}"
    if name.startswith("www.") and is_apex(name.removeprefix("www.")):
        return name.removeprefix("www.")
    return None


def other_name_note(name: str, held: set[str], slug: str) -> str | None:
    """What the owner is told when the apex or its `www.` is added alone: DNS and the router
    know them as two names, and only a name added is served (docs/domains.md)."""
    other = other_name(name)
    if other is None or other in held:
        return None
    return (
        f"{other} is a name of its own and is not served: add it too if it should serve this "
        f"app (slipway domains add {slug} {other})"
    )


@dataclass
class Domains:
    sessions: SessionFactory
    resolver: Resolver
    hostname: Callable[[str], str]
    """A deployment's slug → its own host under BASE_DOMAIN."""
    base_domain: str
    clock: Clock
    certificates: Certificates | None = None
    """The router's certificates, with automatic HTTPS; None: a domain is active once routed."""
    platform_host: str | None = None
    issue_timeout: timedelta = ISSUE_TIMEOUT

    # -- what an owner asks --------------------------------------------------------------
    def add(self, deployment_id: str, text: str) -> Domain:
        name = normalize_domain(
            text, base_domain=self.base_domain, platform_host=self.platform_host
        )
        with self.sessions() as session:
            deployment = _active_deployment(session, deployment_id)
            if deployment.is_preview:
                raise InvalidRequest(
                    "domain: previews never take custom domains (their address lives as long "
                    "as their pull request); add it to the production deployment"
                )
            existing = session.get(Domain, name)
            if existing is not None:
                owner = session.get(Deployment, existing.deployment_id)
                if existing.deployment_id == deployment.id:
                    return existing
                if owner is not None and owner.deleted_at is None:
                    raise ConflictError(
                        f"domain: {name} belongs to another deployment; remove it there first"
                    )
                session.delete(existing)  # its deployment was deleted: the name is free
                session.flush()
            domain = Domain(name=name, deployment_id=deployment.id, created_at=self.clock())
            session.add(domain)
            session.commit()
            session.refresh(domain)
            log.info("domain added", extra={"deployment_id": deployment.id, "domain": name})
            return domain

    def of(self, deployment_id: str) -> list[Domain]:
        with self.sessions() as session:
            deployment = _active_deployment(session, deployment_id)
            return list(
                session.exec(
                    select(Domain)
                    .where(Domain.deployment_id == deployment.id)
                    .order_by(col(Domain.created_at), col(Domain.name))
                ).all()
            )

    def remove(self, deployment_id: str, text: str) -> Domain:
        name = text.strip().rstrip(".").lower()
        with self.sessions() as session:
            deployment = _active_deployment(session, deployment_id)
            domain = session.get(Domain, name)
            if domain is None or domain.deployment_id != deployment.id:
                raise NotFoundError(f"deployment {deployment.slug} has no domain {name}")
            session.delete(domain)
            session.commit()
            log.info("domain removed", extra={"deployment_id": deployment.id, "domain": name})
            return domain

    def records(self, domain: Domain, slug: str) -> list[DnsRecord]:
        """The records that make `domain` point here: a CNAME to the deployment's host, or
        (an apex, which cannot have one) the host's own A/AAAA addresses."""
        host = self.hostname(slug)
        cname = [DnsRecord("CNAME", domain.name, host)]
        addresses = sorted(self.resolver.resolve(host).addresses)
        by_address = [
            DnsRecord("AAAA" if ":" in address else "A", domain.name, address)
            for address in addresses
        ]
        return by_address if is_apex(domain.name) else cname + by_address

    # -- the worker's check --------------------------------------------------------------
    def check(self, apply_routes: Callable[[], None]) -> bool:
        """Move every domain on as far as DNS and the router allow; `apply_routes` loads the
        route table once any domain starts being routed. True when something changed."""
        now = self.clock()
        with self.sessions() as session:
            rows = session.exec(
                select(Domain, Deployment.slug)
                .join(Deployment, col(Deployment.id) == col(Domain.deployment_id))
                .where(
                    col(Deployment.deleted_at).is_(None),
                    col(Domain.state).in_(
                        [DomainState.pending_dns.value, DomainState.issuing.value]
                    ),
                )
            ).all()
            pending = [(d.name, slug) for d, slug in rows if d.state == DomainState.pending_dns]
            issuing = [d.name for d, _ in rows if d.state == DomainState.issuing]
        if not pending and not issuing:
            return False
        verified: list[str] = []
        seen: dict[str, str] = {}
        for name, slug in pending:
            points, what = self._points_here(name, self.hostname(slug))
            if points:
                verified.append(name)
            seen[name] = what
        with self.sessions() as session:
            for name, what in seen.items():
                domain = session.get(Domain, name)
                if domain is None or domain.state != DomainState.pending_dns:
                    continue  # removed, or moved on, meanwhile
                domain.checked_at = now
                if name in verified:
                    domain.verified_at = now
                    domain.reason = None
                    domain.state = (
                        DomainState.issuing.value
                        if self.certificates is not None
                        else DomainState.active.value
                    )
                    if self.certificates is None:
                        domain.active_at = now
                    log.info("domain points here", extra={"domain": name})
                else:
                    domain.reason = what
                session.add(domain)
            session.commit()
        if verified:
            apply_routes()
        changed = bool(verified)
        for name in [*issuing, *(verified if self.certificates is not None else [])]:
            changed |= self._issue(name)
        return changed

    def _points_here(self, name: str, host: str) -> tuple[bool, str]:
        answer = self.resolver.resolve(name)
        if answer.canonical_name == host:
            return True, f"CNAME to {host}"
        target = self.resolver.resolve(host)
        if answer.addresses and target.addresses and answer.addresses <= target.addresses:
            return True, f"resolves to {', '.join(sorted(answer.addresses))}"
        return False, _pending_reason(name, host, answer, target)

    def _issue(self, name: str) -> bool:
        assert self.certificates is not None
        obtained = self.certificates.obtain(name)
        now = self.clock()
        with self.sessions() as session:
            domain = session.get(Domain, name)
            if domain is None or domain.state != DomainState.issuing:
                return False
            domain.checked_at = now
            if obtained:
                domain.state = DomainState.active.value
                domain.active_at = now
                domain.reason = None
                log.info("domain active", extra={"domain": name})
            elif domain.verified_at is not None and now - domain.verified_at > self.issue_timeout:
                domain.state = DomainState.failed.value
                domain.reason = (
                    f"no certificate {int(self.issue_timeout.total_seconds() // 60)} minutes "
                    "after its DNS pointed here: the CA could not validate it (ports 80 and "
                    "443 reachable from the internet? a CAA record that excludes the CA?); "
                    "remove the domain and add it again to retry"
                )
                log.warning("domain failed", extra={"domain": name})
            session.add(domain)
            session.commit()
            return domain.state != DomainState.issuing


def _pending_reason(name: str, host: str, answer: DnsAnswer, target: DnsAnswer) -> str:
    if not answer.addresses:
        seen = "does not resolve"
    elif answer.canonical_name != name:
        seen = f"is a CNAME to {answer.canonical_name}"
    else:
        seen = f"resolves to {', '.join(sorted(answer.addresses))}"
    wanted = f"a CNAME to {host}"
    if target.addresses:
        wanted += f" or A/AAAA records {', '.join(sorted(target.addresses))}"
    return f"{name} {seen}; it needs {wanted}"


def _active_deployment(session: Session, deployment_id: str) -> Deployment:
    deployment = get_deployment(session, deployment_id)
    if deployment.deleted_at is not None:
        raise NotFoundError(f"no deployment with id {deployment_id}")
    return deployment
