"""A LangGraph repository with no Dockerfile, pushed to the platform, serves its graph to the
official langgraph-sdk through the router; threads live in the deployment's database and
survive a new revision and a crashed replica."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from tests.apps import langgraph_app
from tests.e2e.conftest import INSTALLATION_ID, connect_repository, remove_docker_objects
from tests.fake_github import FakeGitHub
from tests.images import DOCKER, ensure_python_pip_image
from tests.platform import RunningPlatform, start_platform, wait_for
from tests.wheelhouse import ensure_wheelhouse, serve_wheelhouse

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

NULL_SHA = "0" * 40
SETTLE_SECONDS = 600.0
"""The first build installs langgraph-api from the local index (~1 min on 2 cores)."""


@pytest.fixture(scope="module")
def langgraph_platform(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub
) -> Iterator[RunningPlatform]:
    """A platform whose LangGraph builds use the local base and the cached wheelhouse."""

    with serve_wheelhouse(ensure_wheelhouse()) as index:
        running = start_platform(
            tmp_path_factory.mktemp("langgraph-platform"),
            github,
            health_timeout_seconds="120",
            langgraph_base_image=ensure_python_pip_image(),
            build_pip_index_url=index.url,
            build_pip_trusted_host=index.trusted_host,
        )
        yield running
        deployments = running.api("/api/deployments")
        running.stop()
        remove_docker_objects([d["id"] for d in deployments])


def sdk(platform: RunningPlatform, slug: str) -> Any:
    """The official client, through the router on 127.0.0.1 with the deployment's Host."""
    return get_client(
        url=f"http://127.0.0.1:{platform.router_port}",
        headers={"Host": f"{slug}.localhost:{platform.router_port}"},
    )


async def first_conversation(platform: RunningPlatform, slug: str) -> tuple[Any, ...]:
    client = sdk(platform, slug)
    assistants = await client.assistants.search(graph_id="agent")
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "agent", input={"text": "hello"})
    return assistants, thread["thread_id"], result


async def thread_state(platform: RunningPlatform, slug: str, thread_id: str) -> Any:
    client = sdk(platform, slug)
    state = await client.threads.get_state(thread_id)
    history = await client.threads.get_history(thread_id)
    return state["values"], history


async def answer(platform: RunningPlatform, slug: str, text: str) -> Any:
    client = sdk(platform, slug)
    thread = await client.threads.create()
    return await client.runs.wait(thread["thread_id"], "agent", input={"text": text})


def replicas_of(revision_id: str) -> list[str]:
    return subprocess.run(
        [DOCKER, "ps", "-q", "--filter", f"label=dev.slipway.revision={revision_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def replica_of(revision_id: str) -> str:
    [container] = replicas_of(revision_id)
    return container


def test_a_langgraph_repository_goes_live_and_keeps_its_threads(
    tmp_path: Path, github: FakeGitHub, langgraph_platform: RunningPlatform
) -> None:
    platform = langgraph_platform
    repo, repo_info = connect_repository(
        platform, github, tmp_path / "agent", langgraph_app("v1: ")
    )
    first = repo.head
    assert platform.push(repo_info, INSTALLATION_ID, NULL_SHA, first).status_code == 202
    deployment, revision1 = platform.settle(repo_info["full_name"], first)
    assert revision1["state"] == "live", (revision1["error"], platform.logs(revision1["id"]))
    slug = deployment["slug"]

    assistants, thread_id, result = asyncio.run(first_conversation(platform, slug))
    assert [a["graph_id"] for a in assistants] == ["agent"]
    assert result["text"] == "v1: hello"

    # Its Redis: on the deployment's network, not published, password never in the logs.
    redis = json.loads(
        subprocess.run(
            [DOCKER, "inspect", f"slipway-redis-{deployment['id']}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    assert redis["State"]["Running"]
    assert redis["HostConfig"]["NetworkMode"] == f"slipway-net-{deployment['id']}"
    assert not redis["HostConfig"]["PortBindings"]
    build_log = platform.logs(revision1["id"])
    assert "managed checkpointer and store (pg runtime)" in build_log
    assert "the deployment's own Redis" in build_log
    database_password = platform.database_password(deployment["id"])
    assert database_password not in build_log
    assert database_password not in platform.log_path.read_text()

    # A change to the graph: the new behaviour serves, the old thread is still there.
    second = repo.commit(langgraph_app("v2: "), "new prefix")
    assert platform.push(repo_info, INSTALLATION_ID, first, second).status_code == 202
    _, revision2 = platform.settle(repo_info["full_name"], second)
    assert revision2["state"] == "live", (revision2["error"], platform.logs(revision2["id"]))
    # The pg runtime's workers share the run queue: until the old replica has stopped (its
    # SIGTERM comes right after the switch), it may still take a run. Then only v2 answers.
    wait_for("the old replica to stop", lambda: not replicas_of(revision1["id"]), 60, every=0.2)
    assert asyncio.run(answer(platform, slug, "again"))["text"] == "v2: again"
    values, history = asyncio.run(thread_state(platform, slug, thread_id))
    assert values == {"text": "v1: hello"}
    assert history
    redis_after = subprocess.run(
        [DOCKER, "inspect", "-f", "{{.Id}}", f"slipway-redis-{deployment['id']}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert redis_after == redis["Id"]  # reused across revisions

    # `docker kill` of the replica: the reconciler replaces it, and the thread is still there.
    container = replica_of(revision2["id"])
    subprocess.run([DOCKER, "kill", container], check=True, capture_output=True)

    def back() -> Any:
        try:
            return asyncio.run(thread_state(platform, slug, thread_id))[0]
        except Exception:  # any failure means "not back yet"
            return None

    values = wait_for("a replacement of the killed replica to serve", back, 120, every=0.5)
    assert values == {"text": "v1: hello"}
    assert container not in replicas_of(revision2["id"])
