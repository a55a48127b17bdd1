"""Background runs scale a production LangGraph deployment: with no request held, ~30 runs made
with `runs.create` are its run queue, the autoscaler adds replicas for it, the runs spread over
the replicas' queue workers and all finish, and after the scale-down delay one replica is left.
The scaling API shows the queue beside the concurrency, the metrics API and /metrics its series.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_langgraph_platform,
    wait_for,
)
from tests.support.wheelhouse import ensure_wheelhouse, serve_wheelhouse

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

RUNS = 30
RUN_SECONDS = 25
"""Each run sleeps this long: one replica's 10 queue workers would need three rounds."""
MAX_REPLICAS = 3
"""[scale] max: 30 runs ask for ceil(30 / 7.5) = 4 replicas, bounded to 3 (a 2-core machine)."""
SCALE_DOWN_DELAY_SECONDS = 30

QUEUE_AGENT = """import asyncio
import socket
from typing import TypedDict

from langgraph.graph import StateGraph


class State(TypedDict):
    seconds: float
    replica: str


async def work(state: State) -> dict:
    await asyncio.sleep(state["seconds"])
    return {"replica": socket.gethostname()}


builder = StateGraph(State)
builder.add_node("work", work)
builder.set_entry_point("work")
graph = builder.compile()
"""


def queue_app() -> dict[str, str | bytes]:
    return {
        "langgraph.json": (
            '{\n  "dependencies": ["."],\n  "graphs": {"agent": "./agent.py:graph"}\n}\n'
        ),
        "agent.py": QUEUE_AGENT,
        "requirements.txt": "langgraph\n",
        "slipway.toml": f"[scale]\nmax = {MAX_REPLICAS}\n",
    }


@pytest.fixture(scope="module")
def queue_platform(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub
) -> Iterator[RunningPlatform]:
    with serve_wheelhouse(ensure_wheelhouse()) as index:
        running = start_langgraph_platform(
            tmp_path_factory.mktemp("langgraph-queue-platform"),
            github,
            index,
            autoscale_scale_down_delay_seconds=str(SCALE_DOWN_DELAY_SECONDS),
        )
        yield running
        running.stop_and_clean()


def sdk(platform: RunningPlatform, slug: str) -> Any:
    return get_client(
        url=f"http://127.0.0.1:{platform.router_port}",
        headers={"Host": f"{slug}.localhost:{platform.router_port}"},
    )


async def create_runs(platform: RunningPlatform, slug: str) -> list[tuple[str, str]]:
    """RUNS background runs, each on a thread of its own; nothing waits for them."""
    client = sdk(platform, slug)
    made = []
    for _ in range(RUNS):
        thread = await client.threads.create()
        run = await client.runs.create(
            thread["thread_id"], "agent", input={"seconds": RUN_SECONDS, "replica": ""}
        )
        made.append((thread["thread_id"], run["run_id"]))
    return made


async def statuses(platform: RunningPlatform, slug: str, runs: list[tuple[str, str]]) -> list[str]:
    """One short request at a time: the router sees at most one in flight."""
    client = sdk(platform, slug)
    return [(await client.runs.get(t, r))["status"] for t, r in runs]


async def replicas_that_ran(
    platform: RunningPlatform, slug: str, runs: list[tuple[str, str]]
) -> list[str]:
    client = sdk(platform, slug)
    return [(await client.threads.get_state(t))["values"]["replica"] for t, _ in runs]


def scaling(platform: RunningPlatform, deployment_id: str) -> dict[str, Any]:
    return dict(platform.api(f"/api/deployments/{deployment_id}/scaling"))


def test_background_runs_scale_a_langgraph_deployment_and_it_scales_back(
    tmp_path: Path, github: FakeGitHub, queue_platform: RunningPlatform
) -> None:
    platform = queue_platform
    repo, repository = connect_repository(platform, github, tmp_path / "queue", queue_app())
    assert platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head).status_code == 202
    deployment = platform.deployment_of(repository["full_name"])
    revision = platform.wait_state(
        platform.revision_for(deployment["id"], repo.head)["id"], {"live", "failed"}, 600
    )
    assert revision["state"] == "live", (revision["error"], platform.logs(revision["id"]))
    deployment_id, slug = deployment["id"], deployment["slug"]

    at_rest = scaling(platform, deployment_id)
    assert at_rest["current"] == 1
    assert at_rest["policy"]["jobs_per_worker"] == 10, at_rest["policy"]

    started = time.monotonic()
    runs = asyncio.run(create_runs(platform, slug))

    # The queue alone (no request is held) asks for more replicas; the API says why.
    def scaled_on_the_queue() -> dict[str, Any] | None:
        seen = scaling(platform, deployment_id)
        for decision in seen["decisions"]:
            queue = decision.get("queue")
            if queue and queue["pending"] + queue["running"] > 0 and decision["desired"] > 1:
                return dict(decision)
        return None

    decision = wait_for("a decision for more replicas on the run queue", scaled_on_the_queue, 60, 1)
    queued = decision["queue"]["pending"] + decision["queue"]["running"]
    assert decision["queue_replicas"] == min(MAX_REPLICAS, math.ceil(queued / 7.5)), decision
    # The requests (the test's own, one short one at a time) alone ask for one replica.
    assert decision["stable_concurrency"] is not None and decision["stable_concurrency"] <= 1
    wait_for(
        "more than one ready replica",
        lambda: scaling(platform, deployment_id)["current"] > 1,
        180,
        1,
    )
    samples = scaling(platform, deployment_id)["samples"]
    assert any(s["queue"] and s["queue"]["pending"] + s["queue"]["running"] for s in samples)

    # Every run finishes, and more than one replica's queue workers ran them.
    def all_finished() -> list[str] | None:
        try:
            states = asyncio.run(statuses(platform, slug, runs))
        except httpx.TransportError:
            # A kept-alive connection the router closed as it loaded a new route table (a
            # replica added or drained): Caddy shuts the old server's idle connections, and
            # httpx does not send the request again on a new one. Asked again next poll; what
            # the test shows is the runs' end, not this client's retries.
            return None
        assert not set(states) - {"pending", "running", "success"}, states
        return states if all(s == "success" for s in states) else None

    wait_for("every background run to finish", all_finished, 300, 3)
    finished = time.monotonic() - started
    ran_on = asyncio.run(replicas_that_ran(platform, slug, runs))
    assert len(ran_on) == RUNS and all(ran_on)
    assert len(set(ran_on)) > 1, ran_on
    # One replica alone works three rounds of RUN_SECONDS.
    assert finished < 3 * RUN_SECONDS + 60, finished

    # The queue is a metric series beside the requests, in the API and in Prometheus' text.
    def queue_points() -> list[dict[str, Any]] | None:
        series = platform.api(f"/api/deployments/{deployment_id}/metrics?since=15m&step=10s")
        points: list[dict[str, Any]] = [p for p in series["points"] if (p["running_runs"] or 0) > 0]
        return points or None

    points = wait_for("metric points with running runs", queue_points, 30, 2)
    assert max(p["running_runs"] + p["pending_runs"] for p in points) <= RUNS

    def prometheus_queue() -> str | None:
        text = platform.call("GET", "/metrics").text
        line = f'slipway_deployment_running_runs{{deployment="{slug}"}}'
        return text if line in text else None

    wait_for("the run queue in /metrics", prometheus_queue, 90, 3)

    # Back to one replica after the delay, with nothing queued.
    def one_replica() -> dict[str, Any] | None:
        seen = scaling(platform, deployment_id)
        return seen if seen["current"] == 1 and seen["desired"] == 1 else None

    back = wait_for("one replica again", one_replica, SCALE_DOWN_DELAY_SECONDS + 120, 2)
    down = [d for d in back["decisions"] if d["reason"] == "scale-down"]
    assert down and down[-1]["queue"] == {"pending": 0, "running": 0}, back["decisions"]
