"""Rollback: from `POST /api/deployments/{id}/rollback` to the old version served.

Run with `make bench-rollback` or `.venv/bin/python -m bench.rollback [--iterations N]`.

One `slipway up` with a fake GitHub, one repository (tests.support.apps.notes_app): v0 goes live,
then a one-line change v1. Then, N times, the deployment is rolled back to revision 1 (v0), then to
revision 2 (v1), each time timed from the API request to the first 200 through the router
showing that version. No build runs: the old image is tagged again and started. Against it,
interleaved, the floor of a container start done by hand: `docker run` of an image that is
already built (confined like a replica) until its first 200.

Everything talks to 127.0.0.1 and containers this bench started; all of it is removed at the
end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import httpx

from bench.push_to_live import (
    DEFAULT_DEADLINE_SECONDS,
    INSTALLATION_ID,
    TARGET_RATIO,
    BenchError,
    Connected,
    Deadline,
    Row,
    Samples,
    describe_machine,
    first_answer,
    floor,
    log,
    router_host,
    router_url,
    timestamp,
    warmed_up,
)
from tests.support.fake_github.payloads import push_payload
from tests.support.images import ensure_python_image

DEFAULT_ITERATIONS = 5
MAX_ITERATIONS = 50
ROWS = (
    Row("rollback", "rollback request -> old version served (no build)"),
    Row("queue", "  queue (created -> started)"),
    Row("retag", "  image (started -> tagged, no build)"),
    Row("database", "  database (deploy started -> database ready)"),
    Row("replica", "  start (database ready -> replica started)"),
    Row("healthy", "  healthy (replica started -> healthy)"),
    Row("routed", "  routed (healthy -> live)"),
    Row("floor_start", "floor: docker run of a built image -> first 200"),
)
PHASES = (
    ("queue", "created_at", "build_started_at"),
    ("retag", "build_started_at", "build_finished_at"),
    ("database", "deploy_started_at", "database_ready_at"),
    ("replica", "database_ready_at", "replica_started_at"),
    ("healthy", "replica_started_at", "healthy_at"),
    ("routed", "healthy_at", "live_at"),
)


def rollback(
    bench: Connected,
    number: int,
    version: str,
    samples: Samples | None,
    client: httpx.Client,
    deadline_seconds: float,
) -> None:
    platform = bench.platform
    deadline = Deadline(deadline_seconds, f"the rollback to revision #{number}")
    sent = time.perf_counter()
    response = platform.call(
        "POST", f"/api/deployments/{bench.deployment_id}/rollback", json={"revision": number}
    )
    if response.status_code != 202:
        raise BenchError(f"the rollback was refused: {response.status_code} {response.text}")
    served = first_answer(
        client,
        router_url(platform),
        {"Host": router_host(platform, bench.slug)},
        f"version={version} ",
        deadline,
        lambda: None,
    )
    revision = platform.wait_state(response.json()["revision"]["id"], {"live", "failed"})
    if revision["build_method"] != "reused":
        raise BenchError(f"the rollback built ({revision['build_method']}): not what is timed")
    if samples is not None:
        samples.add("rollback", served - sent)
        for key, start, end in PHASES:
            seconds = timestamp(revision, end) - timestamp(revision, start)
            samples.add(key, seconds.total_seconds())


def report(samples: Samples, machine: Sequence[str]) -> str:
    lines = [*machine, "floor: confined like a replica", ""]
    width = max(len(row.label) for row in ROWS) + 2
    header = f"{'phase':<{width}}{'n':>5}{'median ms':>12}{'p99 ms':>10}"
    lines += [header, "-" * len(header)]
    for row in ROWS:
        lines.append(
            f"{row.label:<{width}}{samples.count(row.key):>5}"
            f"{samples.median_ms(row.key):>12.1f}{samples.p99_ms(row.key):>10.1f}"
        )
    lines.append("-" * len(header))
    lines.append("p99: nearest rank (with fewer than 100 samples it is the maximum)")
    ratio = samples.median_ms("rollback") / samples.median_ms("floor_start")
    lines += [
        "",
        f"ratio rollback / container-start floor (medians): {ratio:.2f}x -> target <= "
        f"{TARGET_RATIO}x: " + ("met" if ratio <= TARGET_RATIO else "NOT met"),
    ]
    return "\n".join(lines)


def run(iterations: int, deadline_seconds: float) -> str:
    log("making sure the base image exists")
    ensure_python_image()
    machine = describe_machine()
    samples = Samples()
    with warmed_up("slipway-bench-rollback-", deadline_seconds, confined_floor=True) as run:
        bench, platform = run.bench, run.bench.platform
        log("warm-up: v1 live")
        v1 = bench.repo.commit({"VERSION": "v1\n"}, "v1")
        payload = push_payload(bench.repository, INSTALLATION_ID, "refs/heads/main", bench.head, v1)
        if platform.send("push", payload).status_code != 202:
            raise BenchError("the push of v1 was refused")
        platform.wait_state(platform.revision_for(bench.deployment_id, v1)["id"], {"live"})
        with httpx.Client(trust_env=False) as client:
            floor(
                bench,
                "warmup",
                None,
                client,
                run.work,
                deadline_seconds,
                run.floor_containers,
                True,
            )
            for index in range(1, iterations + 1):
                log(f"iteration {index}/{iterations}")
                rollback(bench, 1, "v0", samples, client, deadline_seconds)
                rollback(bench, 2, "v1", samples, client, deadline_seconds)
                floor(
                    bench,
                    index,
                    samples,
                    client,
                    run.work,
                    deadline_seconds,
                    run.floor_containers,
                    True,
                )
                log(f"  ms: {samples.last(['rollback', 'floor_start'])}")
        return report(samples, machine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rollback", description="Time rollbacks against a container start."
    )
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_SECONDS)
    args = parser.parse_args(argv)
    if not 1 <= args.iterations <= MAX_ITERATIONS:
        parser.error(f"--iterations must be between 1 and {MAX_ITERATIONS}")
    try:
        print(run(args.iterations, args.deadline))
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
