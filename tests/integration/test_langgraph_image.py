"""The image Slipway generates for a LangGraph repository, built with BuildKit on a plain Python
base from a local package index, serves the graph to the official langgraph-sdk client."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from builders.images import BuildKitBuilder
from manifests.config import load_repository_config
from manifests.langgraph_image import LangGraphBuild, PipIndex
from manifests.recipes import BuildPlan, BuildTarget, default_recipes, plan_build
from tests.apps import langgraph_app
from tests.images import DOCKER, ensure_python_pip_image
from tests.platform import wait_for
from tests.wheelhouse import WheelIndex, ensure_wheelhouse, serve_wheelhouse

pytestmark = pytest.mark.docker

START_TIMEOUT_SECONDS = 90.0
UNUSED_REDIS = ("-e", "REDIS_URI=redis://127.0.0.1:6379/0")
"""langgraph-api requires REDIS_URI at import; the inmem runtime never connects to it."""


@pytest.fixture(scope="module")
def wheel_index() -> Iterator[WheelIndex]:
    with serve_wheelhouse(ensure_wheelhouse()) as index:
        yield index


def write_repository(root: Path, prefix: str) -> Path:
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    for name, content in langgraph_app(prefix).items():
        (source / name).write_text(str(content))
    return source


def build(root: Path, index: WheelIndex, tag: str, log: Path) -> BuildPlan:
    source = root / "src"
    langgraph = LangGraphBuild(
        base_image=ensure_python_pip_image(),
        runtime="inmem",
        pip=PipIndex(index_url=index.url, trusted_host=index.trusted_host),
    )
    plan = plan_build(
        source,
        load_repository_config(source),
        BuildTarget(work_dir=root, production=False),
        default_recipes(langgraph),
    )
    BuildKitBuilder(DOCKER).build(
        plan, tag, plan.labels, log, cancelled=lambda: False, timeout_seconds=900
    )
    return plan


@pytest.fixture
def served() -> Iterator[list[str]]:
    """Containers and images a test started, removed after it."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, check=False)
        subprocess.run([DOCKER, "rmi", "-f", name], capture_output=True, check=False)


def run_server(image: str, served: list[str]) -> str:
    name = f"slipway-test-langgraph-{uuid.uuid4().hex[:8]}"
    served.append(name)
    subprocess.run(
        [DOCKER, "run", "-d", "--name", name, "-p", "127.0.0.1::8000", *UNUSED_REDIS, image],
        capture_output=True,
        check=True,
        timeout=60,
    )
    port = subprocess.run(
        [DOCKER, "port", name, "8000/tcp"], capture_output=True, text=True, check=True
    ).stdout.split(":")[-1]
    url = f"http://127.0.0.1:{port.strip()}"

    def ok() -> bool:
        try:
            return httpx.get(f"{url}/ok", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the LangGraph server's /ok", ok, START_TIMEOUT_SECONDS, every=0.25)
    except AssertionError:
        logs = subprocess.run([DOCKER, "logs", name], capture_output=True, text=True).stdout
        raise AssertionError(f"server never answered /ok:\n{logs[-3000:]}") from None
    return url


async def ask(url: str, text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    client = get_client(url=url)
    assistants = await client.assistants.search(graph_id="agent")
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "agent", input={"text": text})
    assert isinstance(result, dict)
    return [dict(a) for a in assistants], result


def test_a_langgraph_repository_builds_and_serves_its_graph_to_the_sdk(
    tmp_path: Path, wheel_index: WheelIndex, served: list[str]
) -> None:
    tag = f"slipway-test/langgraph-app:{uuid.uuid4().hex[:8]}"
    write_repository(tmp_path, "v1: ")
    plan = build(tmp_path, wheel_index, tag, tmp_path / "build-1.log")
    served.append(tag)
    url = run_server(tag, served)

    assistants, result = asyncio.run(ask(url, "hello"))
    assert [a["graph_id"] for a in assistants] == ["agent"]
    assert result["text"] == "v1: hello"

    # The index reached pip as a build secret only: it is in no layer and no history line.
    history = subprocess.run(
        [DOCKER, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert wheel_index.url not in history
    assert "pip.conf" in plan.dockerfile.read_text()
    found = subprocess.run(
        [
            DOCKER,
            "run",
            "--rm",
            "--entrypoint",
            "python",
            tag,
            "-c",
            "import os; print(os.path.exists('/etc/pip.conf'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert found.strip() == "False"

    # A change to the graph rebuilds only the layers after the requirements.
    write_repository(tmp_path, "v2: ")
    second_log = tmp_path / "build-2.log"
    build(tmp_path, wheel_index, tag, second_log)
    steps = second_log.read_text()
    assert "pip install --no-cache-dir --disable-pip-version-check langgraph-api" in steps
    installs = [
        line.split()[0] for line in steps.splitlines() if " RUN " in line and "pip install" in line
    ]
    assert len(installs) == 2, steps[-3000:]
    for step in installs:
        assert f"{step} CACHED" in steps, steps[-3000:]
    url = run_server(tag, served)
    _, result = asyncio.run(ask(url, "hello"))
    assert result["text"] == "v2: hello"
