"""The Caddy configuration Slipway renders: one route per live deployment, 404 for the rest."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.adapters.caddy import (
    NO_REPLICA_BODY,
    NOT_FOUND_BODY,
    CaddyRouter,
    render_caddy_config,
)
from app.kernel.addresses import Route
from app.kernel.errors import RouterError

LISTEN = "127.0.0.1:8000"
ADMIN = "127.0.0.1:2019"

SHOP = Route("shop.localhost", "dep_shop", ("127.0.0.1:40001", "127.0.0.1:40002"))
API = Route("api.localhost", "dep_api", ("127.0.0.1:40003",))
DOWN = Route("down.localhost", "dep_down", ())


def render(routes: list[Route], storage: Path = Path("/data/caddy")) -> dict[str, Any]:
    return render_caddy_config(routes, listen=LISTEN, admin_listen=ADMIN, storage_dir=storage)


def server(config: dict[str, Any]) -> dict[str, Any]:
    servers = config["apps"]["http"]["servers"]
    assert len(servers) == 1
    [only] = servers.values()
    assert isinstance(only, dict)
    return only


def test_each_deployment_gets_a_host_route_to_its_replicas() -> None:
    routes = server(render([SHOP, API]))["routes"]

    assert [(r["@id"], r["match"], r["terminal"]) for r in routes[:2]] == [
        # With the router's port too: Caddy's per-host metrics count a request under the
        # `Host` it came with (a browser adds a port other than 80) only when a route names it.
        ("route-dep_api", [{"host": ["api.localhost", "api.localhost:8000"]}], True),
        ("route-dep_shop", [{"host": ["shop.localhost", "shop.localhost:8000"]}], True),
    ]
    [api], [shop] = routes[0]["handle"], routes[1]["handle"]
    assert api["handler"] == shop["handler"] == "reverse_proxy"
    assert api["upstreams"] == [{"dial": "127.0.0.1:40003"}]
    assert shop["upstreams"] == [{"dial": "127.0.0.1:40001"}, {"dial": "127.0.0.1:40002"}]


def test_requests_go_to_the_least_busy_replica_and_skip_a_dead_one() -> None:
    [route] = server(render([SHOP]))["routes"][:1]
    [proxy] = route["handle"]
    assert proxy["load_balancing"]["selection_policy"] == {"policy": "least_conn"}
    # A refused dial (a replica that just died) is tried on another one for a while...
    assert proxy["load_balancing"]["try_duration"] == "5s"
    # ... and that replica gets nothing until the reconciler has replaced it.
    assert proxy["health_checks"]["passive"]["max_fails"] == 1


def test_a_single_replica_is_dialled_again_until_it_answers_and_never_marked_down() -> None:
    # Its holder keeps its address: a restarted replica answers there, and marking it down
    # would only turn away the requests waiting for it.
    [route] = [r for r in server(render([API]))["routes"] if r.get("@id") == "route-dep_api"]
    [proxy] = route["handle"]
    assert proxy["load_balancing"] == {"try_duration": "5s", "try_interval": "10ms"}
    assert "health_checks" not in proxy


def test_a_live_deployment_without_a_ready_replica_says_it_is_restarting() -> None:
    routes = server(render([SHOP, DOWN]))["routes"]

    down = next(r for r in routes if r.get("@id") == "route-dep_down")
    assert down["match"] == [{"host": ["down.localhost", "down.localhost:8000"]}]
    [handler] = down["handle"]
    assert (handler["handler"], handler["status_code"]) == ("static_response", 503)
    assert handler["body"] == NO_REPLICA_BODY
    assert routes[-1]["handle"][0]["status_code"] == 404


def test_everything_else_falls_through_to_a_404() -> None:
    for routes in ([], [SHOP, API, DOWN]):
        fallback = server(render(routes))["routes"][-1]
        assert "match" not in fallback
        assert fallback["handle"] == [
            {"handler": "static_response", "status_code": 404, "body": NOT_FOUND_BODY}
        ]


def test_the_server_listens_on_the_router_address_without_automatic_https() -> None:
    http = server(render([SHOP]))
    assert http["listen"] == [LISTEN]
    assert http["automatic_https"] == {"disable": True}
    # Plain HTTP is HTTP/1.1: Caddy's default list warned at every load that h2 and h3 need TLS.
    assert http["protocols"] == ["h1"]


def test_a_dropped_admin_connection_is_tried_again(caddy: AdminAPI, tmp_path: Path) -> None:
    """Caddy replaces its admin server at every load and resets a connection it accepted
    meanwhile (seen on back-to-back loads): the load is sent again."""
    router = CaddyRouter(caddy.url, listen=LISTEN, storage_dir=tmp_path)
    caddy.drops = 2

    router.apply([SHOP])

    assert caddy.loaded == [router.render([SHOP])]


def test_the_admin_api_stays_where_it_is_and_storage_is_under_data_dir() -> None:
    # Without the admin block, loading this config would move Caddy's admin API to :2019.
    config = render([SHOP], storage=Path("/srv/slipway/caddy/storage"))
    assert config["admin"]["listen"] == ADMIN
    assert config["storage"] == {"module": "file_system", "root": "/srv/slipway/caddy/storage"}


def test_the_rendering_is_plain_json_and_independent_of_route_order() -> None:
    assert json.dumps(render([SHOP, API, DOWN])) == json.dumps(render([DOWN, API, SHOP]))


# -- CaddyRouter against a stand-in admin API on 127.0.0.1 --------------------------------------
class AdminAPI(ThreadingHTTPServer):
    def __init__(self, status: int, answer: bytes) -> None:
        super().__init__(("127.0.0.1", 0), AdminHandler)
        self.status = status
        self.answer = answer
        self.loaded: list[dict[str, Any]] = []
        self.read: list[str] = []
        """Paths asked with GET (the counts read before a load: `/metrics`)."""
        self.drops = 0
        """Connections to close unanswered, like Caddy replacing its admin server."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class AdminHandler(BaseHTTPRequestHandler):
    server: AdminAPI

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.server.drops:
            self.server.drops -= 1
            self.close_connection = True
            return
        if self.path == "/load":
            self.server.loaded.append(json.loads(body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(self.server.answer)))
        self.end_headers()
        self.wfile.write(self.server.answer)

    def do_GET(self) -> None:
        self.server.read.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def admin_api(status: int = 200, answer: bytes = b"") -> Iterator[AdminAPI]:
    api = AdminAPI(status, answer)
    thread = threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield api
    finally:
        api.shutdown()
        thread.join()
        api.server_close()


@pytest.fixture
def caddy() -> Iterator[AdminAPI]:
    yield from admin_api()


@pytest.fixture
def refusing_caddy() -> Iterator[AdminAPI]:
    yield from admin_api(400, b'{"error":"loading config: unknown module: http.handlers.nope"}')


def test_applying_routes_loads_the_rendered_config_keeping_the_admin_address(
    caddy: AdminAPI, tmp_path: Path
) -> None:
    router = CaddyRouter(caddy.url, listen=LISTEN, storage_dir=tmp_path)

    router.apply([SHOP])

    [loaded] = caddy.loaded
    assert loaded["admin"]["listen"] == caddy.url.removeprefix("http://")
    assert loaded == router.render([SHOP])


def test_without_metrics_caddy_counts_nothing_per_host_and_no_load_reads_counts(
    caddy: AdminAPI, tmp_path: Path
) -> None:
    """SLIPWAY_METRICS=false: nothing samples the counts, so none are kept or read."""
    CaddyRouter(caddy.url, listen=LISTEN, storage_dir=tmp_path).apply([SHOP])
    assert caddy.read == ["/metrics"]  # the counts a load would start again, kept
    CaddyRouter(caddy.url, listen=LISTEN, storage_dir=tmp_path, metrics=False).apply([SHOP])

    assert caddy.read == ["/metrics"]  # none more
    counted, quiet = (loaded["apps"]["http"] for loaded in caddy.loaded)
    assert counted["metrics"] == {"per_host": True} and "metrics" not in quiet


def test_a_refused_config_is_a_router_error_with_caddys_reason(
    refusing_caddy: AdminAPI, tmp_path: Path
) -> None:
    router = CaddyRouter(refusing_caddy.url, listen=LISTEN, storage_dir=tmp_path)

    with pytest.raises(
        RouterError, match=r"refused the configuration \(HTTP 400\).*unknown module"
    ):
        router.apply([SHOP])


def test_an_unreachable_router_is_a_router_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    router = CaddyRouter(f"http://127.0.0.1:{port}", listen=LISTEN, storage_dir=tmp_path)

    with pytest.raises(RouterError, match="did not answer"):
        router.apply([SHOP])


def test_the_router_counts_requests_per_host() -> None:
    config = render([SHOP])
    assert config["apps"]["http"]["metrics"] == {"per_host": True}
