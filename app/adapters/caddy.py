"""The router: Caddy, configured through its admin API, so no request passes through Python.

Slipway owns Caddy's whole configuration. Every change renders it from the control-plane
database and loads it in one `POST /load`, which Caddy applies gracefully; the same rendering
is Caddy's boot config, so routes come back when either Slipway or Caddy restarts.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.adapters.caddy_admin import (
    UNIX_SCHEME,
    AdminReadError,
    admin_base,
    admin_client,
    admin_get_over_socket,
    admin_listen,
)
from app.kernel.addresses import Route
from app.kernel.errors import RouterError

SERVER_NAME = "slipway"
ADMIN_TIMEOUT_SECONDS = 10.0
UPSTREAMS_PATH = "/reverse_proxy/upstreams"
METRICS_PATH = "/metrics"
READS_KEPT = 64
"""Reads before loads kept for the metrics sampler (one per load; it takes them every 10 s)."""
ADMIN_ATTEMPTS = 3
ADMIN_RETRY_SECONDS = 0.05
"""A connection to the admin API reset or refused is tried again after this: Caddy stops its
previous admin server after each load, and resets a connection it accepted meanwhile (seen on
back-to-back loads). A load repeated after Caddy applied it changes nothing."""
TRY_DURATION = "5s"
"""A request whose replica refuses the connection (it just died) is tried on another one for
this long, so a dead replica costs no request while another is up."""
TRY_INTERVAL = "10ms"
"""The pause before a failed request is tried again. The dead replica is out of the selection
after its first refused dial (the passive check below), so the next try goes to another one:
the pause only delays it. And a request pausing when the route is loaded again (the
reconciler takes the dead replica out within ~50 ms of its death) is answered 502 with the
refused dial, as Caddy stops the old handler's tries: at 100 ms five requests of a killed
replica's load met that (tests/e2e/test_replicas.py). With no replica left, a waiting request
looks again a hundred times a second, a few microseconds each."""
FAIL_DURATION = "5s"
"""After a failed dial a replica gets no requests for this long (Caddy's passive health
check): the reconciler takes a dead one out of the route within a tick anyway."""
NOT_FOUND_BODY = "Slipway: no deployment is served at this address.\n"
NO_REPLICA_BODY = (
    "Slipway: this deployment has no running replica at the moment; a new one is starting.\n"
)


REDIRECT_SERVER_NAME = "slipway-redirect"
REDIRECT_STATUS = 308
"""Permanent, and keeps the method and body (301 lets clients turn a POST into a GET)."""


@dataclass(frozen=True)
class WildcardCertificate:
    """One certificate for every name under the base domain, through the DNS-01 challenge
    (the only one a CA accepts for a wildcard): the router obtains it at start and renews it,
    and a new deployment's first request waits for no order."""

    subjects: tuple[str, ...]
    """`*.BASE_DOMAIN`, and BASE_DOMAIN itself when the router serves it."""
    provider: str
    """The Caddy DNS provider module (dns.providers.<provider>)."""
    options: dict[str, Any] = field(repr=False, compare=False)
    """The module's options: its API credentials, a secret, so no repr shows them."""


@dataclass(frozen=True)
class AutomaticHttps:
    """The router terminates TLS with certificates it obtains from an ACME CA, on demand.

    A certificate is requested at the first TLS handshake for a name, and only once Slipway's
    permission endpoint says the name is routed: nobody can make the router order
    certificates (and use up the CA's rate limits) for arbitrary names pointed at it.
    """

    email: str
    ca: str
    """The ACME directory URL."""
    ca_root: Path | None
    """PEM roots to trust when talking to the CA (a private or test CA)."""
    http_listen: str
    """host:port of the plain-HTTP server: redirects, and the CA's HTTP-01 challenges."""
    http_port: int
    https_port: int
    permission_url: str
    """Slipway's answer to "may the router get a certificate for this name?" (200 or 404);
    Caddy appends `?domain=<name>`."""
    platform_host: str | None = None
    """PUBLIC_URL's host when it is https: the router serves Slipway's own API there."""
    platform_upstream: str | None = None
    """host:port of Slipway's API, for platform_host."""
    wildcard: WildcardCertificate | None = None
    """Names it covers are served with it and never asked about or ordered on demand."""


def route_hosts(hostname: str, listen: str) -> list[str]:
    """What a route matches: its hostname, and the same with the router's port, which clients
    send in Host when it is not 80. Both match alike; naming the second makes Caddy's per-host
    metrics count it under its own name instead of `_other`, where requests to hosts it has no
    route for go (so a hostile Host header cannot grow the metrics)."""
    port = listen.rsplit(":", 1)[-1]
    return [hostname, f"{hostname}:{port}"] if port.isdigit() else [hostname]


def render_caddy_config(
    routes: list[Route],
    *,
    listen: str,
    admin_listen: str,
    storage_dir: Path,
    https: AutomaticHttps | None = None,
    count_per_host: bool = True,
) -> dict[str, Any]:
    """`count_per_host`: Caddy's request counts and latency histogram per host, which the
    metrics sampler reads (off with SLIPWAY_METRICS=false: nothing reads them)."""
    metrics = {"metrics": {"per_host": True}} if count_per_host else {}
    caddy_routes: list[dict[str, Any]] = [
        {
            "@id": f"route-{route.deployment_id}",
            "match": [{"host": [h for name in route.hostnames for h in route_hosts(name, listen)]}],
            "handle": [_proxy(route.upstreams)],
            "terminal": True,
        }
        for route in sorted(routes, key=lambda r: r.hostname)
        if route.upstreams
    ]
    caddy_routes += [
        {
            "@id": f"route-{route.deployment_id}",
            "match": [{"host": [h for name in route.hostnames for h in route_hosts(name, listen)]}],
            "handle": [
                {
                    "handler": "static_response",
                    "status_code": 503,
                    "headers": {"Retry-After": ["5"]},
                    "body": NO_REPLICA_BODY,
                }
            ],
            "terminal": True,
        }
        for route in sorted(routes, key=lambda r: r.hostname)
        if not route.upstreams
    ]
    if https is not None and https.platform_host and https.platform_upstream:
        caddy_routes.insert(0, _platform_route(https.platform_host, https.platform_upstream))
    caddy_routes.append(_not_found())
    config: dict[str, Any] = {
        "admin": {"listen": admin_listen, "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(storage_dir)},
    }
    if https is None:
        config["apps"] = {
            "http": {
                # Requests, 5xx answers and latency counted per host: read by the metrics
                # sampler and by the idle rules; hosts no route names count as "_other".
                **metrics,
                "servers": {
                    SERVER_NAME: {
                        "listen": [listen],
                        "automatic_https": {"disable": True},
                        # Plain HTTP serves HTTP/1.1 only: with Caddy's default (h1, h2, h3)
                        # every load warned that HTTP/2 and HTTP/3 need TLS.
                        "protocols": ["h1"],
                        "routes": caddy_routes,
                    }
                },
            }
        }
        return config
    hosts = sorted(
        {hostname for route in routes for hostname in route.hostnames}
        | ({https.platform_host} if https.platform_host and https.platform_upstream else set())
    )
    config["apps"] = {
        "http": {
            **metrics,
            "http_port": https.http_port,
            "https_port": https.https_port,
            "servers": {
                SERVER_NAME: {
                    "listen": [listen],
                    # Everything is spelled out below (TLS on this server, the redirects on
                    # the other): Caddy's automatic HTTPS would order certificates for every
                    # routed name at each load instead of at a name's first request.
                    "automatic_https": {"disable": True},
                    "tls_connection_policies": [{}],
                    # HTTP/3 would need UDP on the same port, which the operator did not open.
                    "protocols": ["h1", "h2"],
                    "routes": caddy_routes,
                },
                REDIRECT_SERVER_NAME: {
                    "listen": [https.http_listen],
                    "automatic_https": {"disable": True},
                    "protocols": ["h1"],
                    # Caddy answers the CA's HTTP-01 challenges on every server before these
                    # routes; a name the router does not serve gets the 404, not a redirect.
                    "routes": [
                        *([_redirect(hosts, https.https_port)] if hosts else []),
                        _not_found(),
                    ],
                },
            },
        },
        "tls": _tls_app(https),
    }
    return config


def _proxy(upstreams: tuple[str, ...]) -> dict[str, Any]:
    """To a deployment's replicas. With one replica there is nothing to choose and nowhere
    else to go: no selection policy and no passive health check (a replica restarting at its
    held address is dialled again until it answers, not marked down for FAIL_DURATION).
    Caddy provisions both anew for every route at every load: ~30 % of a load's CPU at 100
    single-replica routes (docs/benchmarks/scale.md)."""
    load_balancing: dict[str, Any] = {"try_duration": TRY_DURATION, "try_interval": TRY_INTERVAL}
    proxy: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": upstream} for upstream in upstreams],
        "load_balancing": load_balancing,
    }
    if len(upstreams) > 1:
        load_balancing["selection_policy"] = {"policy": "least_conn"}
        proxy["health_checks"] = {"passive": {"fail_duration": FAIL_DURATION, "max_fails": 1}}
    return proxy


def _tls_app(https: AutomaticHttps) -> dict[str, Any]:
    """Certificates on demand, after asking Slipway; with a wildcard, its names first.

    Caddy takes the first policy whose subjects match a name (`*.d` matches `x.d`), so a
    deployment's host falls under the wildcard's policy, which is not on demand: its
    handshake is served from the wildcard certificate and never triggers an order. Custom
    domains and other names fall through to the on-demand policy."""
    on_demand_challenges = {
        # The challenges' ports are the router's own servers (which answer them): without
        # these, Caddy's solver would try to listen on 80 and 443 itself.
        "http": {"alternate_port": https.http_port},
        "tls-alpn": {"alternate_port": https.https_port},
    }
    policies: list[dict[str, Any]] = [
        {"on_demand": True, "issuers": [_acme_issuer(https, on_demand_challenges)]}
    ]
    tls: dict[str, Any] = {
        "automation": {
            "policies": policies,
            "on_demand": {"permission": {"module": "http", "endpoint": https.permission_url}},
        }
    }
    wildcard = https.wildcard
    if wildcard is not None:
        provider = {**wildcard.options, "name": wildcard.provider}
        dns = _acme_issuer(https, {"dns": {"provider": provider}})
        policies.insert(0, {"subjects": list(wildcard.subjects), "issuers": [dns]})
        # Managed from the start (obtained, renewed), not at a first handshake.
        tls["certificates"] = {"automate": list(wildcard.subjects)}
    return tls


def _not_found() -> dict[str, Any]:
    return {"handle": [{"handler": "static_response", "status_code": 404, "body": NOT_FOUND_BODY}]}


ACME_CHALLENGE_PATHS = "/.well-known/acme-challenge/*"
"""HTTP-01 challenges: never redirected. Caddy answers the ones it is solving before any route;
any other (one of another instance, or one that came late) gets the 404, not a redirect to a
name that may have no certificate yet."""


def _redirect(hosts: list[str], https_port: int) -> dict[str, Any]:
    port = "" if https_port == 443 else f":{https_port}"
    return {
        "match": [{"host": hosts, "not": [{"path": [ACME_CHALLENGE_PATHS]}]}],
        "handle": [
            {
                "handler": "static_response",
                "status_code": REDIRECT_STATUS,
                "headers": {
                    "Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]
                },
            }
        ],
        "terminal": True,
    }


def _platform_route(host: str, upstream: str) -> dict[str, Any]:
    """Slipway's own API, webhook receiver and setup pages at PUBLIC_URL's host."""
    return {
        "@id": "route-platform",
        "match": [{"host": [host]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}],
        "terminal": True,
    }


def _acme_issuer(https: AutomaticHttps, challenges: dict[str, Any]) -> dict[str, Any]:
    issuer: dict[str, Any] = {
        "module": "acme",
        "ca": https.ca,
        "email": https.email,
        "challenges": challenges,
    }
    if https.ca_root is not None:
        issuer["trusted_roots_pem_files"] = [str(https.ca_root)]
    return issuer


class CaddyRouter:
    def __init__(
        self,
        admin_url: str,
        *,
        listen: str,
        storage_dir: Path,
        https: AutomaticHttps | None = None,
        metrics: bool = True,
    ) -> None:
        """`metrics`: Caddy counts per host, and its counts are read just before each load
        (the sampler's); False with SLIPWAY_METRICS=false."""
        self.admin_url = admin_url.rstrip("/")
        self._metrics = metrics
        self._before_loads: list[str] = []
        self._reads_lock = threading.Lock()
        self._listen = listen
        self._storage_dir = storage_dir
        self._https = https

    @property
    def admin_listen(self) -> str:
        return admin_listen(self.admin_url)

    def render(self, routes: list[Route]) -> dict[str, Any]:
        return render_caddy_config(
            routes,
            listen=self._listen,
            admin_listen=self.admin_listen,
            storage_dir=self._storage_dir,
            https=self._https,
            count_per_host=self._metrics,
        )

    def in_flight(self) -> dict[str, int]:
        """Caddy's `/reverse_proxy/upstreams`: the requests each upstream has now."""
        status, body = self._get(UPSTREAMS_PATH)
        if status != 200:
            raise RouterError(f"the router (Caddy) did not list its upstreams (HTTP {status})")
        try:
            upstreams = json.loads(body) or []
            return {
                str(upstream["address"]): int(upstream.get("num_requests") or 0)
                for upstream in upstreams
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RouterError(
                f"the router (Caddy) listed its upstreams in a form Slipway does not know: {exc}"
            ) from exc

    def metrics_reads(self) -> list[str]:
        """The counts read just before each load since the last call, then now's: Caddy
        starts its counts again at every load, and these keep what each load would drop."""
        with self._reads_lock:
            kept, self._before_loads = self._before_loads, []
        return [*kept, self.metrics_text()]

    def _keep_counts(self) -> None:
        """Best effort: a load is never held up by its metrics."""
        try:
            text = self.metrics_text()
        except RouterError:
            return
        with self._reads_lock:
            self._before_loads = [*self._before_loads[-(READS_KEPT - 1) :], text]

    def metrics_text(self) -> str:
        """Caddy's own Prometheus metrics (its admin `/metrics`), per host."""
        status, body = self._get(METRICS_PATH)
        if status != 200:
            raise RouterError(f"the router (Caddy) did not give its metrics (HTTP {status})")
        return body.decode("utf-8", errors="replace")

    def _get(self, path: str) -> tuple[int, bytes]:
        """A read of the admin API: over Slipway's own Caddy's socket without httpx (read every
        reconciler tick, see `admin_get_over_socket`), over TCP with it."""
        try:
            if self.admin_url.startswith(UNIX_SCHEME):
                return admin_get_over_socket(
                    self.admin_url.removeprefix(UNIX_SCHEME), path, ADMIN_TIMEOUT_SECONDS
                )
            with admin_client(self.admin_url, timeout=ADMIN_TIMEOUT_SECONDS) as client:
                response = client.get(f"{admin_base(self.admin_url)}{path}")
            return response.status_code, response.content
        except (AdminReadError, httpx.HTTPError) as exc:
            raise RouterError(
                f"the router (Caddy) at {self.admin_url} did not answer: {exc}"
            ) from exc

    def apply(self, routes: list[Route]) -> None:
        """The whole config in one `POST /load`. Sending only the route that changed was tried
        and measured: Caddy rebuilds its whole config on any admin change, so one route costs
        it the same CPU as a full load (13 against 12 ms at 100 routes) and more at a few
        routes (an extra read); `bench/router_changes.py` shows it."""
        if self._metrics:
            self._keep_counts()
        for attempt in range(1, ADMIN_ATTEMPTS + 1):
            try:
                # Caddy replaces its admin server on every load: a kept-alive connection would
                # be reset, so each call gets its own. The admin API is local: never a proxy.
                with admin_client(self.admin_url, timeout=ADMIN_TIMEOUT_SECONDS) as client:
                    response = client.post(
                        f"{admin_base(self.admin_url)}/load", json=self.render(routes)
                    )
                break
            except httpx.TimeoutException as exc:
                raise RouterError(
                    f"the router (Caddy) at {self.admin_url} did not answer: {exc}"
                ) from exc
            except httpx.TransportError as exc:
                if attempt == ADMIN_ATTEMPTS:
                    raise RouterError(
                        f"the router (Caddy) at {self.admin_url} did not answer: {exc}"
                    ) from exc
                time.sleep(ADMIN_RETRY_SECONDS)
        if response.status_code != 200:
            raise RouterError(
                f"the router (Caddy) refused the configuration (HTTP {response.status_code}): "
                f"{response.text.strip()[:500]}"
            )
