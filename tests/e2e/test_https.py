"""Automatic HTTPS against a real ACME CA: Debian's Pebble, validating every challenge against
this platform's router, its DNS answering 127.0.0.1 for every name.

A push goes live at https://<slug>.<BASE_DOMAIN>/ with a certificate Pebble issued for that
name; plain HTTP redirects there; GitHub is told the https URL; a name the platform does not
route gets no certificate (the router asks first, and Pebble sees no order); Slipway's own API
is served at PUBLIC_URL's host; a restart reuses the certificate. The router's ports are
unprivileged ones here, which Pebble's validation connects to instead of 80 and 443.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.server.embedded import free_port
from tests.support import acme
from tests.support.apps import static_site
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

BASE_DOMAIN = "apps.slipway.test"
PLATFORM_HOST = "slipway.slipway.test"
CUSTOM = "shop.customer.test"


@dataclass
class SecurePlatform:
    platform: RunningPlatform
    pebble: acme.Pebble
    https_port: int
    http_port: int

    def url(self, slug: str) -> str:
        return f"https://{slug}.{BASE_DOMAIN}:{self.https_port}/"

    def get(self, host: str, path: str = "/") -> acme.TlsAnswer:
        return acme.get_over_tls(host, self.https_port, self.pebble.issuing_chain(), path)


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[SecurePlatform]:
    assert acme.available(), "Pebble is not installed: `make test-tools` installs it"
    http_port, https_port = free_port(), free_port()
    pebble = acme.Pebble(tmp_path_factory.mktemp("pebble"), http_port, https_port).start()
    try:
        running = start_platform(
            tmp_path_factory.mktemp("secure"),
            github,
            router_port=http_port,
            acme_email="ops@example.com",
            acme_ca=pebble.directory,
            acme_ca_root=str(pebble.tls_root),
            router_http_port=str(http_port),
            router_https_port=str(https_port),
            base_domain=BASE_DOMAIN,
            public_url=f"https://{PLATFORM_HOST}:{https_port}",
            # Custom domains are checked against Pebble's DNS, which the test controls.
            dns_resolver=f"127.0.0.1:{pebble.dns_port}",
        )
    except BaseException:
        pebble.stop()
        raise
    yield SecurePlatform(running, pebble, https_port, http_port)
    running.stop_and_clean()
    pebble.stop()


@pytest.fixture(scope="module")
def live(
    secure: SecurePlatform, github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """One deployment, live: its repository's full name, slug and commit."""
    path = tmp_path_factory.mktemp("repos") / "secure-site"
    repo, repository = connect_repository(
        secure.platform, github, path, static_site("served over https")
    )
    response = secure.platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    assert response.status_code == 202, response.text
    deployment, revision = secure.platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    return repository["full_name"], deployment["slug"], repo.head


def test_a_push_goes_live_over_https_with_a_certificate_the_ca_issued_for_its_name(
    secure: SecurePlatform, github: FakeGitHub, live: tuple[str, str, str]
) -> None:
    full_name, slug, sha = live
    host = f"{slug}.{BASE_DOMAIN}"
    orders_before = secure.pebble.order_count()

    # The first request waits for the certificate (ordered, validated, issued), then answers;
    # the certificate verifies against Pebble's chain and names this host alone.
    answer = secure.get(host)
    assert answer.status == 200
    assert answer.body == "served over https\n"
    assert answer.certificate["subjectAltName"] == (("DNS", host),)
    issuer = dict(item[0] for item in answer.certificate["issuer"])
    assert issuer["commonName"].startswith("Pebble Intermediate CA")
    assert secure.pebble.order_count() == orders_before + 1
    assert [host] in secure.pebble.issued_names()

    # Every URL Slipway reports is the https one: the API, the check run, the status.
    url = secure.url(slug)
    deployment = secure.platform.deployment_of(full_name)
    assert deployment["url"] == url
    runs = [run for run in github.check_runs(full_name) if run.head_sha == sha]
    assert runs and url in (runs[-1].output["summary"] or "")
    statuses = [s for d in github.deployments(full_name) if d.sha == sha for s in d.statuses]
    success = next(s for s in statuses if s["state"] == "success")
    assert success["environment_url"] == url

    # A second request reuses the certificate: no new order.
    assert secure.get(host, "/index.html").status == 200
    assert secure.pebble.order_count() == orders_before + 1


def test_plain_http_redirects_to_https_keeping_the_path(
    secure: SecurePlatform, live: tuple[str, str, str]
) -> None:
    _, slug, _ = live
    host = f"{slug}.{BASE_DOMAIN}"
    response = httpx.get(
        f"http://127.0.0.1:{secure.http_port}/some/page?q=1",
        headers={"Host": f"{host}:{secure.http_port}"},
        trust_env=False,
        timeout=10,
    )
    assert response.status_code == 308
    assert response.headers["location"] == f"https://{host}:{secure.https_port}/some/page?q=1"
    # A name the platform does not serve is not redirected anywhere.
    stranger = httpx.get(
        f"http://127.0.0.1:{secure.http_port}/",
        headers={"Host": f"nobody.{BASE_DOMAIN}"},
        trust_env=False,
        timeout=10,
    )
    assert stranger.status_code == 404


def test_a_name_the_platform_does_not_route_gets_no_certificate(
    secure: SecurePlatform, live: tuple[str, str, str]
) -> None:
    orders_before = secure.pebble.order_count()
    for name in (f"nobody.{BASE_DOMAIN}", "attacker.example.com", BASE_DOMAIN):
        ask = secure.platform.client.get(
            f"{secure.platform.api_url}/router/ask", params={"domain": name}, timeout=10
        )
        assert ask.status_code == 404, name
        failure = acme.handshake_fails(name, secure.https_port, secure.pebble.issuing_chain())
        assert failure is not None, f"{name} got a certificate"
    assert secure.pebble.order_count() == orders_before
    issued = {name for names in secure.pebble.issued_names() for name in names}
    assert not issued & {f"nobody.{BASE_DOMAIN}", "attacker.example.com", BASE_DOMAIN}
    # The routed name is allowed, so the check above can fail.
    _, slug, _ = live
    allowed = secure.platform.client.get(
        f"{secure.platform.api_url}/router/ask",
        params={"domain": f"{slug}.{BASE_DOMAIN}"},
        timeout=10,
    )
    assert allowed.status_code == 200


def test_slipways_own_api_is_served_at_public_urls_host_over_https(
    secure: SecurePlatform,
) -> None:
    answer = secure.get(PLATFORM_HOST, "/healthz")
    assert answer.status == 200 and '"ok"' in answer.body
    assert answer.certificate["subjectAltName"] == (("DNS", PLATFORM_HOST),)


def test_a_custom_domain_is_served_over_https_once_its_dns_points_here(
    secure: SecurePlatform,
    github: FakeGitHub,
    live: tuple[str, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    full_name, slug, _ = live
    platform = secure.platform
    deployment_id = platform.deployment_of(full_name)["id"]
    domains = f"/api/deployments/{deployment_id}/domains"
    secure.pebble.point(CUSTOM, "10.9.9.9")  # the owner's record still points elsewhere

    added = platform.call("POST", domains, json={"domain": CUSTOM.upper()})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["domain"], body["state"]) == (CUSTOM, "pending-dns")
    assert {"type": "CNAME", "name": CUSTOM, "value": f"{slug}.{BASE_DOMAIN}"} in body["records"]
    assert body["url"] == f"https://{CUSTOM}:{secure.https_port}/"

    def checked() -> dict[str, Any] | None:
        [domain] = platform.api(domains)
        return dict(domain) if domain["reason"] else None

    pending = wait_for("the worker to check the domain's DNS", checked, 60)
    assert pending["state"] == "pending-dns"
    assert "10.9.9.9" in pending["reason"] and f"{slug}.{BASE_DOMAIN}" in pending["reason"]
    ask = platform.client.get(f"{platform.api_url}/router/ask", params={"domain": CUSTOM})
    assert ask.status_code == 404
    assert acme.handshake_fails(CUSTOM, secure.https_port, secure.pebble.issuing_chain())

    # The owner points it here: routed, certified, active.
    secure.pebble.unpoint(CUSTOM)

    def active() -> dict[str, Any] | None:
        [domain] = platform.api(domains)
        return dict(domain) if domain["state"] == "active" else None

    assert wait_for("the domain to be active", active, 120)["records"] == []
    answer = secure.get(CUSTOM)
    assert answer.status == 200 and answer.body == "served over https\n"
    assert answer.certificate["subjectAltName"] == (("DNS", CUSTOM),)

    # Another deployment cannot take it.
    path = tmp_path_factory.mktemp("repos") / "other-site"
    repo, repository = connect_repository(platform, github, path, static_site("other"))
    assert platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head).status_code == 202
    other = platform.deployment_of(repository["full_name"])["id"]
    taken = platform.call("POST", f"/api/deployments/{other}/domains", json={"domain": CUSTOM})
    assert taken.status_code == 409, taken.text

    # Removed: the router no longer serves it.
    assert platform.call("DELETE", f"{domains}/{CUSTOM}").status_code == 204
    assert platform.api(domains) == []

    def unrouted() -> bool:
        response = httpx.get(
            f"http://127.0.0.1:{secure.http_port}/",
            headers={"Host": CUSTOM},
            trust_env=False,
            timeout=10,
        )
        return response.status_code == 404

    wait_for("the router to drop the domain", unrouted, 60)
    ask = platform.client.get(f"{platform.api_url}/router/ask", params={"domain": CUSTOM})
    assert ask.status_code == 404


def test_certificates_and_account_keys_are_private_and_survive_a_restart(
    secure: SecurePlatform, live: tuple[str, str, str]
) -> None:
    _, slug, _ = live
    host = f"{slug}.{BASE_DOMAIN}"
    assert secure.get(host).status == 200  # issued (or already held)
    storage = secure.platform.data_dir / "caddy" / "storage"
    keys = [path for path in storage.rglob("*.key") if path.is_file()]
    assert any(host in str(path) for path in keys), sorted(map(str, keys))
    assert any("acme" in str(path) and "users" in str(path) for path in keys)
    for path in [storage, storage.parent, *storage.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {path.stat().st_mode & 0o777:o}"

    orders_before = secure.pebble.order_count()
    secure.platform.restart()
    answer = wait_for("the router to serve again", lambda: _answers(secure, host), 60)
    assert answer.body == "served over https\n"
    assert secure.pebble.order_count() == orders_before


def _answers(secure: SecurePlatform, host: str) -> acme.TlsAnswer | None:
    try:
        answer = secure.get(host)
    except OSError:
        return None
    return answer if answer.status == 200 else None
