"""The image Slipway generates for a LangGraph repository, built with BuildKit on a plain Python
base from a local package index, serves the graph to the official langgraph-sdk client."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from builders.images import BuildKitBuilder
from builders.index_proxy import IndexPassThrough
from manifests.config import load_repository_config
from manifests.langgraph_image import PIP_SECRET_ID, SERVER_RELEASES, LangGraphBuild, PipIndex
from manifests.recipes import BuildPlan, BuildTarget, default_recipes, plan_build
from tests.support.apps import langgraph_app
from tests.support.images import DOCKER, ensure_python_pip_image
from tests.support.platform import wait_for
from tests.support.wheelhouse import BRIDGE_ADDRESS, WheelIndex, ensure_wheelhouse, serve_wheelhouse

pytestmark = pytest.mark.docker

START_TIMEOUT_SECONDS = 90.0
UNUSED_REDIS = ("-e", "REDIS_URI=redis://127.0.0.1:6379/0")
"""langgraph-api requires REDIS_URI at import; the inmem runtime never connects to it."""


@pytest.fixture(scope="module")
def wheel_index() -> Iterator[WheelIndex]:
    with serve_wheelhouse(ensure_wheelhouse()) as index:
        yield index


def write_repository(root: Path, prefix: str, dockerfile_lines: tuple[str, ...] = ()) -> Path:
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    for name, content in langgraph_app(prefix, dockerfile_lines=dockerfile_lines).items():
        (source / name).write_text(str(content))
    return source


def build(
    root: Path,
    index: WheelIndex,
    tag: str,
    log: Path,
    gateway: Callable[[PipIndex], PipIndex] | None = None,
) -> BuildPlan:
    source = root / "src"
    langgraph = LangGraphBuild(
        base_image=ensure_python_pip_image(),
        runtime="inmem",
        pip=PipIndex(index_url=index.url, trusted_host=index.trusted_host),
        gateway=gateway,
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
    assert (
        "pip install --no-cache-dir --disable-pip-version-check "
        "-c /etc/slipway/langgraph-server-constraints.txt langgraph-api==0.11.1 "
        "langgraph-runtime-inmem==0.31.4"
    ) in steps
    installs = [
        line.split()[0] for line in steps.splitlines() if " RUN " in line and "pip install" in line
    ]
    assert len(installs) == 2, steps[-3000:]
    for step in installs:
        assert f"{step} CACHED" in steps, steps[-3000:]
    url = run_server(tag, served)
    _, result = asyncio.run(ask(url, "hello"))
    assert result["text"] == "v2: hello"


STEALING_LINES = (
    "RUN cat /etc/pip.conf /run/secrets/* 2>/dev/null; env; true",
    f"RUN --mount=type=secret,id={PIP_SECRET_ID} cat /run/secrets/{PIP_SECRET_ID}; true",
    f"RUN --mount=type=secret,id={PIP_SECRET_ID},target=/stolen.conf "
    "cp /stolen.conf /stolen-copy.conf; cat /stolen-copy.conf; true",
)
"""What a tenant writes in dockerfile_lines to read every secret the build is given, and keep a
copy of it in the image."""


def test_a_build_step_that_reads_every_secret_finds_no_index_credential(
    tmp_path: Path, served: list[str]
) -> None:
    password = f"index-token-{uuid.uuid4().hex}"
    user = "operator"
    leaks = [password.encode(), base64.b64encode(f"{user}:{password}".encode())]
    tag = f"slipway-test/langgraph-thief:{uuid.uuid4().hex[:8]}"
    # A step of its own first: BuildKit's cache does not key on secrets, so a step cached from
    # an earlier run would not run (nor print) again.
    fresh = f"RUN echo {uuid.uuid4().hex}"
    write_repository(tmp_path, "v1: ", dockerfile_lines=(fresh, *STEALING_LINES))
    log = tmp_path / "build.log"
    with serve_wheelhouse(ensure_wheelhouse(), user=user, password=password) as index:
        assert password in index.url  # the operator's setting: a URL with credentials
        pip = PipIndex(index_url=index.url, trusted_host=index.trusted_host)
        pass_through = IndexPassThrough(pip, host=BRIDGE_ADDRESS, port=0)
        try:
            build(tmp_path, index, tag, log, gateway=pass_through)
            served.append(tag)
            address = pass_through.listening_on
        finally:
            pass_through.stop()
    assert address is not None

    # The packages came from the index, through the pass-through (which the thief saw).
    steps = log.read_text()
    assert f"http://{address[0]}:{address[1]}/" in steps, steps[-3000:]
    imported = subprocess.run(
        [DOCKER, "run", "--rm", "--entrypoint", "python", tag, "-c", "import langgraph_api"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    # Neither the log nor any layer, file or history line of the image holds the credential.
    for leak in leaks:
        assert leak.decode() not in steps
    history = subprocess.run(
        [DOCKER, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert password not in history
    assert not image_holds(tag, leaks)


def image_holds(tag: str, needles: list[bytes]) -> bool:
    """Whether any of the bytes appear anywhere in `docker save` of the image (every layer's
    files, the config and the history), streamed."""
    save = subprocess.Popen([DOCKER, "save", tag], stdout=subprocess.PIPE)
    assert save.stdout is not None
    overlap = max(len(n) for n in needles)
    tail = b""
    found = False
    while chunk := save.stdout.read(1024 * 1024):
        window = tail + chunk
        found = found or any(n in window for n in needles)
        tail = window[-overlap:]
    assert save.wait(timeout=300) == 0
    return found


CRON_DEADLINE_SECONDS = 120.0
"""An every-minute cron's first run: the next minute, the scheduler's 5 s poll, the run."""


async def first_cron_run(url: str, text: str) -> tuple[list[Any], Any]:
    """An every-minute cron on a new thread, made with langgraph-sdk; its first finished run
    and the thread's state then (None when no run finished by the deadline)."""
    client = get_client(url=url)
    thread = await client.threads.create()
    await client.crons.create_for_thread(
        thread["thread_id"], "agent", schedule="* * * * *", input={"text": text}
    )
    deadline = time.monotonic() + CRON_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        runs = list(await client.runs.list(thread["thread_id"]))
        if any(run["status"] in ("success", "error", "interrupted") for run in runs):
            return runs, await client.threads.get_state(thread["thread_id"])
        await asyncio.sleep(1)
    return list(await client.runs.list(thread["thread_id"])), None


INMEM_RELEASES = [release.api for release in SERVER_RELEASES if "inmem" in release.runtimes]


def test_a_cron_runs_its_graph_on_the_inmem_runtime_of_each_server_release(
    tmp_path: Path, wheel_index: WheelIndex, served: list[str]
) -> None:
    """langgraph.json's api_version chooses the server; on inmem each one fires its crons
    (production's pg runtime is shown by the e2e test). The servers wait for their crons
    together: a minute's schedule takes up to a minute to fire, and once per release made
    this the longest test of the tier."""
    servers: dict[str, tuple[str, str]] = {}
    for api_version in INMEM_RELEASES:
        source = write_repository(tmp_path / api_version, "cron: ")
        config = json.loads((source / "langgraph.json").read_text())
        (source / "langgraph.json").write_text(json.dumps({**config, "api_version": api_version}))
        tag = f"slipway-test/langgraph-cron:{uuid.uuid4().hex[:8]}"
        served.append(tag)
        plan = build(tmp_path / api_version, wheel_index, tag, tmp_path / f"{api_version}.log")
        assert any(f"langgraph-api=={api_version}," in note for note in plan.notes), plan.notes
        url = run_server(tag, served)
        servers[api_version] = (url, served[-1])

    async def every_first_run() -> list[tuple[list[Any], Any]]:
        return list(
            await asyncio.gather(*(first_cron_run(url, "tick") for url, _ in servers.values()))
        )

    for (api_version, (_, container)), (runs, state) in zip(
        servers.items(), asyncio.run(every_first_run()), strict=True
    ):
        assert state is not None, (api_version, runs, server_logs(container))
        assert [run["status"] for run in runs] == ["success"], api_version
        assert state["values"] == {"text": "cron: tick"}, api_version


def server_logs(name: str) -> str:
    return subprocess.run(
        [DOCKER, "logs", "--tail", "60", name], capture_output=True, text=True, check=False
    ).stderr[-4000:]
