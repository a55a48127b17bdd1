"""Custom domains as an owner adds them and a visitor's DNS sees them: pending until the name
points here, then routed and certified; one deployment's only; never a preview's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.testing import TestClient

from app.api.domains import DomainController
from app.deployments.domains import Domains, normalize_domain, other_name
from app.deployments.registry import production_deployment
from app.kernel.errors import ConflictError, InvalidRequest, NotFoundError
from app.kernel.models import DomainState, Installation, Repository, RevisionState
from app.kernel.ports import DnsAnswer
from app.kernel.settings import Settings
from app.replicas.routes import CertificatePermission, RouteTable
from tests.unit.world import INSTALLATION, Platform

ELSEWHERE = "203.0.113.9"
HERE = "198.51.100.7"


@dataclass
class FakeResolver:
    """DNS as the test sets it: names → (CNAME target or None, addresses)."""

    records: dict[str, tuple[str | None, set[str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def resolve(self, name: str) -> DnsAnswer:
        self.asked.append(name)
        cname, addresses = self.records.get(name, (None, set()))
        if cname is not None:
            return DnsAnswer(cname, self.resolve(cname).addresses)
        return DnsAnswer(name, frozenset(addresses))


@dataclass
class FakeCertificates:
    held: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def obtain(self, name: str) -> bool:
        self.asked.append(name)
        return name in self.held


@pytest.fixture
def dns() -> FakeResolver:
    return FakeResolver({"web.localhost": (None, {HERE})})


@pytest.fixture
def certificates() -> FakeCertificates:
    return FakeCertificates()


@pytest.fixture
def domains(platform: Platform, dns: FakeResolver, certificates: FakeCertificates) -> Domains:
    return Domains(
        sessions=platform.sessions,
        resolver=dns,
        hostname=platform.config.hostname,
        base_domain="localhost",
        clock=platform.clock,
        certificates=certificates,
        platform_host="slipway.example.com",
    )


@pytest.fixture
def routes(platform: Platform, tmp_path: Path) -> RouteTable:
    return RouteTable(
        platform.sessions, platform.router, platform.config.hostname, tmp_path / "routes.lock"
    )


@pytest.fixture
def web(platform: Platform) -> str:
    """octo/web's production deployment, live: its id."""
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    return platform.deployment().id


def aliases(platform: Platform) -> list[str]:
    assert platform.router.routes is not None
    return [alias for route in platform.router.routes for alias in route.aliases]


def state(domains: Domains, deployment_id: str, name: str) -> tuple[str, str | None]:
    [domain] = [d for d in domains.of(deployment_id) if d.name == name]
    return domain.state, domain.reason


@pytest.mark.parametrize(
    "name",
    [
        "",
        "localhost",
        "com",
        "*.example.com",
        "exa_mple.com",
        "-app.example.com",
        "app.example.123",
        "127.0.0.1",
        "::1",
        "a" * 64 + ".example.com",
        "web.localhost",
        "x.web.localhost",
        "slipway.example.com",
        "app.example.com/path",
        "app example.com",
    ],
)
def test_names_that_are_not_a_domain_or_are_the_platforms_own_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest, match="domain"):
        normalize_domain(name, base_domain="localhost", platform_host="slipway.example.com")


def test_a_name_is_stored_in_lower_case_without_its_trailing_dot() -> None:
    assert (
        normalize_domain(" App.Example.COM. ", base_domain="localhost", platform_host=None)
        == "app.example.com"
    )


def test_a_domain_stays_pending_while_its_dns_points_elsewhere_and_says_what_to_create(
    platform: Platform, domains: Domains, dns: FakeResolver, routes: RouteTable, web: str
) -> None:
    dns.records["app.example.com"] = (None, {ELSEWHERE})
    added = domains.add(web, "App.Example.com")
    assert (added.name, added.state) == ("app.example.com", DomainState.pending_dns)
    [cname, a] = domains.records(added, "web")
    assert (cname.type, cname.name, cname.value) == ("CNAME", "app.example.com", "web.localhost")
    assert (a.type, a.value) == ("A", HERE)

    domains.check(routes.apply)
    current, reason = state(domains, web, "app.example.com")
    assert current == DomainState.pending_dns
    assert reason is not None
    assert ELSEWHERE in reason and "CNAME to web.localhost" in reason and HERE in reason
    assert platform.router.routes is None or "app.example.com" not in aliases(platform)
    permission = CertificatePermission(platform.sessions, "localhost")
    assert not permission.allows("app.example.com")


def test_once_a_cname_points_here_it_is_routed_then_active_with_its_certificate(
    platform: Platform,
    domains: Domains,
    dns: FakeResolver,
    certificates: FakeCertificates,
    routes: RouteTable,
    web: str,
) -> None:
    dns.records["app.example.com"] = (None, {ELSEWHERE})
    domains.add(web, "app.example.com")
    domains.check(routes.apply)
    dns.records["app.example.com"] = ("web.localhost", set())

    domains.check(routes.apply)
    assert state(domains, web, "app.example.com") == (DomainState.issuing, None)
    assert aliases(platform) == ["app.example.com"]
    permission = CertificatePermission(platform.sessions, "localhost")
    assert permission.allows("app.example.com")
    assert certificates.asked == ["app.example.com"]  # the router was asked for it at once

    certificates.held.add("app.example.com")
    domains.check(routes.apply)
    assert state(domains, web, "app.example.com") == (DomainState.active, None)
    assert aliases(platform) == ["app.example.com"]
    asked = len(certificates.asked)
    domains.check(routes.apply)  # an active domain is left alone
    assert len(certificates.asked) == asked


def test_an_apex_pointed_by_address_is_routed_and_shown_address_records_only(
    platform: Platform, domains: Domains, dns: FakeResolver, routes: RouteTable, web: str
) -> None:
    dns.records["example.com"] = (None, {ELSEWHERE})
    added = domains.add(web, "example.com")
    assert [(r.type, r.value) for r in domains.records(added, "web")] == [("A", HERE)]
    dns.records["example.com"] = (None, {HERE})
    domains.check(routes.apply)
    assert state(domains, web, "example.com")[0] == DomainState.issuing
    assert aliases(platform) == ["example.com"]


def test_without_automatic_https_a_domain_is_active_once_it_points_here(
    platform: Platform, dns: FakeResolver, routes: RouteTable, web: str
) -> None:
    plain = Domains(
        sessions=platform.sessions,
        resolver=dns,
        hostname=platform.config.hostname,
        base_domain="localhost",
        clock=platform.clock,
    )
    dns.records["www.example.com"] = ("web.localhost", set())
    plain.add(web, "www.example.com")
    plain.check(routes.apply)
    assert state(plain, web, "www.example.com") == (DomainState.active, None)
    assert aliases(platform) == ["www.example.com"]


def test_no_certificate_within_the_time_allowed_fails_the_domain_with_a_reason(
    platform: Platform, domains: Domains, dns: FakeResolver, routes: RouteTable, web: str
) -> None:
    dns.records["app.example.com"] = ("web.localhost", set())
    domains.add(web, "app.example.com")
    domains.check(routes.apply)
    assert state(domains, web, "app.example.com")[0] == DomainState.issuing
    platform.clock.now += domains.issue_timeout + timedelta(seconds=1)
    domains.check(routes.apply)
    current, reason = state(domains, web, "app.example.com")
    assert current == DomainState.failed
    assert reason is not None and "no certificate" in reason and "80" in reason


def test_a_domain_is_one_deployments_only(
    platform: Platform, domains: Domains, dns: FakeResolver, web: str
) -> None:
    other = _another_deployment(platform)
    domains.add(web, "app.example.com")
    with pytest.raises(ConflictError, match="another deployment"):
        domains.add(other, "APP.example.com.")
    assert domains.add(web, "app.example.com").deployment_id == web  # again: the same one
    assert domains.of(other) == []


def test_a_deleted_deployments_domain_can_be_taken(
    platform: Platform, domains: Domains, web: str
) -> None:
    from app.access.tokens import Caller

    domains.add(web, "app.example.com")
    platform.carry_out(platform.operations.delete(web, "web", Caller("alice", False)).outcome)
    other = _another_deployment(platform)
    assert domains.add(other, "app.example.com").deployment_id == other
    with pytest.raises(NotFoundError):
        domains.of(web)


def test_previews_never_take_a_custom_domain(platform: Platform, domains: Domains) -> None:
    platform.open_pull_request(7)
    preview = platform.preview_deployment(7)
    with pytest.raises(InvalidRequest, match="previews never"):
        domains.add(preview.id, "pr.example.com")


def test_a_removed_domain_is_no_longer_routed_nor_certified(
    platform: Platform, domains: Domains, dns: FakeResolver, routes: RouteTable, web: str
) -> None:
    dns.records["app.example.com"] = ("web.localhost", set())
    domains.add(web, "app.example.com")
    domains.check(routes.apply)
    assert aliases(platform) == ["app.example.com"]
    domains.remove(web, "App.Example.com")
    routes.apply()
    assert aliases(platform) == []
    assert not CertificatePermission(platform.sessions, "localhost").allows("app.example.com")
    with pytest.raises(NotFoundError):
        domains.remove(web, "app.example.com")


def test_a_domain_is_removed_only_through_its_own_deployment(
    platform: Platform, domains: Domains, web: str
) -> None:
    other = _another_deployment(platform)
    domains.add(web, "app.example.com")
    with pytest.raises(NotFoundError):
        domains.remove(other, "app.example.com")
    assert [d.name for d in domains.of(web)] == ["app.example.com"]


def _another_deployment(platform: Platform) -> str:
    """Another repository's production deployment (another tenant)."""
    with platform.sessions() as session:
        if session.get(Installation, INSTALLATION) is None:
            session.add(Installation(id=INSTALLATION, account_login="octo"))
            session.flush()
        repository = Repository(id=9191, installation_id=INSTALLATION, full_name="evil/shop")
        session.add(repository)
        session.commit()
        session.refresh(repository)
        deployment = production_deployment(session, repository, platform.clock())
        session.commit()
        return deployment.id


class _Queue(ArqRedis):
    """The API's queue, as far as adding a domain uses it (a check enqueued); no Valkey."""

    def __init__(self) -> None:  # no connection pool: nothing here connects
        self.jobs: list[str] = []

    def __del__(self, *_: object) -> None:
        pass

    async def enqueue_job(self, function: str, *args: object, **kwargs: object) -> None:
        self.jobs.append(function)


def test_an_apex_added_alone_is_answered_with_a_note_that_its_www_is_a_name_of_its_own(
    platform: Platform, domains: Domains, web: str, tmp_path: Path
) -> None:
    """Issue 23: apex and www handled. They are two names to DNS and the router, and only a
    name added is served: the API's answer (and so the CLI) says so until both are there."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    queue = _Queue()
    api = Litestar(
        route_handlers=[Router(path="/api", route_handlers=[DomainController])],
        dependencies={
            "domains": Provide(lambda: domains, sync_to_thread=False),
            "sessions": Provide(lambda: platform.sessions, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "queue": Provide(lambda: queue, sync_to_thread=False),
        },
    )
    path = f"/api/deployments/{web}/domains"
    with TestClient(app=api) as client:
        apex = client.post(path, json={"domain": "example.com"})
        assert apex.status_code == 201, apex.text
        assert apex.json()["note"] == (
            "www.example.com is a name of its own and is not served: add it too if it should "
            "serve this app (slipway domains add web www.example.com)"
        )
        sub = client.post(path, json={"domain": "app.example.org"}).json()
        assert sub["note"] is None  # not an apex: nothing else is implied
        www = client.post(path, json={"domain": "www.example.com"}).json()
        assert www["note"] is None  # both there now
        listed = {d["domain"]: d["note"] for d in client.get(path).json()}
        assert listed == {"example.com": None, "app.example.org": None, "www.example.com": None}

        assert client.delete(f"{path}/example.com").status_code == 204
        [lone] = [d for d in client.get(path).json() if d["domain"] == "www.example.com"]
        assert lone["note"].startswith("example.com is a name of its own and is not served")
    assert queue.jobs  # each change asked the worker to look now


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("example.com", "www.example.com"),
        ("www.example.com", "example.com"),
        ("app.example.com", None),
        ("www.app.example.com", None),
        ("example.co.uk", None),  # judged by its labels: example.co.uk is not taken as an apex
    ],
)
def test_the_other_name_of_an_apex_is_its_www_and_the_reverse(name: str, other: str | None) -> None:
    assert other_name(name) == other
