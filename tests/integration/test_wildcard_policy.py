"""The wildcard certificate's automation policy in a real Caddy: a deployment's host is served
with the one `*.BASE_DOMAIN` certificate and never asked about, a custom domain still gets its
own on demand after Slipway's answer.

No DNS provider is reachable here and the stock Caddy has no provider module, so the
rendered config's DNS-01 issuer is swapped for Caddy's local CA (`internal`) in both policies:
what is shown is which policy, and so which certificate, each name gets. Talks to 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509

from app.adapters.caddy import AutomaticHttps, WildcardCertificate, render_caddy_config
from app.kernel.addresses import Route
from app.server.embedded import Caddy, free_port

pytestmark = pytest.mark.timeout(120)

BASE = "apps.test"
HANDSHAKE_DEADLINE_SECONDS = 30.0


class AskServer(ThreadingHTTPServer):
    """Slipway's `ask` endpoint as the router sees it: records each name, allows all."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), AskHandler)
        self.asked: list[str] = []


class AskHandler(BaseHTTPRequestHandler):
    server: AskServer

    def do_GET(self) -> None:
        self.server.asked.extend(parse_qs(urlsplit(self.path).query).get("domain", []))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ask() -> Iterator[AskServer]:
    server = AskServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def config_with_local_ca(https_port: int, http_port: int, ask_url: str) -> dict[str, Any]:
    wildcard = WildcardCertificate((f"*.{BASE}",), "cloudflare", {"api_token": "unused"})
    https = AutomaticHttps(
        email="ops@example.com",
        ca="https://ca.invalid/directory",
        ca_root=None,
        http_listen=f"127.0.0.1:{http_port}",
        http_port=http_port,
        https_port=https_port,
        permission_url=ask_url,
        wildcard=wildcard,
    )
    config = render_caddy_config(
        [Route(f"shop.{BASE}", "dep_shop", ("127.0.0.1:9",))],
        listen=f"127.0.0.1:{https_port}",
        admin_listen="unix//unused.sock",  # Caddy.start puts its own
        storage_dir=Path("/unused"),
        https=https,
    )
    for policy in config["apps"]["tls"]["automation"]["policies"]:
        assert policy["issuers"][0]["module"] == "acme"
        policy["issuers"] = [{"module": "internal"}]
    # The local CA's root stays out of the machine's trust store.
    config["apps"]["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    return config


def served_names(port: int, server_name: str) -> set[str]:
    """The DNS names of the certificate the router presents for `server_name`, once it has
    one (polled: the wildcard is obtained at start, in the background)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the local CA: which certificate, not whose
    deadline = time.monotonic() + HANDSHAKE_DEADLINE_SECONDS
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
            assert der is not None
            names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            )
            return set(names.value.get_values_for_type(x509.DNSName))
        except (ssl.SSLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_deployment_hosts_share_the_wildcard_and_custom_domains_are_asked(
    tmp_path: Path, ask: AskServer
) -> None:
    https_port, http_port = free_port(), free_port()
    ask_url = f"http://127.0.0.1:{ask.server_address[1]}/router/ask"
    caddy = Caddy(tmp_path / "caddy")
    try:
        caddy.start(config_with_local_ca(https_port, http_port, ask_url))
        # The boot config (which holds the provider's token in production) is private.
        assert caddy.boot_path.stat().st_mode & 0o077 == 0
        assert served_names(https_port, f"shop.{BASE}") == {f"*.{BASE}"}
        assert served_names(https_port, f"new-preview.{BASE}") == {f"*.{BASE}"}
        assert ask.asked == []  # nothing under the base domain is asked about or ordered

        assert served_names(https_port, "app.example.net") == {"app.example.net"}
        assert ask.asked == ["app.example.net"]

        # Plain HTTP: a served name goes to HTTPS, but never an ACME HTTP-01 challenge.
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", trust_env=False) as plain:
            page = plain.get("/page?x=1", headers={"Host": f"shop.{BASE}"})
            challenge = plain.get(
                "/.well-known/acme-challenge/some-token", headers={"Host": f"shop.{BASE}"}
            )
        assert page.status_code == 308
        assert page.headers["location"] == f"https://shop.{BASE}:{https_port}/page?x=1"
        assert challenge.status_code == 404 and "location" not in challenge.headers
    finally:
        caddy.stop()
