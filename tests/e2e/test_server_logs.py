"""Server logs end to end: an app prints lines and dies, and what it printed is read through
the API and the CLI after its replica was replaced; a follow receives a line printed after it
began; --grep and --since filter; a secret the app prints is shown redacted."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_cli import Cli
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.images import PYTHON_IMAGE
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform, wait_for

SECRET = "sk-live-" + uuid.uuid4().hex
LOUD_APP = r'''
"""Prints what it is asked to, and dies when asked to (its last words on stderr)."""
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

print("starting", flush=True)
print("the token is " + os.environ.get("API_TOKEN", "unset"), flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        text = parse_qs(url.query).get("text", [""])[0]
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
        self.wfile.flush()
        if url.path == "/say":
            print(text, flush=True)
        elif url.path == "/die":
            print(text, file=sys.stderr, flush=True)
            os._exit(3)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''
LOUD_DOCKERFILE = f"""FROM {PYTHON_IMAGE}
COPY app.py /app/app.py
CMD ["python3", "-u", "/app/app.py"]
"""


ENGINE_BUSY_SECONDS = 20.0
"""How long a 503 (the engine did not answer in time: "try again once it is back") is asked
again, as a client of the API would; a busy CI machine's engine once missed one read."""


def lines(platform: RunningPlatform, deployment_id: str, **params: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + ENGINE_BUSY_SECONDS
    while True:
        response = platform.call("GET", f"/api/deployments/{deployment_id}/logs", params=params)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    return list(response.json())


def texts(found: list[dict[str, Any]]) -> list[str]:
    return [line["text"] for line in found]


def container_exists(name: str) -> bool:
    return (
        subprocess.run(
            ["docker", "inspect", "--type", "container", name], capture_output=True, check=False
        ).returncode
        == 0
    )


def test_a_crashed_apps_last_lines_are_read_after_it_is_gone_followed_filtered_and_redacted(
    tmp_path: Path, platform: RunningPlatform, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("loud", {"Dockerfile": LOUD_DOCKERFILE, "app.py": LOUD_APP})
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, _ = platform.settle(repository["full_name"], repo.head, frozenset({"live"}))
    slug, deployment_id = deployment["slug"], deployment["id"]
    changed = platform.call(
        "PATCH", f"/api/deployments/{deployment_id}/env", json={"secrets": {"API_TOKEN": SECRET}}
    )
    assert changed.status_code == 202, changed.text
    second = changed.json()["revision"]
    platform.wait_state(second["id"], {"live"})

    # It prints, then dies with its last words on stderr.
    marker = uuid.uuid4().hex[:8]
    assert platform.request(slug, f"/say?text=hello-{marker}").status_code == 200
    dying = wait_for(
        "the hello line in the server logs",
        lambda: next(
            (line for line in lines(platform, deployment_id) if line["text"] == f"hello-{marker}"),
            None,
        ),
        30,
    )
    platform.request(slug, f"/die?text=last-words-{marker}")
    wait_for(
        "the dead replica to be replaced and removed",
        lambda: (
            not container_exists(dying["replica"])
            and platform.request(slug, "/").status_code == 200
        ),
        60,
    )

    # After it is gone: its lines, with its replica and revision, through the API.
    shown = lines(platform, deployment_id)
    last = next(line for line in shown if line["text"] == f"last-words-{marker}")
    assert last["replica"] == dying["replica"] and last["stream"] == "stderr"
    assert last["revision"] == second["number"] and last["revision_id"] == second["id"]
    assert "the token is [redacted]" in texts(shown)
    assert "the token is unset" in texts(shown)  # revision 1's replica, retired earlier
    assert any(line["replica"] != dying["replica"] for line in shown if line["text"] == "starting")
    assert texts(lines(platform, deployment_id, q=f"last-words-{marker}")) == [
        f"last-words-{marker}"
    ]
    assert texts(lines(platform, deployment_id, revision="1")) == [
        "starting",
        "the token is unset",
    ]

    # A follow receives a line printed after it began.
    received: list[dict[str, Any]] = []
    opened = threading.Event()

    def follow() -> None:
        with httpx.stream(
            "GET",
            f"{platform.api_url}/api/deployments/{deployment_id}/logs",
            params={"follow": "true", "q": "followed-"},
            headers={"Authorization": f"Bearer {platform.admin_token}"},
            timeout=httpx.Timeout(10, read=60),
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.set()
            for raw in response.iter_lines():
                if raw.startswith("data: "):
                    received.append(json.loads(raw.removeprefix("data: ")))
                    return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert opened.wait(30), "the follow did not start"
    assert platform.request(slug, f"/say?text=followed-{marker}").status_code == 200
    follower.join(timeout=30)
    assert texts(received) == [f"followed-{marker}"]

    # The CLI: server logs, --grep, --since, and the build log behind --build.
    cli = Cli(tmp_path)
    cli("auth", "login", platform.api_url, "--with-token", stdin=platform.admin_token + "\n")
    everything = cli("logs", slug).stdout
    assert f"last-words-{marker}" in everything and "the token is [redacted]" in everything
    assert SECRET not in everything
    grepped = cli("logs", slug, "--grep", f"last-words-{marker}").stdout.splitlines()
    assert len(grepped) == 1 and grepped[0].endswith(
        f"#{second['number']} {dying['replica']} last-words-{marker}"
    )
    recent = cli("logs", slug, "--since", received[0]["at"]).stdout
    assert f"followed-{marker}" in recent and f"last-words-{marker}" not in recent
    assert f"last-words-{marker}" in cli("logs", slug, "--since", "10m").stdout
    assert "slipway:" in cli("logs", slug, "--build").stdout

    # The requests, counted by the router, in the deployment's metrics, across the route
    # changes of those seconds (a retirement, the crash, the replacement: Caddy starts its
    # counts again at each); the platform ready.
    assert platform.call("GET", "/readyz").status_code == 200

    def counted() -> list[dict[str, Any]] | None:
        response = platform.call(
            "GET", f"/api/deployments/{deployment_id}/metrics", params={"since": "15m"}
        )
        assert response.status_code == 200, response.text
        points = list(response.json()["points"])
        return points if sum(p["requests"] for p in points) >= 4 else None

    points = wait_for("the requests in the deployment's metrics", counted, 60)
    assert any(p["replicas"] >= 1 for p in points)
    assert sum(p["restarts"] for p in points) >= 1  # the crash
    assert any(p["p50_ms"] is not None for p in points if p["requests"])

    # Each running replica's CPU and memory, read by the worker (a replica's point comes with
    # the minute, or in a 10 s step where it used CPU).
    def measured() -> list[dict[str, Any]] | None:
        response = platform.call(
            "GET", f"/api/deployments/{deployment_id}/metrics", params={"since": "15m"}
        )
        assert response.status_code == 200, response.text
        usage = [p for series in response.json()["replicas"] for p in series["points"]]
        return usage if any(p["memory_bytes"] > 0 for p in usage) else None

    usage = wait_for("the replicas' CPU and memory in the deployment's metrics", measured, 90)
    assert all(p["cpu_cores"] is None or p["cpu_cores"] >= 0 for p in usage)
