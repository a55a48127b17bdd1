"""Push to live: how long a one-line change takes from GitHub's webhook to the new version.

Run with `make bench` or `.venv/bin/python -m bench.push_to_live [--iterations N]`.

One `slipway up` (the e2e harness in tests/support/platform.py) with a fake GitHub, in a temporary
directory. One repository (tests.support.apps.notes_app: a Python app that uses its Postgres
database) is connected and deployed once as a warm-up, so the base image is present and BuildKit's
cache is warm. Then, N times, a commit changes the VERSION file and the signed push webhook is sent:

* webhook answered: client-side time from sending the POST to the 202 (also measured on M
  sequential signed `ping` deliveries, for a better distribution);
* the revision's own timestamps split the path into queue, build, database, start (the replica
  is running), healthy (it answers HTTP) and routed;
* whole path: from just before the POST to the first HTTP 200 through the router (Caddy, with a
  Host header) whose body shows the new VERSION, polled every 20 ms.

The floor is the same work by hand, in the same run, interleaved with Slipway's iterations:
`DOCKER_BUILDKIT=1 docker build` of a copy of the work tree with the same one-line change,
`docker run -d -p 127.0.0.1::8000` against the deployment's own database, then polling the
published port until the first HTTP 200.

Everything talks to 127.0.0.1 and to containers this bench started. At the end the platform is
stopped and the containers and images it made (label dev.slipway.deployment=<id>) and the
bench-floor images are removed; BuildKit's cache stays.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import redis
from arq.constants import result_key_prefix

from app.adapters.docker import DockerRuntime
from app.kernel.names import database_identifier
from app.kernel.orders import revision_job_id
from manifests.containers import DEPLOYMENT_LABEL, REVISION_LABEL
from tests.support.apps import notes_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import (
    ZERO_SHA,
    installation_payload,
    ping_payload,
    push_payload,
)
from tests.support.git_repos import GitRepo
from tests.support.images import DOCKER, ensure_python_image
from tests.support.platform import (
    RunningPlatform,
    remove_docker_objects,
    start_platform,
    wait_for,
)

INSTALLATION_ID = 4242
ACCOUNT = "bench-org"
REPOSITORY = "notes"
BRANCH_REF = "refs/heads/main"

DEFAULT_ITERATIONS = 10
MAX_ITERATIONS = 100
DEFAULT_PINGS = 200
MAX_PINGS = 1000
DEFAULT_DEADLINE_SECONDS = 180.0
"""Per iteration (one push to live, or one floor run); the warm-up gets twice as long."""
PINGS_DEADLINE_SECONDS = 120.0
"""For all the pings together."""
POLL_SECONDS = 0.02
"""Between two probes of the router or of the floor's published port."""
PROBE_TIMEOUT_SECONDS = 2.0
STATE_CHECK_SECONDS = 1.0
"""While polling, how often to look whether the deploy failed (so it fails fast, not at the
deadline)."""
SETTLE_SECONDS = 0.3
"""After the worker's job for a revision has finished, before the next measurement."""

FLOOR_IMAGE = "bench-floor"
FLOOR_NETWORK = "bench-floor-net"
CONFINED_RUN = (
    "--network",
    FLOOR_NETWORK,
    "--init",
    "--cpus",
    "2",
    "--memory",
    str(2 * 1024**3),
    "--memory-swap",
    str(2 * 1024**3),
    "--pids-limit",
    "1024",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--log-driver",
    "json-file",
    "--log-opt",
    "max-size=10m",
    "--log-opt",
    "max-file=3",
)
"""What Slipway's create call sets for a production replica (app/adapters/docker.py
replica_options), as the flags of a `docker run` by hand."""
FLOOR_PORT = 8000
BUILDKIT_ENV = {**os.environ, "DOCKER_BUILDKIT": "1"}

TARGET_RATIO = 1.5
TARGET_WEBHOOK_MS = 50.0
TARGET_TOLD_RATIO = 1.15
"""success at GitHub against (floor + the tarball's two round trips), with GitHub far away."""


class BenchError(RuntimeError):
    """Something the bench needs did not happen: a deploy failed, a deadline passed."""


class Deadline:
    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.at = time.perf_counter() + seconds

    def remaining(self) -> float:
        """Seconds left; raises BenchError once the deadline has passed."""
        left = self.at - time.perf_counter()
        if left <= 0:
            raise BenchError(f"{self.what}: not done within {self.seconds:.0f} s")
        return left


class Redactor:
    """Keeps the database password out of anything the bench prints."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


REDACT = Redactor()


# -- the rows of the table --------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    key: str
    label: str


SLIPWAY_ROWS = (
    Row("push_answered", "webhook answered: push (POST -> 202)"),
    Row("ping_answered", "webhook answered: ping (POST -> 202)"),
    Row("pickup", "delivery picked up (POST -> revision created)"),
    Row("queue", "queue (created -> build started)"),
    Row("build", "build (build started -> finished)"),
    Row("start", "database+start+healthy (deploy started -> healthy)"),
    Row("database", "  database (deploy started -> database ready)"),
    Row("replica", "  start (database ready -> replica started)"),
    Row("healthy", "  healthy (replica started -> healthy)"),
    Row("routed", "routed (healthy -> live)"),
    Row("seen", "seen (live -> first new 200 via router)"),
    Row("whole", "whole path (POST -> first new 200 via router)"),
    Row("success", "GitHub told: POST -> deployment status success at GitHub"),
)
FLOOR_ROWS = (
    Row("floor_build", "build (docker build, cached)"),
    Row("floor_run", "run (docker run -d + docker port)"),
    Row("floor_first", "first 200 (on the published port)"),
    Row("floor_whole", "whole (build -> first 200)"),
)


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.values.setdefault(key, []).append(seconds)

    def median_ms(self, key: str) -> float:
        return statistics.median(self.values[key]) * 1000

    def p99_ms(self, key: str) -> float:
        """Nearest-rank 99th percentile: with fewer than 100 samples, the maximum."""
        ordered = sorted(self.values[key])
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1000

    def count(self, key: str) -> int:
        return len(self.values.get(key, []))

    def last(self, keys: Sequence[str]) -> str:
        """The latest sample of each key, in ms, for the progress log."""
        return ", ".join(f"{key} {self.values[key][-1] * 1000:.0f}" for key in keys)


# -- small helpers ----------------------------------------------------------------------------
def docker(*args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"docker {args[0]} took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        raise BenchError(REDACT(f"docker {args[0]} failed: {result.stderr.strip()[-1500:]}"))
    return result.stdout.strip()


def timestamp(revision: dict[str, Any], key: str) -> datetime:
    value = revision.get(key)
    if not value:
        raise BenchError(f"revision {revision['id']} has no {key}")
    return datetime.fromisoformat(str(value))


def wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def first_answer(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    expected_prefix: str,
    deadline: Deadline,
    check: Callable[[], None],
) -> float:
    """perf_counter() at the first HTTP 200 whose body starts with expected_prefix.

    Every probe opens a new connection (Connection: close), as a new visitor would; `check`
    runs about once a second and raises when waiting longer is pointless.
    """
    next_check = time.perf_counter() + STATE_CHECK_SECONDS
    probe_headers = {**headers, "Connection": "close"}
    while True:
        try:
            response = client.get(url, headers=probe_headers, timeout=PROBE_TIMEOUT_SECONDS)
            if response.status_code == 200 and response.text.startswith(expected_prefix):
                return time.perf_counter()
        except httpx.HTTPError:
            pass
        now = time.perf_counter()
        if now >= next_check:
            check()
            next_check = now + STATE_CHECK_SECONDS
        deadline.remaining()
        time.sleep(POLL_SECONDS)


def describe_machine() -> list[str]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    server = docker("version", "--format", "{{.Server.Version}}")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    git = subprocess.run(
        [
            "git",
            "-C",
            str(Path(__file__).resolve().parent.parent),
            "describe",
            "--always",
            "--dirty",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC",
        f"machine: nproc {nproc}, CPU {cpu}, memory {mem_kib / 1024**2:.1f} GiB, "
        f"load average at start {load}",
        f"docker: server {server}, client {DOCKER} with DOCKER_BUILDKIT=1",
        f"python: {sys.version.split()[0]}; slipway checkout: {git or 'unknown'}",
    ]


# -- the platform side ------------------------------------------------------------------------
@dataclass
class Connected:
    platform: RunningPlatform
    github: FakeGitHub
    repo: GitRepo
    repository: dict[str, Any]
    deployment_id: str
    slug: str
    head: str
    live_revision_id: str
    build_method: str
    redis_url: str
    database_uri: str = field(repr=False)


def connect_and_warm_up(
    platform: RunningPlatform, github: FakeGitHub, work: Path, deadline_seconds: float
) -> Connected:
    """Connect one repository, deploy notes_app("v0") and wait until the router serves it."""
    repo = GitRepo(work / "repos" / REPOSITORY)
    first = repo.commit(notes_app("v0"), "first commit")
    repository = github.add_repository(INSTALLATION_ID, ACCOUNT, REPOSITORY, repo.path)
    response = platform.send(
        "installation",
        installation_payload(
            "created", INSTALLATION_ID, ACCOUNT, [repository], app_id=github.app_id
        ),
    )
    if response.status_code != 202:
        raise BenchError(f"installation webhook answered {response.status_code}: {response.text}")
    response = platform.send(
        "push",
        push_payload(repository, INSTALLATION_ID, BRANCH_REF, ZERO_SHA, first, created=True),
    )
    if response.status_code != 202:
        raise BenchError(f"push webhook answered {response.status_code}: {response.text}")
    timeout = 2 * deadline_seconds
    deployment = platform.deployment_of(repository["full_name"], timeout=timeout)
    revision = platform.revision_for(deployment["id"], first, timeout=timeout)
    revision = platform.wait_state(revision["id"], {"live", "failed", "cancelled"}, timeout=timeout)
    if revision["state"] != "live":
        raise BenchError(f"the warm-up deploy ended {revision['state']}: {revision['error']}")
    connected = Connected(
        platform=platform,
        github=github,
        repo=repo,
        repository=repository,
        deployment_id=deployment["id"],
        slug=deployment["slug"],
        head=first,
        live_revision_id=revision["id"],
        build_method=str(revision.get("build_method") or "unknown"),
        redis_url=redis_url(platform),
        database_uri=database_uri(platform, deployment["id"]),
    )
    with httpx.Client(trust_env=False) as client:
        first_answer(
            client,
            router_url(platform),
            {"Host": router_host(platform, connected.slug)},
            "version=v0 ",
            Deadline(deadline_seconds, "the warm-up revision to answer through the router"),
            lambda: None,
        )
    return connected


def create_floor_network(name: str, work: Path) -> None:
    """Made as Slipway makes a deployment's network: a subnet of the platform's pool (the
    cluster's pg_hba admits only that pool; the engine's own next pool may be elsewhere) and
    quick ACKs on its route, so the floor runs on the same kind of network as a replica."""
    DockerRuntime(DOCKER, work / "floor-runtime").ensure_network(name, {})


def database_uri(platform: RunningPlatform, deployment_id: str) -> str:
    """The deployment's own database, as a container reaches it (never printed)."""
    password = platform.database_password(deployment_id)
    REDACT.secrets.append(password)
    REDACT.secrets.append(quote(password, safe=""))
    identifier = database_identifier(deployment_id)
    port = int((platform.data_dir / "postgres" / "port").read_text().strip())
    return (
        f"postgresql://{identifier}:{quote(password, safe='')}"
        f"@host.docker.internal:{port}/{identifier}"
    )


def redis_url(platform: RunningPlatform) -> str:
    """The platform's embedded job queue (arq on Valkey), to see when a job has finished."""
    port = int((platform.data_dir / "redis" / "port").read_text().strip())
    password = quote((platform.data_dir / "redis" / "password").read_text().strip(), safe="")
    return f"redis://:{password}@127.0.0.1:{port}/0"


def router_url(platform: RunningPlatform) -> str:
    return f"http://127.0.0.1:{platform.router_port}/"


def router_host(platform: RunningPlatform, slug: str) -> str:
    return f"{slug}.localhost:{platform.router_port}"


def deployment_containers(deployment_id: str, *, apps_only: bool = False) -> list[str]:
    """Everything of the deployment's on the engine, or only its replicas' apps (not their
    holders, the network's spare holder or its Redis)."""
    filters = ["--filter", f"label={DEPLOYMENT_LABEL}={deployment_id}"]
    if apps_only:
        filters += ["--filter", f"label={REVISION_LABEL}"]
    return docker("ps", "-aq", *filters).split()


def push_to_live(
    bench: Connected, index: int, samples: Samples, client: httpx.Client, deadline_seconds: float
) -> None:
    """One one-line change, pushed, timed until the router serves it."""
    platform = bench.platform
    version = f"bench-{index}"
    before = bench.head
    sha = bench.repo.commit({"VERSION": version + "\n"}, f"Bench: version {version}")
    body = json.dumps(
        push_payload(
            bench.repository,
            INSTALLATION_ID,
            BRANCH_REF,
            before,
            sha,
            message=f"Bench: version {version}",
            modified=["VERSION"],
        )
    ).encode()
    deadline = Deadline(deadline_seconds, f"push {index} to go live")

    def failed_yet() -> None:
        for revision in platform.api(f"/api/deployments/{bench.deployment_id}/revisions"):
            if revision["commit_sha"] == sha and revision["state"] in {"failed", "cancelled"}:
                raise BenchError(f"push {index} ended {revision['state']}: {revision['error']}")

    calls_at_send = len(bench.github.requests)
    wall_sent = time.time()
    sent = time.perf_counter()
    response = platform.send("push", body=body)
    answered = time.perf_counter()
    if response.status_code != 202:
        raise BenchError(f"push webhook answered {response.status_code}: {response.text}")
    seen = first_answer(
        client,
        router_url(platform),
        {"Host": router_host(platform, bench.slug)},
        f"version={version} ",
        deadline,
        failed_yet,
    )
    calls_at_seen = len(bench.github.requests)
    success_at = wait_for(
        f"GitHub to hear that push {index} is live",
        lambda: success_received(bench, sha),
        timeout=deadline.remaining(),
        every=0.01,
    )
    revision = platform.revision_for(bench.deployment_id, sha, timeout=deadline.remaining())
    revision = platform.wait_state(
        revision["id"], {"live", "failed", "cancelled", "superseded"}, deadline.remaining()
    )
    if revision["state"] != "live":
        raise BenchError(f"push {index} ended {revision['state']}: {revision['error']}")

    created = timestamp(revision, "created_at")
    build_started = timestamp(revision, "build_started_at")
    build_finished = timestamp(revision, "build_finished_at")
    deploy_started = timestamp(revision, "deploy_started_at")
    database_ready = timestamp(revision, "database_ready_at")
    replica_started = timestamp(revision, "replica_started_at")
    healthy = timestamp(revision, "healthy_at")
    live = timestamp(revision, "live_at")
    samples.add("push_answered", answered - sent)
    samples.add("pickup", (created - wall(wall_sent)).total_seconds())
    samples.add("queue", (build_started - created).total_seconds())
    samples.add("build", (build_finished - build_started).total_seconds())
    samples.add("start", (healthy - deploy_started).total_seconds())
    samples.add("database", (database_ready - deploy_started).total_seconds())
    samples.add("replica", (replica_started - database_ready).total_seconds())
    samples.add("healthy", (healthy - replica_started).total_seconds())
    samples.add("routed", (live - healthy).total_seconds())
    samples.add("seen", (wall(wall_sent + (seen - sent)) - live).total_seconds())
    samples.add("whole", seen - sent)
    # Recorded as it reached the fake, which then holds its answer for the whole latency:
    # half of it is the way there on a real network.
    samples.add("success", success_at + bench.github.latency_seconds / 2 - sent)

    previous = bench.live_revision_id
    bench.head = sha
    bench.live_revision_id = revision["id"]
    # The worker goes on after live (retiring the previous replica, reporting to GitHub,
    # pruning old images): let its job finish before anything else is timed.
    result_key = result_key_prefix + revision_job_id(revision["id"])
    with redis.Redis.from_url(bench.redis_url) as queue:
        wait_for(
            f"the job of revision {revision['id']} to finish",
            lambda: bool(queue.exists(result_key)),
            timeout=deadline.remaining(),
            every=0.05,
        )
    if platform.api(f"/api/revisions/{previous}")["state"] != "superseded":
        raise BenchError(f"revision {previous} was not superseded by push {index}")
    if len(deployment_containers(bench.deployment_id, apps_only=True)) != 1:
        raise BenchError(f"after push {index} the deployment does not have exactly 1 replica")
    github_calls = len(bench.github.requests)
    samples.add("github_before_seen", float(calls_at_seen - calls_at_send))
    samples.add("github_per_push", float(github_calls - calls_at_send))
    time.sleep(SETTLE_SECONDS)


def success_received(bench: Connected, sha: str) -> float | None:
    """perf_counter() when the `success` status of the commit's deployment reached GitHub."""
    for deployment in bench.github.deployments(bench.repository["full_name"]):
        if deployment.sha == sha:
            for state, at in deployment.received:
                if state == "success":
                    return at
    return None


# -- the floor: the same by hand --------------------------------------------------------------
def floor(
    bench: Connected,
    index: int | str,
    samples: Samples | None,
    client: httpx.Client,
    work: Path,
    deadline_seconds: float,
    started_containers: list[str],
    confined: bool = False,
) -> None:
    """docker build + docker run + poll, on the work tree with the same one-line change.

    `confined`: the run gets what Slipway gives every replica (its own network, no
    capabilities, no new privileges, limits, rotated logs), for a like-with-like floor.

    The VERSION value is one neither Slipway nor an earlier floor run has built, so both sides
    do the same work: BuildKit reuses the base layers and re-runs the COPY of the change.
    """
    source = work / "floor" / str(index)
    shutil.copytree(bench.repo.path, source, ignore=shutil.ignore_patterns(".git"))
    version = f"floor-{index}"
    (source / "VERSION").write_text(version + "\n")
    tag = f"{FLOOR_IMAGE}:{index}"
    deadline = Deadline(deadline_seconds, f"floor {index}")

    started = time.perf_counter()
    docker("build", "-t", tag, str(source), env=BUILDKIT_ENV, timeout=deadline.remaining())
    built = time.perf_counter()
    container = docker(
        "run",
        "-d",
        "-p",
        f"127.0.0.1::{FLOOR_PORT}",
        "-e",
        f"PORT={FLOOR_PORT}",
        "-e",
        "DATABASE_URI",  # its value comes from this environment, not the argument list
        "--add-host",
        "host.docker.internal:host-gateway",
        # On a network of the pool, where a replica runs: the default bridge is held to the
        # builds' rules by the network policy, which refuse the database cluster.
        *(CONFINED_RUN if confined else ("--network", FLOOR_NETWORK)),
        tag,
        env={**os.environ, "DATABASE_URI": bench.database_uri},
        timeout=deadline.remaining(),
    )
    started_containers.append(container)
    published = docker("port", container, f"{FLOOR_PORT}/tcp").splitlines()[0]
    host_port = int(published.rsplit(":", 1)[1])
    running = time.perf_counter()

    def still_running() -> None:
        if docker("inspect", "-f", "{{.State.Running}}", container) != "true":
            output = docker("logs", "--tail", "20", container)
            raise BenchError(REDACT(f"floor container {index} exited:\n{output}"))

    answered = first_answer(
        client, f"http://127.0.0.1:{host_port}/", {}, f"version={version} ", deadline, still_running
    )
    docker("rm", "-f", container)
    started_containers.remove(container)
    if samples is not None:
        samples.add("floor_build", built - started)
        samples.add("floor_run", running - built)
        samples.add("floor_first", answered - running)
        samples.add("floor_whole", answered - started)
        samples.add("floor_start", answered - built)


# -- webhook latency --------------------------------------------------------------------------
def pings(platform: RunningPlatform, github: FakeGitHub, count: int, samples: Samples) -> None:
    """Sequential signed ping deliveries, each with its own delivery id."""
    body = json.dumps(ping_payload(app_id=github.app_id)).encode()
    run = uuid.uuid4().hex[:8]
    deadline = Deadline(PINGS_DEADLINE_SECONDS, f"{count} pings")
    for number in range(count):
        deadline.remaining()
        sent = time.perf_counter()
        response = platform.send("ping", body=body, delivery_id=f"bench-{run}-ping-{number}")
        answered = time.perf_counter()
        if response.status_code != 202:
            raise BenchError(f"ping {number} answered {response.status_code}: {response.text}")
        samples.add("ping_answered", answered - sent)


# -- the report -------------------------------------------------------------------------------
def report(samples: Samples, machine: Sequence[str], build_method: str) -> str:
    lines = [*machine, f"slipway build method: {build_method}", ""]
    width = max(len(row.label) for row in (*SLIPWAY_ROWS, *FLOOR_ROWS)) + 2
    header = f"{'phase':<{width}}{'n':>5}{'median ms':>12}{'p99 ms':>10}"
    lines += [header, "-" * len(header)]
    for title, rows in (("Slipway", SLIPWAY_ROWS), ("floor (docker by hand)", FLOOR_ROWS)):
        lines.append(title)
        for row in rows:
            if samples.count(row.key) == 0:
                continue
            lines.append(
                f"  {row.label:<{width - 2}}{samples.count(row.key):>5}"
                f"{samples.median_ms(row.key):>12.1f}{samples.p99_ms(row.key):>10.1f}"
            )
    lines.append("-" * len(header))
    lines.append("p99: nearest rank (with fewer than 100 samples it is the maximum)")
    if samples.count("github_per_push"):
        lines.append(
            "GitHub API requests per push (median): "
            f"{statistics.median(samples.values['github_before_seen']):.0f} before the new "
            f"version answered, {statistics.median(samples.values['github_per_push']):.0f} in all"
        )
    whole, floor_whole = samples.median_ms("whole"), samples.median_ms("floor_whole")
    ratio = whole / floor_whole
    latency_ms = samples.median_ms("latency") if samples.count("latency") else 0.0
    told = ""
    if samples.count("success"):
        with_tarball = floor_whole + 2 * latency_ms
        told_ratio = samples.median_ms("success") / with_tarball
        verdict = "met" if told_ratio <= TARGET_TOLD_RATIO else "NOT met"
        target = (
            f"target {TARGET_TOLD_RATIO}x: {verdict}"
            if latency_ms
            else f"the {TARGET_TOLD_RATIO}x target is for GitHub far away: --github-latency"
        )
        told = (
            f"\nratio GitHub told success / (floor whole + the tarball's two round trips): "
            f"{samples.median_ms('success'):.0f} / {with_tarball:.0f} ms = "
            f"{told_ratio:.2f}x ({target})"
        )
    lines += [
        "",
        f"ratio Slipway whole path / floor whole (medians): {whole:.0f} / {floor_whole:.0f} ms"
        f" = {ratio:.2f}x{told}",
        "",
        "where Slipway's extra time goes (differences of medians, ms):",
    ]
    before_build = samples.median_ms("pickup") + samples.median_ms("queue")
    build = samples.median_ms("build") - samples.median_ms("floor_build")
    start = samples.median_ms("start") - (
        samples.median_ms("floor_run") + samples.median_ms("floor_first")
    )
    after = samples.median_ms("routed") + samples.median_ms("seen")
    parts = [
        ("before the build: picked up + queue (no floor step)", before_build),
        ("build - floor build", build),
        ("database+start+healthy - (floor run + first 200)", start),
        ("after healthy: routed + seen (no floor step)", after),
    ]
    label_width = max(len(label) for label, _ in parts) + 2
    lines += [f"  {label:<{label_width}}{value:>+9.0f}" for label, value in parts]
    lines += [
        f"  {'sum of the above':<{label_width}}{sum(v for _, v in parts):>+9.0f}",
        f"  {'whole path - floor whole':<{label_width}}{whole - floor_whole:>+9.0f}",
        "",
    ]
    webhook_keys = [k for k in ("push_answered", "ping_answered") if samples.count(k)]
    webhook_median = max(samples.median_ms(k) for k in webhook_keys)
    webhook_p99 = max(samples.p99_ms(k) for k in webhook_keys)
    if latency_ms:
        # The build waits for the tarball's API call, which the floor does not make: the
        # whole-path target is for runs without latency, this run's target is the one above.
        whole_path_target = (
            f"target whole path <= {TARGET_RATIO}x floor: for runs without GitHub latency "
            f"(this one adds {latency_ms:.0f} ms to each GitHub call; see the ratio above)"
        )
    else:
        whole_path_target = (
            f"target whole path <= {TARGET_RATIO}x floor: {ratio:.2f}x -> "
            f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}"
        )
    lines += [
        whole_path_target,
        f"target webhook answered well under {TARGET_WEBHOOK_MS:.0f} ms: worst median "
        f"{webhook_median:.1f} ms, worst p99 {webhook_p99:.1f} ms -> "
        f"{'met' if webhook_p99 < TARGET_WEBHOOK_MS else 'NOT met'}",
    ]
    return "\n".join(lines)


# -- cleanup ----------------------------------------------------------------------------------
def remove_floor(floor_containers: Sequence[str]) -> None:
    """The floor's containers and image (the deployments' go with remove_docker_objects)."""
    if floor_containers:
        docker("rm", "-f", *floor_containers)
    floor_tags = docker("images", FLOOR_IMAGE, "--format", "{{.Repository}}:{{.Tag}}").split()
    if floor_tags:
        docker("rmi", "-f", *floor_tags)


def clean_up(
    platform: RunningPlatform | None,
    github: FakeGitHub,
    deployment_ids: Sequence[str],
    floor_containers: Sequence[str],
    confined_floor: bool,
    logs_to: Path | None,
) -> None:
    """Stop the platform and remove what a bench run made (BuildKit's cache stays)."""
    log("cleaning up")
    ids = set(deployment_ids)
    if platform is not None:
        if logs_to is not None:
            keep_logs(platform, logs_to)
        with contextlib.suppress(httpx.HTTPError):
            ids |= {d["id"] for d in platform.api("/api/deployments")}
        platform.stop()
    github.stop()
    remove_docker_objects(sorted(ids))
    remove_floor(floor_containers)
    with contextlib.suppress(BenchError):
        docker("network", "rm", FLOOR_NETWORK)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- main -------------------------------------------------------------------------------------
def keep_logs(platform: RunningPlatform, destination: Path) -> None:
    """The platform's log and the revisions' build logs, for a closer look after the run."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(platform.log_path, destination / "platform.log")
    if (platform.data_dir / "logs").is_dir():
        shutil.copytree(platform.data_dir / "logs", destination / "revisions", dirs_exist_ok=True)


@dataclass
class BenchRun:
    """One bench's platform with its warmed-up repository, and what to remove at the end."""

    bench: Connected
    work: Path
    deployment_ids: list[str] = field(default_factory=list)
    floor_containers: list[str] = field(default_factory=list)


@contextlib.contextmanager
def warmed_up(
    prefix: str,
    deadline_seconds: float,
    *,
    confined_floor: bool,
    logs_to: Path | None = None,
    start: Callable[[Path, FakeGitHub], RunningPlatform] = start_platform,
) -> Iterator[BenchRun]:
    """`slipway up` with a fake GitHub and notes_app("v0") live; everything it and the bench
    made is removed afterwards, whatever happened (BuildKit's cache stays).

    `start` starts the platform in a data directory (a bench that needs settings passes its
    own, e.g. tests.support.platform.start_langgraph_platform with the wheel index).
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        github = FakeGitHub(app_id=31337, app_slug="slipway-bench")
        github.start()
        github.add_installation(INSTALLATION_ID, ACCOUNT)
        platform: RunningPlatform | None = None
        deployment_ids: list[str] = []
        floor_containers: list[str] = []
        try:
            log("starting slipway up")
            platform = start(work / "platform", github)
            log("warm-up: connecting the repository and deploying v0")
            bench = connect_and_warm_up(platform, github, work, deadline_seconds)
            deployment_ids.append(bench.deployment_id)
            create_floor_network(FLOOR_NETWORK, work)
            yield BenchRun(bench, work, deployment_ids, floor_containers)
        finally:
            github.latency_seconds = 0
            clean_up(platform, github, deployment_ids, floor_containers, confined_floor, logs_to)


def run(
    iterations: int,
    ping_count: int,
    deadline_seconds: float,
    logs_to: Path | None = None,
    github_latency: float = 0.0,
    confined_floor: bool = False,
) -> str:
    log("making sure the base image exists")
    ensure_python_image()
    machine = describe_machine()
    samples = Samples()
    with warmed_up(
        "slipway-bench-", deadline_seconds, confined_floor=confined_floor, logs_to=logs_to
    ) as run:
        bench, platform, github = run.bench, run.bench.platform, run.bench.github
        github.latency_seconds = github_latency
        samples.add("latency", github_latency)
        with httpx.Client(trust_env=False) as client:
            log("warm-up: one floor run")
            floor(
                bench,
                "warmup",
                None,
                client,
                run.work,
                deadline_seconds,
                run.floor_containers,
                confined_floor,
            )
            for index in range(1, iterations + 1):
                log(f"iteration {index}/{iterations}: push to live")
                push_to_live(bench, index, samples, client, deadline_seconds)
                log(f"iteration {index}/{iterations}: floor")
                floor(
                    bench,
                    index,
                    samples,
                    client,
                    run.work,
                    deadline_seconds,
                    run.floor_containers,
                    confined_floor,
                )
                log(f"  slipway ms: {samples.last([row.key for row in SLIPWAY_ROWS[2:]])}")
                log(f"  floor ms: {samples.last([row.key for row in FLOOR_ROWS])}")
        if ping_count:
            log(f"{ping_count} pings")
            pings(platform, github, ping_count, samples)
        machine = [
            *machine,
            f"fake GitHub latency per API call: {github_latency * 1000:.0f} ms",
            "floor: " + ("confined like a replica" if confined_floor else "plain docker run"),
        ]
        return report(samples, machine, bench.build_method)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.push_to_live",
        description="Time a one-line change from the push webhook to the new version live, "
        "against the same work done by hand with docker.",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"pushes to time, and floor runs (default {DEFAULT_ITERATIONS}, "
        f"at most {MAX_ITERATIONS})",
    )
    parser.add_argument(
        "--pings",
        type=int,
        default=DEFAULT_PINGS,
        help=f"extra signed ping deliveries to time (default {DEFAULT_PINGS}, at most {MAX_PINGS})",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_SECONDS,
        help=f"seconds allowed per iteration (default {DEFAULT_DEADLINE_SECONDS:.0f})",
    )
    parser.add_argument(
        "--confined-floor",
        action="store_true",
        help="run the floor's container with the confinement Slipway gives replicas",
    )
    parser.add_argument(
        "--github-latency",
        type=float,
        default=0.0,
        help="seconds the fake GitHub waits before each answer (real GitHub: 0.1-0.3; default 0)",
    )
    parser.add_argument(
        "--keep-logs",
        type=Path,
        metavar="DIR",
        help="copy the platform's log and the build logs to DIR before cleaning up",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.iterations <= MAX_ITERATIONS:
        parser.error(f"--iterations must be between 1 and {MAX_ITERATIONS}")
    if not 0 <= args.pings <= MAX_PINGS:
        parser.error(f"--pings must be between 0 and {MAX_PINGS}")
    if not 0 <= args.github_latency <= 2:
        parser.error("--github-latency must be between 0 and 2 seconds")
    if not 10 <= args.deadline <= 3600:
        parser.error("--deadline must be between 10 and 3600 seconds")
    try:
        print(
            run(
                args.iterations,
                args.pings,
                args.deadline,
                args.keep_logs,
                args.github_latency,
                args.confined_floor,
            ),
            flush=True,
        )
    except (BenchError, AssertionError) as exc:  # AssertionError: the harness's waits
        print(f"bench failed: {REDACT(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
