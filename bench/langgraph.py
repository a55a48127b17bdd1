"""LangGraph: a repository's first build and a one-line graph change, from the push to live.

Run with `make bench-langgraph` or `.venv/bin/python -m bench.langgraph [--first N] [--changes M]`.

One `slipway up` with a fake GitHub (`bench.push_to_live.warmed_up`) whose LangGraph builds
use the tests' local base image (`slipway-test/python-pip:3.11`) and the cached wheelhouse, served
as a package index on the docker bridge (`tests/support/wheelhouse.py`): wheels are local, nothing
comes from the internet. The repository is `tests.support.apps.langgraph_app`: one graph that
answers PREFIX + its input.

* **first build**: N times, a new repository is connected and pushed: a new production
  deployment, its first build with no image layer of its own in BuildKit's cache (a
  `dockerfile_lines` entry unique to the iteration comes before the pip installs, so
  langgraph-api, the runtime and the requirements are installed again from the local index),
  a new database and Redis, the server's migrations. Timed from the push POST to the first 200
  of /ok through the router (which answers 404 for the new host until the route exists). The
  deployment is deleted afterwards (not timed).
* **graph change**: M times, one line of the graph (`PREFIX = ...`) changes on one deployment
  and is pushed; timed from the POST to the revision's `live_at` (stamped once the router sends
  the host to the new, healthy replica: /ok answers 200 before and after, so it cannot show the
  switch).

After each, a stateless run (`POST /runs/wait`, what `langgraph-sdk`'s `runs.wait` sends)
through the router, repeated until it answers with the new prefix, shows the new graph is what
users get; it is its own row, not part of the whole path (for a few seconds after a switch the
old replica's queue worker may still take a run, as docs/langgraph.md says).

The floor is the same generated Dockerfile done by hand, interleaved with Slipway's iterations:
the generator Slipway uses (`manifests.recipes.plan_build` with the platform's LangGraph
settings) writes it for a copy of the commit with the same kind of change, then `docker build`
(the pip settings as the same BuildKit secret), `docker run` confined like a replica on a bench
network with a database and a Redis of its own (made before the clock starts: the first-build
floor gets an empty database per iteration, so the server migrates it as on Slipway), and
polling of `/ok` on the published port every 20 ms until the first 200.

Everything talks to 127.0.0.1 and containers this bench started; all of it is removed at the
end (BuildKit's cache stays).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import redis
from arq.constants import result_key_prefix

from app.adapters.postgres import PostgresProvisioner
from app.kernel.orders import revision_job_id
from bench.push_to_live import (
    ACCOUNT,
    BRANCH_REF,
    BUILDKIT_ENV,
    CONFINED_RUN,
    DEPLOYMENT_LABEL,
    FLOOR_IMAGE,
    FLOOR_NETWORK,
    FLOOR_PORT,
    INSTALLATION_ID,
    POLL_SECONDS,
    REDACT,
    TARGET_RATIO,
    BenchError,
    BenchRun,
    Deadline,
    Row,
    Samples,
    deployment_containers,
    describe_machine,
    docker,
    first_answer,
    log,
    router_host,
    router_url,
    timestamp,
    wall,
    warmed_up,
)
from builders.valkey_image import ValkeyImage
from manifests.config import load_repository_config
from manifests.containers import CONTAINER_HOST_ALIAS, REDIS_PORT
from manifests.langgraph_image import HEALTH_PATH, PIP_SECRET_ID, LangGraphBuild, PipIndex
from manifests.recipes import BuildTarget, default_recipes, plan_build
from tests.support.apps import langgraph_app
from tests.support.fake_github.payloads import ZERO_SHA, installation_payload, push_payload
from tests.support.git_repos import GitRepo
from tests.support.images import DOCKER, ensure_python_image, ensure_python_pip_image
from tests.support.platform import RunningPlatform, start_langgraph_platform, wait_for
from tests.support.wheelhouse import WheelIndex, ensure_wheelhouse, serve_wheelhouse

DEFAULT_FIRST = 3
MAX_FIRST = 10
DEFAULT_CHANGES = 5
MAX_CHANGES = 30
DEFAULT_DEADLINE_SECONDS = 600.0
"""Per iteration (one side of it): a first build installs ~90 wheels on 2 loaded cores."""
SETTLE_SECONDS = 0.5
"""After a revision's job has finished, before the next measurement."""
FLOOR_REDIS = "bench-floor-langgraph-redis"
"""The floor servers' Redis, on the floor network (no password: nothing else reaches it)."""
FLOOR_CONNECTION_LIMIT = 50
"""As a production deployment's role."""
LIVE_POLL_SECONDS = 0.1
"""How often a graph change's revision is read from the API until it is live: often enough
that the run after it starts within 0.1 s, rarely enough to keep the API's share of the two
cores small while the new replica starts (the whole path is timed by `live_at`, not by this)."""
RUNS_WAIT_PATH = "runs/wait"
RUN_TIMEOUT_SECONDS = 10.0
BUILD_MARK = "SLIPWAY_BENCH_BUILD"
"""The `dockerfile_lines` ENV that makes each first build miss BuildKit's layer cache: its
value names the run and the iteration, never seen by BuildKit before (its cache outlives runs)."""

ROWS = {
    "first": (
        Row("first_whole", "first build: push -> new repository served (via router)"),
        Row("first_queue", "  pickup + queue (POST -> build started)"),
        Row("first_build", "  build (build started -> finished)"),
        Row("first_database", "  database (deploy started -> database ready)"),
        Row("first_replica", "  Redis + start (database ready -> replica started)"),
        Row("first_healthy", "  healthy (replica started -> /ok answers)"),
        Row("first_routed", "  routed + seen (healthy -> first 200 via router)"),
        Row("first_run", "then: first run answered via router (after /ok)"),
        Row("first_floor_whole", "floor: docker build + run -> /ok"),
        Row("first_floor_build", "  docker build (no layer cached)"),
        Row("first_floor_run", "  docker run -d + docker port"),
        Row("first_floor_ok", "  first /ok on the published port"),
    ),
    "change": (
        Row("change_whole", "graph change: push -> live (router on the new replica)"),
        Row("change_queue", "  pickup + queue (POST -> build started)"),
        Row("change_build", "  build (build started -> finished)"),
        Row("change_database", "  database (deploy started -> database ready)"),
        Row("change_replica", "  Redis + start (database ready -> replica started)"),
        Row("change_healthy", "  healthy (replica started -> /ok answers)"),
        Row("change_routed", "  routed (healthy -> live)"),
        Row("change_run", "then: first run with the new prefix via router (after live)"),
        Row("change_floor_whole", "floor: docker build + run -> /ok"),
        Row("change_floor_build", "  docker build (pip layers cached)"),
        Row("change_floor_run", "  docker run -d + docker port"),
        Row("change_floor_ok", "  first /ok on the published port"),
    ),
}
PHASES = (
    ("database", "deploy_started_at", "database_ready_at"),
    ("replica", "database_ready_at", "replica_started_at"),
    ("healthy", "replica_started_at", "healthy_at"),
)


@dataclass
class LangGraphBench:
    """The platform side: one long-lived deployment for the changes, repositories made so far."""

    run: BenchRun
    index: WheelIndex
    build: LangGraphBuild
    provisioner: PostgresProvisioner
    made: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    agent: Agent | None = None
    floor_redis_uri: str = ""
    change_database_uri: str = field(default="", repr=False)

    @property
    def platform(self) -> RunningPlatform:
        return self.run.bench.platform


@dataclass
class Agent:
    repo: GitRepo
    repository: dict[str, Any]
    deployment_id: str
    slug: str
    head: str
    revision_id: str


# -- the platform side ------------------------------------------------------------------------
def connect(bench: LangGraphBench, files: dict[str, str | bytes]) -> tuple[GitRepo, dict[str, Any]]:
    """A new repository with one commit, connected to the App (not timed)."""
    bench.made += 1
    name = f"agent-{bench.made}"
    github = bench.run.bench.github
    repo = GitRepo(bench.run.work / "repos" / name)
    repo.commit(files, "first commit")
    repository = github.add_repository(INSTALLATION_ID, ACCOUNT, name, repo.path)
    payload = installation_payload(
        "created", INSTALLATION_ID, ACCOUNT, [repository], app_id=github.app_id
    )
    response = bench.platform.send("installation", payload)
    if response.status_code != 202:
        raise BenchError(f"installation webhook answered {response.status_code}: {response.text}")
    return repo, repository


def first_run(
    client: httpx.Client,
    platform: RunningPlatform,
    slug: str,
    expected: str,
    deadline: Deadline,
) -> float:
    """perf_counter() when a stateless run through the router first answers `expected`; what
    the runs before it answered goes to the progress log."""
    url = router_url(platform) + RUNS_WAIT_PATH
    headers = {"Host": router_host(platform, slug)}
    body = {"assistant_id": "agent", "input": {"text": "bench"}}
    answers: dict[str, int] = {}
    started = time.perf_counter()
    while True:
        try:
            response = client.post(url, json=body, headers=headers, timeout=RUN_TIMEOUT_SECONDS)
            answer = f"{response.status_code} {response.text[:80]}"
            if response.status_code == 200 and response.json().get("text") == expected + "bench":
                if answers:
                    log(
                        f"  runs before the new prefix, in {time.perf_counter() - started:.1f} s:"
                        f" {answers}"
                    )
                return time.perf_counter()
        except (httpx.HTTPError, ValueError) as exc:
            answer = type(exc).__name__
        answers[answer] = answers.get(answer, 0) + 1
        if deadline.at - time.perf_counter() <= 0:
            raise BenchError(f"no run answered {expected!r} through the router: {answers}")
        time.sleep(POLL_SECONDS)


def push(
    bench: LangGraphBench,
    key: str,
    repo: GitRepo,
    repository: dict[str, Any],
    before: str,
    prefix: str,
    samples: Samples | None,
    client: httpx.Client,
    deadline_seconds: float,
) -> Agent:
    """Push the repository's head; time it to live, then to a run answering with `prefix`."""
    platform = bench.platform
    sha = repo.head
    first = before == ZERO_SHA
    payload = push_payload(repository, INSTALLATION_ID, BRANCH_REF, before, sha, created=first)
    deadline = Deadline(deadline_seconds, f"{key}: the push of {sha[:7]} to go live")
    wall_sent = time.time()
    sent = time.perf_counter()
    response = platform.send("push", payload)
    if response.status_code != 202:
        raise BenchError(f"push webhook answered {response.status_code}: {response.text}")
    deployment = platform.deployment_of(repository["full_name"], timeout=deadline.remaining())
    revision_id = platform.revision_for(deployment["id"], sha, timeout=deadline.remaining())["id"]

    def revision_now() -> dict[str, Any]:
        revision = dict(platform.api(f"/api/revisions/{revision_id}"))
        if revision["state"] in {"failed", "cancelled", "superseded"}:
            logs = platform.logs(revision_id)[-3000:]
            raise BenchError(REDACT(f"{key}: {revision['state']}: {revision['error']}\n{logs}"))
        return revision

    def failed_yet() -> None:
        revision_now()

    def live() -> dict[str, Any] | None:
        revision = revision_now()
        return revision if revision["state"] == "live" else None

    if first:  # a new host: the router answers 404 until the route to the replica exists
        seen = first_answer(
            client,
            router_url(platform) + HEALTH_PATH.lstrip("/"),
            {"Host": router_host(platform, deployment["slug"])},
            "",
            deadline,
            failed_yet,
        )
        revision = wait_for("the revision to be live", live, deadline.remaining(), every=0.05)
        live_seconds = seen - sent
    else:  # /ok answers all along: the platform's own live_at says when the route switched
        revision = wait_for(
            "the revision to be live", live, deadline.remaining(), every=LIVE_POLL_SECONDS
        )
        live_seconds = (timestamp(revision, "live_at") - wall(wall_sent)).total_seconds()
    answered = first_run(client, platform, deployment["slug"], prefix, deadline)
    if samples is not None:
        samples.add(f"{key}_whole", live_seconds)
        build_started = timestamp(revision, "build_started_at")
        samples.add(f"{key}_queue", (build_started - wall(wall_sent)).total_seconds())
        build = timestamp(revision, "build_finished_at") - build_started
        samples.add(f"{key}_build", build.total_seconds())
        for name, start, end in PHASES:
            seconds = timestamp(revision, end) - timestamp(revision, start)
            samples.add(f"{key}_{name}", seconds.total_seconds())
        healthy = timestamp(revision, "healthy_at") - wall(wall_sent)
        samples.add(f"{key}_routed", live_seconds - healthy.total_seconds())
        samples.add(f"{key}_run", answered - sent - live_seconds)
    # The worker goes on after live (retiring the old replica, reports, pruning images): let
    # its job finish and the old replica go before anything else is timed.
    result_key = result_key_prefix + revision_job_id(revision["id"])
    with redis.Redis.from_url(bench.run.bench.redis_url) as queue:
        wait_for(
            f"the job of revision {revision['id']} to finish",
            lambda: bool(queue.exists(result_key)),
            timeout=deadline.remaining(),
            every=0.05,
        )
    wait_for(
        "one replica, nothing else",
        lambda: len(deployment_containers(deployment["id"], apps_only=True)) == 1,
        timeout=deadline.remaining(),
        every=0.1,
    )
    time.sleep(SETTLE_SECONDS)
    return Agent(repo, repository, deployment["id"], deployment["slug"], sha, revision["id"])


def first_build(
    bench: LangGraphBench,
    index: int | str,
    samples: Samples | None,
    client: httpx.Client,
    deadline_seconds: float,
) -> None:
    """A new repository's first build → live, then the deployment is deleted (not timed)."""
    prefix = f"first-{bench.run_id}-{index}: "
    files = langgraph_app(
        prefix, dockerfile_lines=(f"ENV {BUILD_MARK}={bench.run_id}-slipway-{index}",)
    )
    repo, repository = connect(bench, files)
    agent = push(
        bench,
        "first",
        repo,
        repository,
        ZERO_SHA,
        prefix,
        samples,
        client,
        deadline_seconds,
    )
    delete(bench.platform, agent, deadline_seconds)


def delete(platform: RunningPlatform, agent: Agent, deadline_seconds: float) -> None:
    response = platform.call(
        "DELETE", f"/api/deployments/{agent.deployment_id}", json={"confirm": agent.slug}
    )
    if response.status_code != 202:
        raise BenchError(f"the deletion of {agent.slug} was refused: {response.text}")
    wait_for(
        f"{agent.slug} to be deleted",
        lambda: platform.api(f"/api/deployments/{agent.deployment_id}")["status"] == "deleted",
        timeout=deadline_seconds,
        every=0.2,
    )
    label = f"label={DEPLOYMENT_LABEL}={agent.deployment_id}"
    wait_for(
        f"no container or image of {agent.slug}",
        lambda: (
            not deployment_containers(agent.deployment_id)
            and not docker("images", "-q", "--filter", label)
        ),
        timeout=deadline_seconds,
        every=0.2,
    )


def graph_change(
    bench: LangGraphBench,
    index: int | str,
    samples: Samples | None,
    client: httpx.Client,
    deadline_seconds: float,
) -> None:
    """One line of the deployment's graph changes (its PREFIX), pushed, timed until served."""
    agent = bench.agent
    assert agent is not None
    prefix = f"change-{bench.run_id}-{index}: "
    agent.repo.commit({"agent.py": langgraph_app(prefix)["agent.py"]}, f"prefix {prefix}")
    bench.agent = push(
        bench,
        "change",
        agent.repo,
        agent.repository,
        agent.head,
        prefix,
        samples,
        client,
        deadline_seconds,
    )


# -- the floor: the same generated Dockerfile by hand -----------------------------------------
def floor_database(bench: LangGraphBench, name: str) -> str:
    """An empty database and role of that name in the platform's cluster, as a container
    reaches it (made before the clock starts; the URI is never printed)."""
    password = secrets.token_urlsafe(24)
    REDACT.secrets.append(password)
    bench.provisioner.ensure(name, name, password, connection_limit=FLOOR_CONNECTION_LIMIT)
    return bench.provisioner.container_uri(name, name, password)


def start_floor_redis(bench: LangGraphBench) -> None:
    image = ValkeyImage(DOCKER).redis()
    bench.run.floor_containers.append(FLOOR_REDIS)
    docker(
        "run",
        "-d",
        "--name",
        FLOOR_REDIS,
        "--network",
        FLOOR_NETWORK,
        image,
        "valkey-server",
        "--port",
        str(REDIS_PORT),
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    )
    bench.floor_redis_uri = f"redis://{FLOOR_REDIS}:{REDIS_PORT}/0"


def floor(
    bench: LangGraphBench,
    key: str,
    index: int | str,
    samples: Samples | None,
    client: httpx.Client,
    deadline_seconds: float,
) -> None:
    """Generate the Dockerfile for a copy of the commit with the iteration's change, then
    docker build + docker run (confined) + poll /ok."""
    work = bench.run.work / "floor" / f"{key}-{index}"
    source = work / "src"
    prefix = f"floor-{key}-{bench.run_id}-{index}: "
    lines = (f"ENV {BUILD_MARK}={bench.run_id}-floor-{index}",) if key == "first" else ()
    files = langgraph_app(prefix, dockerfile_lines=lines)
    if key == "change":
        assert bench.agent is not None
        shutil.copytree(bench.agent.repo.path, source, ignore=shutil.ignore_patterns(".git"))
        files = {"agent.py": files["agent.py"]}
    for name, content in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(str(content))
    plan = plan_build(
        source,
        load_repository_config(source),
        BuildTarget(work_dir=work, production=True),
        default_recipes(bench.build),
    )
    secret_args = [
        arg for id_, path in plan.secrets.items() for arg in ("--secret", f"id={id_},src={path}")
    ]
    if [*plan.secrets] != [PIP_SECRET_ID]:
        raise BenchError(f"the floor's plan has secrets {sorted(plan.secrets)}, not the pip one")
    if key == "first":
        database_uri = floor_database(bench, f"bench_floor_first_{index}")
    else:
        database_uri = bench.change_database_uri
    tag = f"{FLOOR_IMAGE}:langgraph-{key}-{index}"
    deadline = Deadline(deadline_seconds, f"floor {key} {index}")

    started = time.perf_counter()
    docker(
        "build",
        "-t",
        tag,
        "-f",
        str(plan.dockerfile),
        *secret_args,
        str(plan.context_dir),
        env=BUILDKIT_ENV,
        timeout=deadline.remaining(),
    )
    built = time.perf_counter()
    container = docker(
        "run",
        "-d",
        "-p",
        f"127.0.0.1::{FLOOR_PORT}",
        "-e",
        f"PORT={FLOOR_PORT}",
        "-e",
        "DATABASE_URI",  # values from this environment, not the argument list
        "-e",
        "REDIS_URI",
        "--add-host",
        f"{CONTAINER_HOST_ALIAS}:host-gateway",
        *CONFINED_RUN,
        tag,
        env={**BUILDKIT_ENV, "DATABASE_URI": database_uri, "REDIS_URI": bench.floor_redis_uri},
        timeout=deadline.remaining(),
    )
    bench.run.floor_containers.append(container)
    published = docker("port", container, f"{FLOOR_PORT}/tcp").splitlines()[0]
    host_port = int(published.rsplit(":", 1)[1])
    running = time.perf_counter()

    def still_running() -> None:
        if docker("inspect", "-f", "{{.State.Running}}", container) != "true":
            output = docker("logs", "--tail", "30", container)
            raise BenchError(REDACT(f"floor container {key} {index} exited:\n{output}"))

    answered = first_answer(
        client, f"http://127.0.0.1:{host_port}{HEALTH_PATH}", {}, "", deadline, still_running
    )
    docker("rm", "-f", container)
    bench.run.floor_containers.remove(container)
    if key == "first":  # layers of its own, as the deleted deployment's image had
        docker("rmi", "-f", tag)
        bench.provisioner.drop(f"bench_floor_first_{index}", f"bench_floor_first_{index}")
    if samples is not None:
        samples.add(f"{key}_floor_build", built - started)
        samples.add(f"{key}_floor_run", running - built)
        samples.add(f"{key}_floor_ok", answered - running)
        samples.add(f"{key}_floor_whole", answered - started)


# -- the report -------------------------------------------------------------------------------
def report(samples: Samples, machine: Sequence[str]) -> str:
    lines = [*machine, ""]
    rows = [row for group in ROWS.values() for row in group]
    width = max(len(row.label) for row in rows) + 2
    header = f"{'phase':<{width}}{'n':>5}{'median ms':>12}{'p99 ms':>10}"
    lines += [header, "-" * len(header)]
    for row in rows:
        if samples.count(row.key) == 0:
            continue
        lines.append(
            f"{row.label:<{width}}{samples.count(row.key):>5}"
            f"{samples.median_ms(row.key):>12.1f}{samples.p99_ms(row.key):>10.1f}"
        )
    lines.append("-" * len(header))
    lines += ["p99: nearest rank (with fewer than 100 samples it is the maximum)", ""]
    for key, what in (("first", "first build"), ("change", "graph change")):
        if not samples.count(f"{key}_whole"):
            continue
        whole = samples.median_ms(f"{key}_whole")
        floor_whole = samples.median_ms(f"{key}_floor_whole")
        ratio = whole / floor_whole
        lines.append(
            f"ratio {what} / floor (medians): {whole:.0f} / {floor_whole:.0f} ms = {ratio:.2f}x"
            f" -> target <= {TARGET_RATIO}x: " + ("met" if ratio <= TARGET_RATIO else "NOT met")
        )
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------
def langgraph_build(index: WheelIndex) -> LangGraphBuild:
    """What the platform's settings make of tests.support.platform.start_langgraph_platform's values
    (app.kernel.settings.Settings.langgraph_build), for the floor's generated Dockerfile."""
    return LangGraphBuild(
        base_image=ensure_python_pip_image(),
        runtime="pg",
        pip=PipIndex(index_url=index.url, trusted_host=index.trusted_host),
    )


def run(first: int, changes: int, deadline_seconds: float) -> str:
    log("making sure the base images and the wheelhouse exist")
    ensure_python_image()
    ensure_python_pip_image()
    wheelhouse = ensure_wheelhouse()
    machine = describe_machine()
    samples = Samples()
    with (
        serve_wheelhouse(wheelhouse) as index,
        warmed_up(
            "slipway-bench-langgraph-",
            deadline_seconds,
            confined_floor=True,
            start=partial(start_langgraph_platform, index=index),
        ) as run,
    ):
        platform = run.bench.platform
        bench = LangGraphBench(
            run=run,
            index=index,
            build=langgraph_build(index),
            provisioner=PostgresProvisioner(platform.postgres_admin_url(), CONTAINER_HOST_ALIAS),
        )
        with httpx.Client(trust_env=False) as client:
            log("warm-up: a LangGraph deployment for the graph changes")
            repo, repository = connect(bench, langgraph_app("change-0: "))
            bench.agent = push(
                bench,
                "change",
                repo,
                repository,
                ZERO_SHA,
                "change-0: ",
                None,
                client,
                2 * deadline_seconds,
            )
            run.deployment_ids.append(bench.agent.deployment_id)
            log("warm-up: the floor's Redis and database, one floor run")
            start_floor_redis(bench)
            bench.change_database_uri = floor_database(bench, "bench_floor_change")
            floor(bench, "change", "warmup", None, client, 2 * deadline_seconds)
            for number in range(1, first + 1):
                log(f"first build {number}/{first}: slipway")
                first_build(bench, number, samples, client, deadline_seconds)
                log(f"first build {number}/{first}: floor")
                floor(bench, "first", number, samples, client, deadline_seconds)
                log(f"  ms: {samples.last(['first_whole', 'first_floor_whole'])}")
            for number in range(1, changes + 1):
                log(f"graph change {number}/{changes}: slipway")
                graph_change(bench, number, samples, client, deadline_seconds)
                log(f"graph change {number}/{changes}: floor")
                floor(bench, "change", number, samples, client, deadline_seconds)
                log(f"  ms: {samples.last(['change_whole', 'change_floor_whole'])}")
        machine = [
            *machine,
            f"wheels: {sum(1 for _ in wheelhouse.glob('*.whl'))} from {index.url} "
            "(tests/support/wheelhouse.py, on the docker bridge)",
            "floor: the generated Dockerfile built by hand, confined like a replica, "
            "own database and Redis",
        ]
        return report(samples, machine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.langgraph",
        description="Time a LangGraph repository's first build and a one-line graph change, "
        "from the push to live, against the same generated Dockerfile built and run by hand.",
    )
    parser.add_argument(
        "--first",
        type=int,
        default=DEFAULT_FIRST,
        help=f"first builds of new repositories (default {DEFAULT_FIRST}, at most {MAX_FIRST})",
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=DEFAULT_CHANGES,
        help=f"one-line graph changes (default {DEFAULT_CHANGES}, at most {MAX_CHANGES})",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_SECONDS,
        help=f"seconds allowed per iteration (default {DEFAULT_DEADLINE_SECONDS:.0f})",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.first <= MAX_FIRST:
        parser.error(f"--first must be between 0 and {MAX_FIRST}")
    if not 0 <= args.changes <= MAX_CHANGES:
        parser.error(f"--changes must be between 0 and {MAX_CHANGES}")
    if args.first + args.changes == 0:
        parser.error("nothing to time: --first and --changes are both 0")
    if not 30 <= args.deadline <= 3600:
        parser.error("--deadline must be between 30 and 3600 seconds")
    try:
        print(run(args.first, args.changes, args.deadline), flush=True)
    except (BenchError, AssertionError) as exc:  # AssertionError: the harness's waits
        print(f"bench failed: {REDACT(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
