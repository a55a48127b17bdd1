"""`/readyz` names what is down and comes back with it; `/healthz` stays up meanwhile; the API
describes itself at /schema. A real API server (uvicorn), a real Valkey, Caddy and Docker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api import create_app
from app.kernel.settings import Settings
from app.server.embedded import Caddy, EmbeddedRedis
from tests.support.api_server import serve_api
from tests.support.keys import new_private_key_pem

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def api(tmp_path: Path, valkey: EmbeddedRedis) -> Iterator[str]:
    caddy = Caddy(tmp_path / "caddy")
    caddy.start()
    settings = Settings(
        _env_file=None,
        github_app_id=1,
        github_private_key=new_private_key_pem(),
        github_webhook_secret="s",
        data_dir=tmp_path / "data",
        redis_url=valkey.url,
        caddy_admin_url=caddy.admin_url,
    )
    try:
        with serve_api(create_app(settings)) as base:
            yield base
    finally:
        caddy.stop()


def wait_for_status(client: httpx.Client, path: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        response = client.get(path)
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, (path, response.status_code, response.text)
        time.sleep(0.2)


def test_readyz_names_redis_while_it_is_down_and_is_ready_again_after(
    api: str, valkey: EmbeddedRedis
) -> None:
    with httpx.Client(base_url=api, timeout=30) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checked"]) == {
            "control-plane database",
            "redis",
            "router",
            "docker engine",
        }

        valkey.stop()
        down: dict[str, Any] = wait_for_status(client, "/readyz", 503).json()
        assert list(down["down"]) == ["redis"], down  # only what is down is named
        assert client.get("/healthz").status_code == 200  # liveness: the process is fine

        valkey.start()
        wait_for_status(client, "/readyz", 200)


def test_the_api_describes_itself_at_schema_without_a_token(api: str) -> None:
    with httpx.Client(base_url=api, timeout=30) as client:
        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200
        paths = schema.json()["paths"]
        assert "/api/deployments/{deployment_id}/logs" in paths
        assert "/readyz" in paths
        assert client.get("/schema/openapi.yaml").status_code == 200
        assert client.get("/api/deployments").status_code == 401  # the API itself still is not
