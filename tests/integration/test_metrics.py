"""Deployment metrics end to end on a real Caddy: requests sent through the router are counted
per host (and 5xx apart; a custom domain's in its deployment's), sampled into points, served by
the API as a series and at /metrics in Prometheus' format (which prometheus_client's parser
reads), behind a token; under `hey`'s load the API shows what hey itself measured, and each
replica container's CPU and memory."""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker as docker_sdk
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.adapters.caddy import CaddyRouter
from app.adapters.container_usage import ContainerUsage
from app.api import create_app
from app.bootstrap import open_database
from app.kernel.addresses import Route
from app.kernel.models import (
    Deployment,
    Domain,
    Installation,
    Replica,
    ReplicaState,
    Repository,
    Revision,
)
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.replicas.metrics import MetricsSampler
from app.server.embedded import Caddy, EmbeddedRedis, free_port
from builders.engine_errors import typed_api
from tests.support.api_server import serve_api
from tests.support.images import DOCKER, docker, ensure_busybox_image
from tests.support.keys import new_private_key_pem
from tests.support.load import start_load

pytestmark = pytest.mark.timeout(120)
HOST = "web.localhost"
DOMAIN = "www.example.com"


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
            deployment_id="dep_web",
            hostname=HOST,
            upstreams=(f"127.0.0.1:{app_server}",),
            aliases=(DOMAIN,),
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
            session.add(Domain(name=DOMAIN, deployment_id="dep_web", state="active"))
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
            # As a browser sends them to a router on a port other than 80, and a third to
            # the deployment's custom domain (counted by Caddy under its own name).
            hosts = (HOST, f"{HOST}:{router_port}", f"{DOMAIN}:{router_port}")
            answers = []
            for i in range(30):
                if i % 10 == 5:  # a route change: Caddy starts its counts again
                    router.apply([route])
                path = "/fail" if i % 6 == 0 else "/"
                answers.append(c.get(path, headers={"Host": hosts[i % 3]}).status_code)
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


CGI_APP = (
    "mkdir -p /www/cgi-bin && printf '%s' \"$APP\" > /www/cgi-bin/app && "
    "chmod +x /www/cgi-bin/app && exec httpd -f -p 8080 -h /www"
)
APP_SCRIPT = (
    "#!/bin/sh\n"
    "i=0; while [ $i -lt 300 ]; do i=$((i+1)); done\n"  # a few ms of CPU, as an app would use
    'printf "Status: {status}\\r\\nContent-Type: text/plain\\r\\n\\r\\n{status}\\n"\n'
)
CADDY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Caddy's request-duration histogram: the router's quantiles are as fine as these."""


@pytest.fixture
def replica_containers() -> Iterator[list[tuple[str, int]]]:
    """Two replicas as containers, published on loopback only: busybox httpd running a CGI
    app, one answering 200 and the other 500 (the router spreads requests over both)."""
    image = ensure_busybox_image()
    started: list[str] = []
    try:
        for status in ("200 OK", "500 Internal Server Error"):
            started.append(
                docker(
                    "run", "-d", "--name", f"slipway-it-metrics-{secrets.token_hex(4)}",
                    "-e", f"APP={APP_SCRIPT.format(status=status)}",
                    "-p", "127.0.0.1::8080", image, "sh", "-c", CGI_APP,
                ).strip()
            )  # fmt: skip
        ports = [int(docker("port", c, "8080").split()[0].rsplit(":", 1)[1]) for c in started]
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/cgi-bin/app", timeout=2).status_code:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)
        yield list(zip(started, ports, strict=True))
    finally:
        for container in started:
            subprocess.run([DOCKER, "rm", "-f", container], capture_output=True, check=False)


def bucket_around(seconds: float) -> tuple[float, float]:
    lower = max((b for b in CADDY_BUCKETS if b < seconds), default=0.0)
    upper = min((b for b in CADDY_BUCKETS if b >= seconds), default=CADDY_BUCKETS[-1])
    return lower, upper


def test_under_hey_load_the_api_shows_what_hey_measured_and_each_replicas_cpu_and_memory(
    tmp_path: Path, replica_containers: list[tuple[str, int]]
) -> None:
    router_port = free_port()
    caddy = Caddy(tmp_path / "caddy")
    caddy.start()
    queue = EmbeddedRedis(tmp_path / "redis")
    queue.start()
    engine = docker_sdk.from_env(timeout=30)
    try:
        router = CaddyRouter(
            caddy.admin_url, listen=f"127.0.0.1:{router_port}", storage_dir=tmp_path / "storage"
        )
        upstreams = tuple(f"127.0.0.1:{port}" for _, port in replica_containers)
        router.apply([Route(deployment_id="dep_web", hostname=HOST, upstreams=upstreams)])
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
            session.add(
                Revision(
                    id="rev_1", deployment_id="dep_web", number=1, commit_sha="0" * 40, env_hash="e"
                )
            )
            session.commit()
            for i, (container_id, _) in enumerate(replica_containers):
                session.add(
                    Replica(
                        id=f"rep_{i}",
                        revision_id="rev_1",
                        container_name=f"web-1-{i}",
                        container_id=container_id,
                        container_port=8080,
                        state=ReplicaState.ready,
                    )
                )
            session.commit()
        api = typed_api(engine.api)
        now = [utcnow() - timedelta(minutes=1)]
        sampler = MetricsSampler(
            sessions=sessions,
            scrape=router.metrics_reads,
            hostname=lambda slug: f"{slug}.localhost",
            clock=lambda: now[0],
            resources=ContainerUsage(lambda ref: dict(api.stats(ref, stream=False, one_shot=True))),
        )
        sampler.sample()  # the baseline, just before the load
        # 10 workers at 10 requests a second for 10 s (at most 1,000 requests): the sampler's
        # next step is the load's 10 s, so its rate is the requests over the load's duration.
        load = start_load(
            router_port, HOST, "/cgi-bin/app", seconds=10, concurrency=10, rate_per_worker=10
        ).wait()
        now[0] += timedelta(seconds=10)
        sampler.sample()
        assert load.requests >= 200 and not load.errors, load.output
        hey_rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", load.output)[1])  # type: ignore[index]

        app = create_app(settings)  # makes the admin token
        token = (settings.data_dir / "admin-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        with serve_api(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            answer = client.get(
                "/api/deployments/dep_web/metrics",
                params={"since": "1h", "step": "10s"},
                headers=auth,
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            (point,) = body["points"]
            assert point["requests"] == pytest.approx(load.requests, rel=0.1)
            assert point["requests_per_second"] == pytest.approx(hey_rate, rel=0.1)
            assert point["errors"] == pytest.approx(load.statuses[500], rel=0.1)
            assert point["error_rate"] == pytest.approx(load.failed / load.requests, rel=0.1)
            for quantile in (50, 95, 99):
                # The router's quantile falls in the bucket of Caddy's histogram where hey's
                # does (within 10 % of its bounds), or the one below: it is read off those
                # buckets, and the router times a request from inside, without the client's
                # share (hey's p50 of 10.1 ms against the router's 8.7 ms on a busy machine).
                lower, upper = bucket_around(load.latency[quantile])
                lower = bucket_around(lower)[0]
                routers = point[f"p{quantile}_ms"] / 1000
                assert lower * 0.9 <= routers <= upper * 1.1, (quantile, routers, load.latency)

            usage = {series["replica_id"]: series["points"] for series in body["replicas"]}
            assert set(usage) == {"rep_0", "rep_1"}
            for replica_id, points in usage.items():
                (busy,) = points
                assert busy["cpu_cores"] > 0, replica_id
                assert busy["memory_bytes"] > 0, replica_id

            scraped = client.get("/metrics", headers=auth)
            assert scraped.status_code == 200
            families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
            for name in ("slipway_replica_cpu_cores", "slipway_replica_memory_bytes"):
                replicas = {s.labels["replica"] for s in families[name].samples}
                assert replicas == {"rep_0", "rep_1"}, name
    finally:
        engine.close()
        caddy.stop()
        queue.stop()
