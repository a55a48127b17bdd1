"""Deployment metrics end to end on a real Caddy: requests sent through the router are counted
per host (and 5xx apart), sampled into points, served by the API as a series and at /metrics
in Prometheus' format (which prometheus_client's parser reads), behind a token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.adapters.caddy import CaddyRouter
from app.api import create_app
from app.bootstrap import open_database
from app.kernel.addresses import Route
from app.kernel.models import Deployment, Installation, Repository
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.replicas.metrics import MetricsSampler
from app.server.embedded import Caddy, EmbeddedRedis, free_port
from tests.support.api_server import serve_api
from tests.support.keys import new_private_key_pem

pytestmark = pytest.mark.timeout(120)
HOST = "web.localhost"


class App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_requests_through_the_router_become_points_a_series_and_prometheus_metrics(
    tmp_path: Path, app_server: int
) -> None:
    router_port = free_port()
    caddy = Caddy(tmp_path / "caddy")
    caddy.start()
    queue = EmbeddedRedis(tmp_path / "redis")
    queue.start()
    try:
        router = CaddyRouter(
            caddy.admin_url, listen=f"127.0.0.1:{router_port}", storage_dir=tmp_path / "storage"
        )
        route = Route(
            deployment_id="dep_web", hostname=HOST, upstreams=(f"127.0.0.1:{app_server}",)
        )
        router.apply([route])
        settings = Settings(
            _env_file=None,
            github_app_id=1,
            github_private_key=new_private_key_pem(),
            github_webhook_secret="s",
            data_dir=tmp_path / "data",
            redis_url=queue.url,
            caddy_admin_url=caddy.admin_url,
        )
        sessions = open_database(settings)
        with sessions() as session:
            session.add(Installation(id=1, account_login="octo"))
            session.commit()
            session.add(Repository(id=2, installation_id=1, full_name="octo/web"))
            session.commit()
            session.add(Deployment(id="dep_web", repository_id=2, slug="web", branch="main"))
            session.commit()
        now = [utcnow() - timedelta(minutes=2)]
        sampler = MetricsSampler(
            sessions=sessions,
            scrape=router.metrics_reads,
            hostname=lambda slug: f"{slug}.localhost",
            clock=lambda: now[0],
        )
        sampler.sample()  # the baseline

        with httpx.Client(base_url=f"http://127.0.0.1:{router_port}") as c:
            # Half as a browser sends them to a router on a port other than 80.
            hosts = (HOST, f"{HOST}:{router_port}")
            answers = []
            for i in range(30):
                if i % 10 == 5:  # a route change: Caddy starts its counts again
                    router.apply([route])
                path = "/fail" if i % 6 == 0 else "/"
                answers.append(c.get(path, headers={"Host": hosts[i % 2]}).status_code)
        assert answers.count(500) == 5
        for _ in range(6):
            now[0] += timedelta(seconds=10)
            sampler.sample()

        app = create_app(settings)  # makes the admin token
        token = (settings.data_dir / "admin-token").read_text().strip()
        with (
            serve_api(app) as base,
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            series = client.get(
                "/api/deployments/dep_web/metrics",
                params={"since": "1h", "step": "10s"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert series.status_code == 200, series.text
            (point,) = series.json()["points"]
            assert (point["requests"], point["errors"]) == (30, 5)
            assert point["requests_per_second"] == 3.0 and point["error_rate"] == pytest.approx(
                5 / 30, abs=1e-3
            )
            assert point["p50_ms"] is not None and point["p50_ms"] <= point["p99_ms"]

            assert client.get("/metrics").status_code == 401
            scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert scraped.status_code == 200
            samples = {
                (s.name, s.labels.get("deployment"), s.labels.get("quantile")): s.value
                for family in text_string_to_metric_families(scraped.text)
                for s in family.samples
            }
            assert samples[("slipway_deployment_requests_per_second", "web", None)] == 0.5
            assert samples[("slipway_deployment_errors_per_second", "web", None)] == pytest.approx(
                5 / 60
            )
            assert ("slipway_deployment_latency_seconds", "web", "0.99") in samples
            assert samples[("slipway_deployments", None, None)] == 1
    finally:
        caddy.stop()
        queue.stop()
