"""Replicas: what the router costs, and how fast a burst gets extra replicas serving.

Run with `make bench-replicas` or `.venv/bin/python -m bench.replicas [--bursts N]`.

One `slipway up` with a fake GitHub and one production deployment of tests.support.apps.slow_app (a
threaded Python server whose answers take ?ms= milliseconds), with the reconciler ticking every
second and windows of seconds (the defaults are minutes). Then:

1. Router overhead: `hey` at the same fixed rate (10 workers x 10 requests/s, 10 s, twice each,
   alternating) through Caddy with the deployment's Host, and straight at the replica's
   endpoint (its address on its network, what Caddy dials); median and p99 of each. Target:
   p50 <= 1.2x and p99 <= 1.5x direct. For reference, the same load at a container of the same
   image run by hand with its port published (`docker run -p`, through the engine's relay).
   Then through Caddy and direct again with answers that take WORK_MS ms, where the router's
   milliseconds meet an app that does some work, as a user's does.
2. Burst to serving: N times, 35 requests in flight of 300 ms each start at once; timed until 4
   replicas carry requests in the router (Caddy's own in-flight counts), against the floor of a
   replica's start by hand (`docker run` of the same image, confined like a replica, until its
   first 200). Target: floor + 2 s. Between bursts the deployment comes back to one replica.

Everything talks to 127.0.0.1 and containers this bench started; all of it is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from app.server.embedded import free_port
from bench.push_to_live import (
    ACCOUNT,
    CONFINED_RUN,
    FLOOR_NETWORK,
    INSTALLATION_ID,
    BenchError,
    Deadline,
    create_floor_network,
    describe_machine,
    docker,
    first_answer,
    log,
)
from tests.support.apps import slow_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import installation_payload, push_payload
from tests.support.git_repos import GitRepo
from tests.support.images import ensure_python_image
from tests.support.load import Load, start_load
from tests.support.platform import RunningPlatform, remove_docker_objects, start_platform, wait_for

DEFAULT_BURSTS = 3
MAX_BURSTS = 10
BURST_REPLICAS = 4
"""35 in flight at a target of 10 per replica."""
OVERHEAD_SECONDS = 10
WORK_MS = 10
"""The second overhead pair's answer time: a small API call with a query behind it."""
ZERO_SHA = "0" * 40
NETWORK = "bench-replicas-floor-net"
"""Its own, so it can run beside the other benches."""
FLOOR_RUN = tuple(NETWORK if arg == FLOOR_NETWORK else arg for arg in CONFINED_RUN)
BY_HAND = "slipway-bench-by-hand"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=DEFAULT_BURSTS)
    parser.add_argument(
        "--router-threads",
        type=int,
        default=None,
        help="SLIPWAY_ROUTER_THREADS for the platform (default: the platform's own)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.bursts <= MAX_BURSTS:
        parser.error(f"--bursts must be between 1 and {MAX_BURSTS}")
    try:
        print(run(args.bursts, args.router_threads))
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    return 0


def run(bursts: int, router_threads: int | None = None) -> str:
    ensure_python_image()
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="slipway-bench-replicas-") as tmp:
        work = Path(tmp)
        github = FakeGitHub(app_id=31337, app_slug="slipway-bench")
        github.start()
        github.add_installation(INSTALLATION_ID, ACCOUNT)
        platform: RunningPlatform | None = None
        deployment_ids: list[str] = []
        floor_containers: list[str] = []
        try:
            log("starting slipway up (1 s ticks, 6 s stable window, 5 s scale-down delay)")
            platform = start_platform(
                work / "platform",
                github,
                autoscale_tick_seconds="1",
                autoscale_stable_window_seconds="6",
                autoscale_panic_window_seconds="3",
                autoscale_scale_down_delay_seconds="5",
                **({} if router_threads is None else {"router_threads": str(router_threads)}),
            )
            deployment = deploy(platform, github, work)
            deployment_ids.append(deployment["id"])
            create_floor_network(NETWORK, work)
            overhead = router_overhead(platform, deployment, floor_containers)
            floors, serving = [], []
            for index in range(1, bursts + 1):
                floors.append(floor_start(image_of(platform, deployment), index, floor_containers))
                serving.append(burst_to_serving(platform, deployment))
                log(f"burst {index}: {serving[-1]:.2f} s to 4 serving (floor {floors[-1]:.2f} s)")
                back_to_one(platform, deployment)
        finally:
            for container in floor_containers:
                with contextlib.suppress(BenchError):
                    docker("rm", "-f", container)
            with contextlib.suppress(BenchError):
                docker("network", "rm", NETWORK)
            if platform is not None:
                platform.stop()
            remove_docker_objects(deployment_ids)
            github.stop()
    threads = "the platform's default" if router_threads is None else str(router_threads)
    return table([*machine, f"router threads (GOMAXPROCS): {threads}"], overhead, floors, serving)


def deploy(platform: RunningPlatform, github: FakeGitHub, work: Path) -> dict[str, Any]:
    repo = GitRepo(work / "repos" / "busy")
    head = repo.commit(slow_app("one"), "first commit")
    repository = github.add_repository(INSTALLATION_ID, ACCOUNT, "busy", repo.path)
    platform.send(
        "installation",
        installation_payload(
            "created", INSTALLATION_ID, ACCOUNT, [repository], app_id=github.app_id
        ),
    )
    platform.send(
        "push", push_payload(repository, INSTALLATION_ID, "refs/heads/main", ZERO_SHA, head)
    )
    deployment, revision = platform.settle(repository["full_name"], head)
    if revision["state"] != "live":
        raise BenchError(f"the deploy ended {revision['state']}: {revision['error']}")
    return deployment


def host(platform: RunningPlatform, slug: str) -> str:
    return f"{slug}.localhost:{platform.router_port}"


def router_overhead(
    platform: RunningPlatform, deployment: dict[str, Any], containers: list[str]
) -> dict[str, Load]:
    """The same load three ways: through Caddy, at the replica's own endpoint (direct), and
    at a container of the same image run by hand with its port published."""
    [endpoint] = ready_endpoints(platform, deployment["id"])
    replica_address, replica_port = endpoint.rsplit(":", 1)
    by_hand_port = by_hand_container(image_of(platform, deployment), containers)
    routed_host = host(platform, deployment["slug"])

    def at_rate(
        port: int,
        target_host: str,
        address: str = "127.0.0.1",
        seconds: float = OVERHEAD_SECONDS,
        path: str = "/",
    ) -> Load:
        return start_load(
            port,
            target_host,
            path,
            seconds=seconds,
            concurrency=10,
            rate_per_worker=10,
            address=address,
        ).wait()

    log("router overhead: warm-up, then twice 10 s each way at 100 requests/s, twice again")
    at_rate(platform.router_port, routed_host, seconds=2)
    # Alternating, so a slow moment of the machine does not land on one side only.
    runs: dict[str, list[Load]] = {
        "routed": [],
        "direct": [],
        "by_hand": [],
        "routed_work": [],
        "direct_work": [],
    }
    work = f"/?ms={WORK_MS}"
    for _ in range(2):
        runs["direct"].append(at_rate(int(replica_port), "direct", address=replica_address))
        runs["routed"].append(at_rate(platform.router_port, routed_host))
        runs["by_hand"].append(at_rate(by_hand_port, "direct"))
    for _ in range(2):
        runs["direct_work"].append(
            at_rate(int(replica_port), "direct", address=replica_address, path=work)
        )
        runs["routed_work"].append(at_rate(platform.router_port, routed_host, path=work))
    docker("rm", "-f", BY_HAND)
    containers.remove(BY_HAND)
    loads = {name: merged(found) for name, found in runs.items()}
    for name, load in loads.items():
        if load.failed or not load.latency:
            raise BenchError(f"{name} load failed: {load.summary()}")
    return loads


def by_hand_container(image: str, containers: list[str]) -> int:
    """The deployment's image run as one would by hand, confined like a replica, its port
    published on 127.0.0.1; returns the port once it answers."""
    port = free_port()
    docker(
        "run", "-d", "--name", BY_HAND, *FLOOR_RUN, "-p", f"127.0.0.1:{port}:8000",
        "-e", "PORT=8000", image,
    )  # fmt: skip
    containers.append(BY_HAND)
    with httpx.Client(trust_env=False) as client:
        first_answer(
            client,
            f"http://127.0.0.1:{port}/",
            {},
            "version=one ",
            Deadline(60, "the container run by hand"),
            lambda: None,
        )
    return port


def merged(loads: list[Load]) -> Load:
    """Two runs as one: counts added, each percentile the worse of the two (hey reports
    percentiles, not samples, so this errs on the slow side)."""
    first, *rest = loads
    for load in rest:
        for code, count in load.statuses.items():
            first.statuses[code] = first.statuses.get(code, 0) + count
        for message, count in load.errors.items():
            first.errors[message] = first.errors.get(message, 0) + count
        first.latency = {p: max(v, load.latency.get(p, v)) for p, v in first.latency.items()}
    return first


def ready_endpoints(platform: RunningPlatform, deployment_id: str) -> list[str]:
    view = platform.api(f"/api/deployments/{deployment_id}")
    return [r["endpoint"] for r in view["replicas"] if r["state"] == "ready"]


def image_of(platform: RunningPlatform, deployment: dict[str, Any]) -> str:
    revision = platform.api(f"/api/deployments/{deployment['id']}/revisions")[0]
    return str(revision["image"])


def floor_start(image: str, index: int, containers: list[str]) -> float:
    """A replica's start by hand: `docker run` (confined like one) until its first 200."""
    name = f"slipway-bench-floor-replica-{index}"
    port = free_port()
    started = time.perf_counter()
    docker(
        "run",
        "-d",
        "--name",
        name,
        *FLOOR_RUN,
        "-p",
        f"127.0.0.1:{port}:8000",
        "-e",
        "PORT=8000",
        image,
    )
    containers.append(name)
    with httpx.Client(trust_env=False) as client:
        answered = first_answer(
            client,
            f"http://127.0.0.1:{port}/",
            {},
            "version=one ",
            Deadline(60, "the floor replica"),
            lambda: None,
        )
    seconds = answered - started
    docker("rm", "-f", name)
    containers.remove(name)
    return seconds


def burst_to_serving(platform: RunningPlatform, deployment: dict[str, Any]) -> float:
    """From a burst's start until BURST_REPLICAS replicas carry requests in the router."""
    started = time.monotonic()
    load = start_load(
        platform.router_port,
        host(platform, deployment["slug"]),
        "/?ms=300",
        seconds=15,
        concurrency=35,
    )
    try:
        wait_for(
            f"{BURST_REPLICAS} replicas carrying requests",
            lambda: sum(1 for n in platform.in_flight().values() if n > 0) >= BURST_REPLICAS,
            30,
            every=0.05,
        )
        seconds = time.monotonic() - started
    finally:
        load.wait()
    if load.failed:
        raise BenchError(f"the burst had failures: {load.summary()}")
    return seconds


def back_to_one(platform: RunningPlatform, deployment: dict[str, Any]) -> None:
    wait_for(
        "one replica again",
        lambda: len(ready_endpoints(platform, deployment["id"])) == 1,
        60,
        every=0.5,
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def table(
    machine: list[str], overhead: dict[str, Load], floors: list[float], serving: list[float]
) -> str:
    routed, direct, by_hand = overhead["routed"], overhead["direct"], overhead["by_hand"]
    routed_work, direct_work = overhead["routed_work"], overhead["direct_work"]

    def ms(load: Load) -> str:
        return f"{load.latency[50] * 1000:.2f} / {load.latency[99] * 1000:.2f} ms"

    def ratio(load: Load, against: Load) -> str:
        return (
            f"{load.latency[50] / against.latency[50]:.2f}x, "
            f"{load.latency[99] / against.latency[99]:.2f}x"
        )

    def added(load: Load, against: Load) -> str:
        return f"{(load.latency[50] - against.latency[50]) * 1000:+.2f} ms"

    lines = [
        "# Replicas: router overhead and burst to serving",
        "",
        *(f"- {line}" for line in machine),
        "",
        "| measure | median | p99 | against | ratio (median, p99) | added at the median |",
        "|---|---|---|---|---|---|",
        f"| through Caddy, 100 requests/s ({routed.requests} requests) "
        f"| {routed.latency[50] * 1000:.2f} ms | {routed.latency[99] * 1000:.2f} ms "
        f"| direct, the replica's address: {ms(direct)} | {ratio(routed, direct)} "
        f"| {added(routed, direct)} |",
        f"| (for reference) a container run by hand, port published ({by_hand.requests} "
        f"requests) | {by_hand.latency[50] * 1000:.2f} ms | {by_hand.latency[99] * 1000:.2f} ms "
        f"| through Caddy: {ms(routed)} | Caddy {ratio(routed, by_hand)} "
        f"| {added(routed, by_hand)} |",
        f"| through Caddy, answers taking {WORK_MS} ms ({routed_work.requests} requests) "
        f"| {routed_work.latency[50] * 1000:.2f} ms | {routed_work.latency[99] * 1000:.2f} ms "
        f"| direct, the same answers: {ms(direct_work)} | {ratio(routed_work, direct_work)} "
        f"| {added(routed_work, direct_work)} |",
        f"| burst of 35 in flight -> {BURST_REPLICAS} replicas serving ({len(serving)} bursts) "
        f"| {statistics.median(serving):.2f} s | {percentile(serving, 0.99):.2f} s "
        f"| replica start by hand: {statistics.median(floors):.2f} s "
        f"| +{statistics.median(serving) - statistics.median(floors):.2f} s | - |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
