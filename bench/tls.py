"""What automatic HTTPS costs at the router: TLS against plain HTTP, and a new host's first request.

Run with `.venv/bin/python -m bench.tls [--requests 2000] [--new-hosts 10]`.

One embedded Caddy with Slipway's HTTPS config (app.adapters.caddy.render_caddy_config with
AutomaticHttps), its certificates from a local Pebble (tests/support/acme.py), routes to one
small backend (a second Caddy answering 200). The same router also serves the same routes on a
plain-HTTP port, so both schemes are measured in one run, in alternating blocks. Measured from
one client on this machine (httpx, one request at a time):

* a request on a kept-alive connection, over HTTP and over HTTPS (TLS's cost per request: the
  encryption);
* a request on a new connection each time (TLS's cost per connection: the handshake, without
  session resumption);
* the first request to a host the router never served, over HTTPS: the ask, the order, Pebble's
  validation of a challenge against the router, the issuance, then the request.

Pebble validates at once (PEBBLE_VA_NOSLEEP) on the same machine: against Let's Encrypt the
first request adds the network's round trips to the CA, typically seconds. No traffic leaves
127.0.0.1.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from app.adapters.caddy import SERVER_NAME, AutomaticHttps, render_caddy_config
from app.kernel.addresses import Route
from app.server.embedded import Caddy, free_port
from tests.support.acme import Pebble

BASE_DOMAIN = "bench.slipway.test"
ROUTES = 10
BLOCKS = 4


def _backend(data: Path, port: int) -> Caddy:
    backend = Caddy(data)
    backend.start(
        {
            "apps": {
                "http": {
                    "servers": {
                        "backend": {
                            "listen": [f"127.0.0.1:{port}"],
                            "automatic_https": {"disable": True},
                            "routes": [
                                {"handle": [{"handler": "static_response", "body": "ok\n"}]}
                            ],
                        }
                    }
                }
            }
        }
    )
    return backend


def _ask_server(allowed: set[str]) -> ThreadingHTTPServer:
    """Slipway's /router/ask, as the router sees it: 200 for a routed name, 404 otherwise."""

    class Ask(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.partition("domain=")[2]
            self.send_response(200 if name in allowed else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ask)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _percentiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per scheme, kept alive")
    parser.add_argument("--connections", type=int, default=400, help="per scheme, new each")
    parser.add_argument("--new-hosts", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slipway-bench-tls-") as tmp:
        work = Path(tmp)
        http_port, https_port, plain_port, backend_port = (free_port() for _ in range(4))
        hosts = [f"app{i}.{BASE_DOMAIN}" for i in range(ROUTES)]
        new_hosts = [f"new{i}.{BASE_DOMAIN}" for i in range(args.new_hosts)]
        routes = [
            Route(host, f"dep_{i}", (f"127.0.0.1:{backend_port}",))
            for i, host in enumerate(hosts + new_hosts)
        ]
        ask = _ask_server(set(hosts + new_hosts))
        pebble = Pebble(work / "pebble", http_port, https_port).start()
        backend = _backend(work / "backend", backend_port)
        router = Caddy(work / "router", threads=1)
        try:
            https = AutomaticHttps(
                email="bench@example.com",
                ca=pebble.directory,
                ca_root=pebble.tls_root,
                http_listen=f"127.0.0.1:{http_port}",
                http_port=http_port,
                https_port=https_port,
                permission_url=f"http://127.0.0.1:{ask.server_port}/router/ask",
            )
            config = render_caddy_config(
                routes,
                listen=f"127.0.0.1:{https_port}",
                admin_listen="",
                storage_dir=work / "router" / "storage",
                https=https,
            )
            # The same routes on plain HTTP, for the comparison in the same router.
            servers = config["apps"]["http"]["servers"]
            # (Without the routes' @ids, which Caddy wants unique in the whole config.)
            servers["plain"] = {
                "listen": [f"127.0.0.1:{plain_port}"],
                "automatic_https": {"disable": True},
                "protocols": ["h1"],
                "routes": [
                    {key: value for key, value in route.items() if key != "@id"}
                    for route in servers[SERVER_NAME]["routes"]
                ],
            }
            router.start(config)
            chain = pebble.issuing_chain()
            context = ssl.create_default_context(cadata=chain)

            def get(client: httpx.Client, host: str, scheme: str) -> float:
                port = https_port if scheme == "https" else plain_port
                extensions = {"sni_hostname": host} if scheme == "https" else {}
                started = time.perf_counter()
                response = client.get(
                    f"{scheme}://127.0.0.1:{port}/",
                    headers={"Host": host},
                    extensions=extensions,
                )
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, (response.status_code, response.text)
                return elapsed

            # The first request to each new host: the certificate is obtained on the way.
            first: list[float] = []
            for host in new_hosts:
                with httpx.Client(verify=context, trust_env=False, timeout=60) as client:
                    first.append(get(client, host, "https"))
            # Warm: every host of the steady-state rounds has its certificate. A client per
            # host: httpx would reuse one connection (and its SNI) for every Host.
            for host in hosts:
                with httpx.Client(verify=context, trust_env=False, timeout=60) as client:
                    get(client, host, "https")
            orders = pebble.order_count()

            kept: dict[str, list[float]] = {"http": [], "https": []}
            fresh: dict[str, list[float]] = {"http": [], "https": []}
            for block in range(BLOCKS):
                for scheme in ("http", "https"):
                    with httpx.Client(verify=context, trust_env=False, timeout=10) as client:
                        for _ in range(args.requests // BLOCKS):
                            kept[scheme].append(get(client, hosts[block % ROUTES], scheme))
                    for i in range(args.connections // BLOCKS):
                        with httpx.Client(verify=context, trust_env=False, timeout=10) as client:
                            fresh[scheme].append(get(client, hosts[i % ROUTES], scheme))

            print(f"router: Caddy, 1 thread, {len(routes)} routes; Pebble on this machine")
            for scheme in ("http", "https"):
                print(f"kept-alive connection, {scheme:<5}  {_percentiles(kept[scheme])}")
            for scheme in ("http", "https"):
                print(f"new connection each,   {scheme:<5}  {_percentiles(fresh[scheme])}")
            print(f"first request, new host, https  {_percentiles(first)}")
            print(
                f"orders Pebble received: {orders} for {len(routes)} hosts, "
                f"{pebble.order_count() - orders} during the steady-state rounds"
            )
        finally:
            router.stop()
            backend.stop()
            pebble.stop()
            ask.shutdown()


if __name__ == "__main__":
    main()
