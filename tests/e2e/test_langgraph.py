"""A LangGraph repository with no Dockerfile, pushed to the platform, serves its graph to the
official langgraph-sdk through the router; threads live in the deployment's database and
survive a new revision, a crashed replica and a platform restart; two deployments (and a
pull request's preview) each have a Redis and a database of their own, out of the other's reach;
their runs are traces in a LangSmith project named as the deployment (a local stand-in).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError

from app.kernel.names import database_identifier
from tests.e2e.pull_requests import PullRequests, connects
from tests.support.apps import langgraph_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.fake_langsmith import FakeLangSmith
from tests.support.git_repos import GitRepo
from tests.support.images import DOCKER
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_langgraph_platform,
    wait_for,
)
from tests.support.wheelhouse import (
    BRIDGE_ADDRESS,
    WheelIndex,
    ensure_wheelhouse,
    serve_wheelhouse,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

SETTLE_SECONDS = 600.0
"""The first build installs langgraph-api from the local index (~1 min on 2 cores)."""


@pytest.fixture(scope="module")
def wheel_index() -> Iterator[WheelIndex]:
    with serve_wheelhouse(ensure_wheelhouse()) as index:
        yield index


LANGSMITH_KEY = "lsv2_pt_e2e-platform-key-7c1d9a"


@pytest.fixture(scope="module")
def langsmith() -> Iterator[FakeLangSmith]:
    """LangSmith's stand-in where the replicas reach the host (the docker0 gateway); the platform
    allows its port to apps as an operator allows a self-hosted LangSmith on their network."""
    with FakeLangSmith(LANGSMITH_KEY, host=BRIDGE_ADDRESS) as fake:
        yield fake


@pytest.fixture(scope="module")
def langgraph_platform(
    tmp_path_factory: pytest.TempPathFactory,
    github: FakeGitHub,
    wheel_index: WheelIndex,
    langsmith: FakeLangSmith,
) -> Iterator[RunningPlatform]:
    running = start_langgraph_platform(
        tmp_path_factory.mktemp("langgraph-platform"),
        github,
        wheel_index,
        langsmith_api_key=LANGSMITH_KEY,
        langsmith_endpoint=langsmith.url,
        network_policy_allow=f"{BRIDGE_ADDRESS}/32:{langsmith.port}",
        # Days of 8 s with the idle rules off: the usage tick, which makes tracing projects,
        # runs every second.
        idle_day_seconds="8",
        idle_notice_days="0",
        idle_delete_days="0",
    )
    yield running
    running.stop_and_clean()


@dataclass(frozen=True)
class Agent:
    """A LangGraph repository whose production deployment is live."""

    repo: GitRepo
    repository: dict[str, Any]
    deployment: dict[str, Any]
    revision: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.deployment["slug"])

    @property
    def id(self) -> str:
        return str(self.deployment["id"])


def deploy_agent(platform: RunningPlatform, github: FakeGitHub, path: Path, prefix: str) -> Agent:
    """Connect a repository holding langgraph_app(prefix), push it, and wait until it is live."""
    repo, repository = connect_repository(platform, github, path, langgraph_app(prefix))
    assert platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head).status_code == 202
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", (revision["error"], platform.logs(revision["id"]))
    return Agent(repo, repository, deployment, revision)


AgentFactory = Callable[[str], Agent]


@pytest.fixture(scope="module")
def agents(
    tmp_path_factory: pytest.TempPathFactory,
    github: FakeGitHub,
    langgraph_platform: RunningPlatform,
) -> AgentFactory:
    """Live deployments on the module's platform by name, deployed on first ask and shared by the
    tests that only read them (their builds hit the cache of the module's first build)."""
    root = tmp_path_factory.mktemp("agents")
    made: dict[str, Agent] = {}

    def agent(name: str) -> Agent:
        if name not in made:
            made[name] = deploy_agent(langgraph_platform, github, root / name, f"{name}: ")
        return made[name]

    return agent


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
    assert platform.push(repo_info, INSTALLATION_ID, ZERO_SHA, first).status_code == 202
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


# -- isolation: two deployments -----------------------------------------------------------------
PROBE = r"""
import json, os, socket, sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

own_redis_ip, other_redis_name, other_redis_ip, other_database = sys.argv[1:]


def tcp(host):
    try:
        socket.create_connection((host, 6379), timeout=3).close()
        return "connected"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


found = {}
own = urlsplit(os.environ["REDIS_URI"])
found["own_redis_with_password"] = redis.Redis.from_url(own.geturl(), socket_timeout=5).ping()
try:
    redis.Redis(host=own.hostname, port=own.port, socket_timeout=5).ping()
    found["own_redis_without_password"] = "answered"
except redis.RedisError as exc:
    found["own_redis_without_password"] = f"{type(exc).__name__}: {exc}"
found["own_redis_by_ip"] = tcp(own_redis_ip)
found["other_redis_by_name"] = tcp(other_redis_name)
found["other_redis_by_ip"] = tcp(other_redis_ip)
with psycopg.connect(os.environ["DATABASE_URI"], connect_timeout=5) as connection:
    found["own_database"] = connection.execute("SELECT current_database()").fetchone()[0]
theirs = urlsplit(os.environ["DATABASE_URI"])._replace(path="/" + other_database)
try:
    psycopg.connect(urlunsplit(theirs), connect_timeout=5).close()
    found["other_database"] = "connected"
except psycopg.OperationalError as exc:
    found["other_database"] = str(exc)
print(json.dumps(found))
"""
"""Run by the replica's own Python (langgraph-api brings redis, the pg runtime psycopg), with
the replica's own REDIS_URI and DATABASE_URI: no secret passes through the test's argv."""


def docker_out(*args: str) -> str:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def redis_container(deployment_id: str) -> str:
    return f"slipway-redis-{deployment_id}"


def ip_of(container: str) -> str:
    return docker_out(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
    )


def live_replica(deployment_id: str) -> str:
    [container] = docker_out(
        "ps",
        "-q",
        "--filter",
        f"label=dev.slipway.deployment={deployment_id}",
        "--filter",
        "label=dev.slipway.revision",
    ).split()
    return container


def probe_from(mine: Agent, theirs: Agent) -> dict[str, Any]:
    """What a process in `mine`'s replica reaches of its own and of `theirs`' services."""
    result = subprocess.run(
        [
            DOCKER,
            "exec",
            "-i",
            live_replica(mine.id),
            "python",
            "-",
            ip_of(redis_container(mine.id)),
            redis_container(theirs.id),
            ip_of(redis_container(theirs.id)),
            database_identifier(theirs.id),
        ],
        input=PROBE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_two_langgraph_deployments_reach_only_their_own_redis_and_database(
    agents: AgentFactory,
) -> None:
    left, right = agents("left"), agents("right")

    for mine, theirs in ((left, right), (right, left)):
        found = probe_from(mine, theirs)
        # Its own Redis answers with its password, and only with it; its own database too.
        assert found["own_redis_with_password"] is True
        assert "Authentication" in found["own_redis_without_password"], found
        assert found["own_redis_by_ip"] == "connected"
        assert found["own_database"] == database_identifier(mine.id)
        # The other's Redis: its name does not resolve here and its address is not reached.
        assert found["other_redis_by_name"].startswith("gaierror"), found
        assert found["other_redis_by_ip"] != "connected", found
        # The other's database refuses this deployment's role, though the cluster is reached.
        assert found["other_database"] != "connected", found
        assert database_identifier(mine.id) in found["other_database"], found


# -- a pull request's preview -------------------------------------------------------------------
def container_state(name: str) -> dict[str, Any] | None:
    """`docker inspect` of a container, or None when there is none of that name."""
    result = subprocess.run(
        [DOCKER, "inspect", name], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        assert "no such" in result.stderr.lower(), result.stderr
        return None
    return dict(json.loads(result.stdout)[0])


async def thread_exists(platform: RunningPlatform, slug: str, thread_id: str) -> bool:
    try:
        await sdk(platform, slug).threads.get(thread_id)
    except NotFoundError:
        return False
    return True


def test_a_langgraph_preview_has_its_own_database_and_redis(
    agents: AgentFactory, github: FakeGitHub, langgraph_platform: RunningPlatform
) -> None:
    platform = langgraph_platform
    production = agents("left")
    _, production_thread, _ = asyncio.run(first_conversation(platform, production.slug))
    prs = PullRequests(platform, github, production.repo, production.repository)

    head = prs.open(1, langgraph_app("preview: "))
    preview = prs.preview(1)
    revision = prs.settled(1, head)
    assert revision["state"] == "live", (revision["error"], platform.logs(revision["id"]))
    assert preview["type"] == "development"

    # Its own threads: production's is unknown there, its own is unknown to production.
    assert not asyncio.run(thread_exists(platform, preview["slug"], production_thread))
    _, preview_thread, result = asyncio.run(first_conversation(platform, preview["slug"]))
    assert result["text"] == "preview: hello"
    assert not asyncio.run(thread_exists(platform, production.slug, preview_thread))
    # Its own Redis, on its own network, while the pull request is open.
    redis = container_state(redis_container(preview["id"]))
    assert redis is not None and redis["State"]["Running"]
    assert redis["HostConfig"]["NetworkMode"] == f"slipway-net-{preview['id']}"
    production_redis = container_state(redis_container(production.id))
    assert production_redis is not None and production_redis["Id"] != redis["Id"]
    uri = platform.database_uri(preview["id"])
    assert connects(uri)

    # Closed: its Redis and database are gone; production's thread and Redis stay.
    prs.close(1)
    prs.send("closed", 1)
    wait_for(
        "the preview's Redis to be removed",
        lambda: container_state(redis_container(preview["id"])) is None,
        60,
    )
    wait_for("the preview's database to be dropped", lambda: not connects(uri), 60)
    assert asyncio.run(thread_exists(platform, production.slug, production_thread))
    production_redis_after = container_state(redis_container(production.id))
    assert production_redis_after is not None
    assert production_redis_after["Id"] == production_redis["Id"]
    assert production_redis_after["State"]["Running"]


# -- the rest of the API a langgraph-sdk user relies on ------------------------------------------
STREAM_SECONDS = 3.0
"""The streamed run's node sleeps this long between its first event and its last."""
BIG_INPUT = "x" * (1024 * 1024)
"""1 MiB of text: the router and the server take it and give it back whole."""


async def stream_events(
    platform: RunningPlatform, slug: str, text: str
) -> list[tuple[str, Any, float]]:
    """A run streamed over SSE in the values and updates modes: (event, data, seconds since
    the stream was asked for) in the order the client received them."""
    client = sdk(platform, slug)
    thread = await client.threads.create()
    started = time.monotonic()
    return [
        (part.event, part.data, time.monotonic() - started)
        async for part in client.runs.stream(
            thread["thread_id"],
            "agent",
            input={"text": text, "seconds": STREAM_SECONDS},
            stream_mode=["values", "updates"],
        )
    ]


async def store_round_trip(platform: RunningPlatform, slug: str) -> tuple[Any, Any]:
    client = sdk(platform, slug)
    await client.store.put_item(["notes", "e2e"], key="first", value={"text": "kept"})
    await client.store.put_item(["notes", "e2e"], key="second", value={"text": "also kept"})
    item = await client.store.get_item(["notes", "e2e"], key="first")
    found = await client.store.search_items(["notes"])
    return item, found


async def cancel_a_running_run(platform: RunningPlatform, slug: str) -> tuple[Any, ...]:
    """A background run whose node sleeps a minute, cancelled once running: (its status before
    and after, seconds the cancel took, the answer of a run on the same thread after)."""
    client = sdk(platform, slug)
    thread_id = (await client.threads.create())["thread_id"]
    run = await client.runs.create(thread_id, "agent", input={"text": "long", "seconds": 60})
    deadline = time.monotonic() + 60
    while (before := (await client.runs.get(thread_id, run["run_id"]))["status"]) == "pending":
        assert time.monotonic() < deadline, "the background run never started"
        await asyncio.sleep(0.2)
    asked = time.monotonic()
    await client.runs.cancel(thread_id, run["run_id"], wait=True)
    took = time.monotonic() - asked
    after = (await client.runs.get(thread_id, run["run_id"]))["status"]
    # The thread keeps the cancelled run's input (its `seconds` too): the next run sets both.
    again = await client.runs.wait(thread_id, "agent", input={"text": "after", "seconds": 0})
    return before, after, took, again


def test_a_langgraph_deployment_streams_stores_cancels_and_takes_a_large_input(
    agents: AgentFactory, langgraph_platform: RunningPlatform
) -> None:
    """Through the router, with the official client, on the production (pg) runtime."""
    platform = langgraph_platform
    agent = agents("left")

    # SSE: the events in order, the last with the final value, each as it happened: the first
    # arrives while the node still sleeps (the router does not hold the stream back).
    events = asyncio.run(stream_events(platform, agent.slug, "streamed"))
    assert [(event, data) for event, data, _ in events[1:]] == [
        ("values", {"text": "streamed", "seconds": STREAM_SECONDS}),
        ("updates", {"answer": {"text": "left: streamed"}}),
        ("values", {"text": "left: streamed", "seconds": STREAM_SECONDS}),
    ], events
    assert events[0][0] == "metadata" and events[0][1]["run_id"], events
    first_value, last_value = events[1][2], events[-1][2]
    assert last_value - first_value > STREAM_SECONDS / 2, events

    # The store: an item put is read back, and found by its namespace's prefix.
    item, found = asyncio.run(store_round_trip(platform, agent.slug))
    assert (item["namespace"], item["key"], item["value"]) == (
        ["notes", "e2e"],
        "first",
        {"text": "kept"},
    )
    assert sorted((i["key"], i["value"]["text"]) for i in found["items"]) == [
        ("first", "kept"),
        ("second", "also kept"),
    ]

    # Cancel: the running run ends interrupted, long before its minute, and the thread goes on.
    before, after, took, again = asyncio.run(cancel_a_running_run(platform, agent.slug))
    assert (before, after) == ("running", "interrupted")
    assert took < 30, took
    assert again == {"text": "left: after", "seconds": 0}

    # 1 MiB in, the same 1 MiB (after the prefix) out.
    asked = time.monotonic()
    assert asyncio.run(answer(platform, agent.slug, BIG_INPUT)) == {"text": "left: " + BIG_INPUT}
    print(
        f"\nstream: first value at {first_value:.2f} s, last at {last_value:.2f} s; "
        f"cancel took {took:.2f} s; 1 MiB round trip {time.monotonic() - asked:.2f} s"
    )


# -- a platform restart (last: the module's platform is restarted in place) ------------------
async def talk_on(platform: RunningPlatform, slug: str, thread_id: str, text: str) -> Any:
    return await sdk(platform, slug).runs.wait(thread_id, "agent", input={"text": text})


@pytest.mark.timeout(900)
def test_a_thread_and_its_history_survive_a_platform_restart(
    agents: AgentFactory, langgraph_platform: RunningPlatform
) -> None:
    platform = langgraph_platform
    agent = agents("left")
    _, thread_id, result = asyncio.run(first_conversation(platform, agent.slug))
    assert result["text"] == "left: hello"
    values, history = asyncio.run(thread_state(platform, agent.slug, thread_id))
    assert values == {"text": "left: hello"}

    # The whole platform stops (its Postgres, queue and router with it) and starts again on
    # the same data directory and ports.
    platform.restart()

    def state_again() -> Any:
        try:
            return asyncio.run(thread_state(platform, agent.slug, thread_id))
        except Exception:  # the router, the replica or its database not back yet
            return None

    values_after, history_after = wait_for(
        "the thread through the router after the restart", state_again, 120, every=0.5
    )
    assert values_after == values
    assert [h["checkpoint"] for h in history_after] == [h["checkpoint"] for h in history]
    # And the thread goes on: a new run on it is served and adds to its history.
    again = asyncio.run(talk_on(platform, agent.slug, thread_id, "again"))
    assert again["text"] == "left: again"
    _, history_longer = asyncio.run(thread_state(platform, agent.slug, thread_id))
    assert len(history_longer) > len(history)


def test_a_run_is_a_trace_in_the_project_named_as_the_deployment_and_a_users_false_wins(
    agents: AgentFactory,
    langgraph_platform: RunningPlatform,
    langsmith: FakeLangSmith,
    github: FakeGitHub,
) -> None:
    platform = langgraph_platform
    agent = agents("traced")
    view = wait_for(
        "the deployment's tracing project",
        lambda: (v := platform.api(f"/api/deployments/{agent.id}"))["tracing"]["project_url"] and v,
        30,
    )
    assert view["tracing"]["project"] == agent.slug
    assert view["tracing"]["studio_url"] == (
        f"{langsmith.url}/studio/?baseUrl=http://{agent.slug}.localhost:{platform.router_port}/"
    )
    [project] = [p for p in langsmith.projects.values() if p.name == agent.slug]
    assert project.created_by_api  # made by Slipway before any run

    asked = time.monotonic()
    assert asyncio.run(answer(platform, agent.slug, "hello"))["text"] == "traced: hello"
    traces = wait_for("the run's trace", lambda: langsmith.traces_in(agent.slug) or None, 60)
    latency = time.monotonic() - asked
    ingest = {path for _, path in langsmith.requests if path.startswith("/runs")}
    print(f"\nfirst trace after {latency:.1f} s, sent to {sorted(ingest)}")
    assert any("hello" in json.dumps(t.get("inputs")) for t in traces), traces

    # The user turns tracing off: their value wins, and runs leave no trace.
    changed = platform.call(
        "PATCH", f"/api/deployments/{agent.id}/env", json={"set": {"LANGSMITH_TRACING": "false"}}
    )
    assert changed.status_code == 202, changed.text
    revision = platform.wait_state(changed.json()["revision"]["id"], {"live", "failed"}, 300)
    assert revision["state"] == "live", revision["error"]
    runs = len(langsmith.runs_in(agent.slug))
    assert asyncio.run(answer(platform, agent.slug, "quiet"))["text"] == "traced: quiet"
    # Nothing arrives for several times as long as the first trace took (bounded, polled).
    deadline = time.monotonic() + max(15.0, 3 * latency)
    while time.monotonic() < deadline:
        assert len(langsmith.runs_in(agent.slug)) == runs, "a run was traced despite false"
        time.sleep(0.5)

    # The key is in no output: the API, the build logs, the check runs, the platform's log, and
    # no container of the deployment but its replicas.
    shown = json.dumps(
        [
            platform.api("/api/deployments"),
            platform.api(f"/api/deployments/{agent.id}/env"),
            platform.logs(agent.revision["id"]),
            platform.logs(revision["id"]),
            [vars(run) for run in github.check_runs(agent.repository["full_name"])],
        ],
        default=str,
    )
    assert LANGSMITH_KEY not in shown
    assert LANGSMITH_KEY not in platform.log_path.read_text()
    containers = docker_out(
        "ps", "-q", "--filter", f"label=dev.slipway.deployment={agent.id}"
    ).split()
    holding = [
        name
        for name, env in (
            docker_out("inspect", "-f", "{{.Name}} {{json .Config.Env}}", c).split(" ", 1)
            for c in containers
        )
        if LANGSMITH_KEY in env
    ]
    assert holding and all("-holder" not in n and "redis" not in n for n in holding), holding
    langsmith.assert_no_errors()


CRON_DEADLINE_SECONDS = 120.0
"""What a user may expect of an every-minute cron: a run within two minutes of making it (the
schedule's next minute, plus the scheduler's 5 s poll and the run itself)."""


async def scheduled_runs(platform: RunningPlatform, slug: str, text: str) -> tuple[Any, ...]:
    """Make an every-minute cron on a new thread with langgraph-sdk, as a user does, and wait
    for a run of it to finish: (runs, thread state, seconds waited). The cron is deleted after."""
    client = sdk(platform, slug)
    thread = await client.threads.create()
    thread_id = thread["thread_id"]
    cron = await client.crons.create_for_thread(
        thread_id, "agent", schedule="* * * * *", input={"text": text}
    )
    started = time.monotonic()
    try:
        while True:
            runs = await client.runs.list(thread_id)
            if any(run["status"] in ("success", "error", "interrupted") for run in runs):
                break
            if time.monotonic() - started > CRON_DEADLINE_SECONDS:
                return runs, None, time.monotonic() - started
            await asyncio.sleep(1)
        state = await client.threads.get_state(thread_id)
        return runs, state, time.monotonic() - started
    finally:
        await client.crons.delete(cron["cron_id"])


def test_a_cron_made_with_the_sdk_runs_its_graph_on_schedule(
    agents: AgentFactory, langgraph_platform: RunningPlatform
) -> None:
    """A production deployment (pg runtime): langgraph-api 0.11.1 stored the cron run's user
    object as JSON and every scheduled run failed in the server; the image's entry fixes it."""
    platform = langgraph_platform
    agent = agents("left")
    runs, state, waited = asyncio.run(scheduled_runs(platform, agent.slug, "tick"))

    def server_log() -> str:
        return subprocess.run(
            [DOCKER, "logs", "--tail", "60", replica_of(agent.revision["id"])],
            capture_output=True,
            text=True,
            check=False,
        ).stderr[-4000:]

    assert state is not None, (f"no cron run after {waited:.0f} s", runs, server_log())
    [run] = runs
    assert run["status"] == "success", (run, server_log())
    assert state["values"] == {"text": "left: tick"}
