"""Automatic HTTPS as settings, router config and the router's question: what is on with
SLIPWAY_ACME_EMAIL, what the router is told, and which names it may get certificates for."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.access.tokens import Caller
from app.adapters.caddy import (
    NOT_FOUND_BODY,
    REDIRECT_SERVER_NAME,
    SERVER_NAME,
    AutomaticHttps,
    render_caddy_config,
)
from app.bootstrap import ASK_PATH, automatic_https, pipeline_config, router_listen
from app.kernel.addresses import Route
from app.kernel.models import RevisionState
from app.kernel.settings import LETS_ENCRYPT_DIRECTORY, SettingsError, load_settings
from app.replicas.routes import CertificatePermission
from tests.unit.world import Platform

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SHOP = Route("shop.apps.example.com", "dep_shop", ("10.0.0.2:8000",))
HTTPS = AutomaticHttps(
    email="ops@example.com",
    ca="https://ca.example/dir",
    ca_root=Path("/data/ca.pem"),
    http_listen="0.0.0.0:80",
    http_port=80,
    https_port=443,
    permission_url="http://127.0.0.1:8080/router/ask",
    platform_host="slipway.example.com",
    platform_upstream="127.0.0.1:8080",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No SLIPWAY_ variable but the test's, in an empty directory (so no .env is read)."""
    for name in list(os.environ):
        if name.upper().startswith("SLIPWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def render(routes: list[Route], https: AutomaticHttps | None = HTTPS) -> dict[str, Any]:
    return render_caddy_config(
        routes,
        listen="0.0.0.0:443",
        admin_listen="unix//data/admin.sock",
        storage_dir=Path("/data/caddy/storage"),
        https=https,
    )


# -- settings ---------------------------------------------------------------------------------
def test_without_an_acme_email_everything_is_plain_http_as_before(
    env: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert not settings.https
    assert automatic_https(settings) is None
    assert router_listen(settings) == "127.0.0.1:8000"
    assert settings.deployment_url("shop") == "http://shop.localhost:8000/"
    assert pipeline_config(settings).url("shop") == "http://shop.localhost:8000/"


def test_an_acme_email_turns_https_on_with_the_standard_ports_left_out_of_urls(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SLIPWAY_ACME_EMAIL", "ops@example.com")
    env.setenv("SLIPWAY_BASE_DOMAIN", "apps.example.com")
    env.setenv("SLIPWAY_ROUTER_HOST", "0.0.0.0")  # noqa: S104 (a setting's value)
    env.setenv("SLIPWAY_PUBLIC_URL", "https://slipway.example.com")
    settings = load_settings()
    assert settings.https
    assert str(settings.acme_ca) == LETS_ENCRYPT_DIRECTORY
    assert router_listen(settings) == "0.0.0.0:443"
    url = "https://shop.apps.example.com/"
    assert settings.deployment_url("shop") == url
    assert pipeline_config(settings).url("shop") == url
    https = automatic_https(settings)
    assert https is not None
    assert (https.http_listen, https.http_port, https.https_port) == ("0.0.0.0:80", 80, 443)
    assert https.permission_url == f"http://127.0.0.1:8080{ASK_PATH}"
    assert (https.platform_host, https.platform_upstream) == (
        "slipway.example.com",
        "127.0.0.1:8080",
    )


def test_other_https_ports_appear_in_urls_and_the_router_ports_follow_the_settings(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "root.pem"
    root.write_text(PEM)
    env.setenv("SLIPWAY_ACME_EMAIL", "ops@example.com")
    env.setenv("SLIPWAY_ACME_CA", "https://127.0.0.1:14000/dir")
    env.setenv("SLIPWAY_ACME_CA_ROOT", str(root))
    env.setenv("SLIPWAY_ROUTER_HTTP_PORT", "8080")
    env.setenv("SLIPWAY_ROUTER_HTTPS_PORT", "8443")
    env.setenv("SLIPWAY_PORT", "9000")
    settings = load_settings()
    assert settings.deployment_url("shop") == "https://shop.localhost:8443/"
    https = automatic_https(settings)
    assert https is not None
    assert (https.ca, https.ca_root) == ("https://127.0.0.1:14000/dir", root)
    assert (https.http_port, https.https_port) == (8080, 8443)
    # PUBLIC_URL is plain http (the default): the API is not put behind the router.
    assert https.platform_host is None and https.platform_upstream is None


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SLIPWAY_ACME_EMAIL", "not-an-address", "SLIPWAY_ACME_EMAIL"),
        ("SLIPWAY_ACME_CA_ROOT", "/nonexistent/root.pem", "SLIPWAY_ACME_CA_ROOT"),
        ("SLIPWAY_ROUTER_HTTP_PORT", "443", "SLIPWAY_ROUTER_HTTPS_PORT"),
    ],
)
def test_bad_acme_settings_stop_the_start_naming_the_variable(
    env: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    env.setenv("SLIPWAY_ACME_EMAIL", "ops@example.com")
    env.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert named in str(caught.value)


def test_a_ca_root_that_is_no_certificate_is_refused(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "root.pem"
    root.write_text("-----BEGIN PRIVATE KEY-----\n")
    env.setenv("SLIPWAY_ACME_CA_ROOT", str(root))
    with pytest.raises(SettingsError, match="no PEM certificate"):
        load_settings()


# -- the router's config ----------------------------------------------------------------------
def test_the_router_serves_tls_with_certificates_obtained_on_demand_after_asking() -> None:
    config = render([SHOP])
    server = config["apps"]["http"]["servers"][SERVER_NAME]
    assert server["listen"] == ["0.0.0.0:443"]
    assert server["tls_connection_policies"] == [{}]
    assert server["automatic_https"] == {"disable": True}  # no eager orders at each load
    automation = config["apps"]["tls"]["automation"]
    [policy] = automation["policies"]
    assert policy["on_demand"] is True
    [issuer] = policy["issuers"]
    assert issuer["module"] == "acme"
    assert (issuer["ca"], issuer["email"]) == ("https://ca.example/dir", "ops@example.com")
    assert issuer["trusted_roots_pem_files"] == ["/data/ca.pem"]
    assert issuer["challenges"] == {
        "http": {"alternate_port": 80},
        "tls-alpn": {"alternate_port": 443},
    }
    assert automation["on_demand"]["permission"] == {
        "module": "http",
        "endpoint": "http://127.0.0.1:8080/router/ask",
    }
    # Certificates and account keys live in the platform's data directory.
    assert config["storage"] == {"module": "file_system", "root": "/data/caddy/storage"}


def test_plain_http_redirects_served_names_only_and_404s_the_rest() -> None:
    config = render([SHOP])
    redirect = config["apps"]["http"]["servers"][REDIRECT_SERVER_NAME]
    assert redirect["listen"] == ["0.0.0.0:80"]
    first, last = redirect["routes"]
    assert first["match"] == [
        {
            "host": ["shop.apps.example.com", "slipway.example.com"],
            # A CA's HTTP-01 challenge is never sent to HTTPS (tests/integration/
            # test_wildcard_policy.py asks a real Caddy).
            "not": [{"path": ["/.well-known/acme-challenge/*"]}],
        }
    ]
    [handler] = first["handle"]
    assert handler["status_code"] == 308
    assert handler["headers"]["Location"] == ["https://{http.request.host}{http.request.uri}"]
    assert last["handle"][0]["body"] == NOT_FOUND_BODY

    other_port = render([SHOP], replace(HTTPS, https_port=8443))
    redirect = other_port["apps"]["http"]["servers"][REDIRECT_SERVER_NAME]
    location = redirect["routes"][0]["handle"][0]["headers"]["Location"]
    assert location == ["https://{http.request.host}:8443{http.request.uri}"]


def test_with_no_route_and_no_public_host_http_only_answers_404() -> None:
    bare = replace(HTTPS, platform_host=None, platform_upstream=None)
    redirect = render([], bare)["apps"]["http"]["servers"][REDIRECT_SERVER_NAME]
    assert [route["handle"][0]["status_code"] for route in redirect["routes"]] == [404]


def test_slipways_own_api_is_routed_at_the_public_host_first() -> None:
    routes = render([SHOP])["apps"]["http"]["servers"][SERVER_NAME]["routes"]
    assert routes[0]["match"] == [{"host": ["slipway.example.com"]}]
    assert routes[0]["handle"] == [
        {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:8080"}]}
    ]


def test_without_https_the_config_is_todays() -> None:
    config = render([SHOP], None)
    assert "tls" not in config["apps"]
    [only] = config["apps"]["http"]["servers"].values()
    assert only["automatic_https"] == {"disable": True} and only["protocols"] == ["h1"]


# -- which names may get a certificate --------------------------------------------------------
def test_only_a_live_deployments_name_and_the_platforms_own_may_get_a_certificate(
    platform: Platform,
) -> None:
    permission = CertificatePermission(platform.sessions, "localhost", "slipway.example.com")
    assert not permission.allows("web.localhost")  # not live yet
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    assert permission.allows("web.localhost")
    assert permission.allows("WEB.localhost.")
    assert permission.allows("slipway.example.com")
    for name in (
        "other.localhost",
        "localhost",
        ".localhost",
        "web.localhost.evil.com",
        "a.web.localhost",
        "web.example.com",
        "",
    ):
        assert not permission.allows(name), name
    deployment = platform.deployment()
    platform.carry_out(
        platform.operations.delete(deployment.id, "web", Caller("alice", False)).outcome
    )
    assert not permission.allows("web.localhost")
