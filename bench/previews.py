"""Pull-request previews: open → comment → preview answers, synchronize → served, close → gone.

Run with `make bench-previews` or `.venv/bin/python -m bench.previews [--iterations N]
[--github-latency SECONDS]`.

One `slipway up` with a fake GitHub (its answers delayed by --github-latency, 0.15 s by default:
real GitHub answers in 100-300 ms), one repository (tests.support.apps.notes_app) deployed to
production as a warm-up. Then, N times, a pull request is opened, given one more commit and closed:

* opened → comment: from the `opened` webhook to the Slipway comment holding the preview URL;
* opened → preview answers: to the first HTTP 200 through the router from the new preview
  (first revision: its database is created too);
* synchronize → served: from the `synchronize` webhook (a one-line change) to the first 200
  showing the new commit — compared with the same docker floor as pushes (build + run + first
  200 of the same one-line change by hand, interleaved);
* closed → nothing left: from the `closed` webhook until the router answers 404 for the
  preview, no container of it is left and its database refuses connections.

Everything talks to 127.0.0.1 and containers this bench started; the platform, the
containers and images it made are removed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psycopg

from bench.push_to_live import (
    DEFAULT_DEADLINE_SECONDS,
    INSTALLATION_ID,
    REDACT,
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
    warmed_up,
)
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import pull_request_payload
from tests.support.images import ensure_python_image

DEFAULT_ITERATIONS = 5
MAX_ITERATIONS = 50
DEFAULT_GITHUB_LATENCY = 0.15
MARKER = "<!-- slipway:preview -->"
POLL_SECONDS = 0.02

ROWS = (
    Row("comment", "PR opened -> comment with the preview URL"),
    Row("first", "PR opened -> preview answers (first revision, new database)"),
    Row("sync", "synchronize -> new commit served via router"),
    Row("teardown", "closed -> nothing left (404, no container, no database)"),
)
FLOOR_ROWS = (Row("floor_whole", "floor: docker build + run -> first 200"),)


def wait(what: str, probe: object, deadline: Deadline) -> float:
    """perf_counter() once probe() is truthy, polled every 20 ms."""
    assert callable(probe)
    while not probe():
        deadline.remaining()
        time.sleep(POLL_SECONDS)
    return time.perf_counter()


def comment_with(github: FakeGitHub, full_name: str, number: int, text: str) -> bool:
    return any(
        MARKER in str(c["body"]) and text in str(c["body"])
        for c in github.comments(full_name, number)
    )


def containers_of(deployment_id: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dev.slipway.deployment={deployment_id}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()


def refuses(uri: str) -> bool:
    try:
        with psycopg.connect(uri, connect_timeout=2):
            return False
    except psycopg.OperationalError:
        return True


def one_pull_request(
    bench: Connected,
    number: int,
    samples: Samples,
    client: httpx.Client,
    deadline_seconds: float,
) -> str:
    """Open, synchronize and close pull request `number`; returns its preview's id."""
    platform, github, repo = bench.platform, bench.github, bench.repo
    full_name = str(bench.repository["full_name"])
    branch = f"bench-{number}"
    repo.checkout(branch, create=True)
    head = repo.commit({"VERSION": f"pr-{number}-a\n"}, f"Bench: pull request {number}")
    repo.checkout("main")
    pull = github.add_pull_request(full_name, number, head_sha=head, head_ref=branch)
    slug = f"pr-{number}--{bench.slug}"
    url = f"http://{slug}.localhost:{platform.router_port}/"
    headers = {"Host": router_host(platform, slug)}
    deadline = Deadline(deadline_seconds, f"pull request {number} to be previewed")

    sent = time.perf_counter()
    payload = pull_request_payload("opened", bench.repository, INSTALLATION_ID, pull)
    if platform.send("pull_request", payload).status_code != 202:
        raise BenchError("the opened webhook was refused")
    answered = first_answer(
        client, router_url(platform), headers, f"version=pr-{number}-a ", deadline, lambda: None
    )
    commented = wait("the comment", lambda: comment_with(github, full_name, number, url), deadline)
    samples.add("first", answered - sent)
    samples.add("comment", commented - sent)
    preview = next(
        d
        for d in platform.api("/api/deployments")
        if d["repository"] == full_name and d["pull_request"] == number
    )

    before = head
    repo.checkout(branch)
    head = repo.commit({"VERSION": f"pr-{number}-b\n"}, f"Bench: pull request {number}, again")
    repo.checkout("main")
    pull = github.update_pull_request(full_name, number, head_sha=head)
    deadline = Deadline(deadline_seconds, f"pull request {number}'s new commit to be served")
    sent = time.perf_counter()
    payload = pull_request_payload(
        "synchronize", bench.repository, INSTALLATION_ID, pull, before=before
    )
    if platform.send("pull_request", payload).status_code != 202:
        raise BenchError("the synchronize webhook was refused")
    served = first_answer(
        client, router_url(platform), headers, f"version=pr-{number}-b ", deadline, lambda: None
    )
    samples.add("sync", served - sent)
    wait(
        "the comment to show the new commit",
        lambda: comment_with(github, full_name, number, f"`{head[:7]}`"),
        deadline,
    )

    uri = platform.database_uri(preview["id"])
    pull = github.update_pull_request(full_name, number, merged=True)
    deadline = Deadline(deadline_seconds, f"pull request {number}'s preview to be removed")
    sent = time.perf_counter()
    payload = pull_request_payload("closed", bench.repository, INSTALLATION_ID, pull)
    if platform.send("pull_request", payload).status_code != 202:
        raise BenchError("the closed webhook was refused")

    left: list[str] = []

    def gone() -> bool:
        try:
            status = client.get(
                router_url(platform), headers={**headers, "Connection": "close"}
            ).status_code
        except httpx.HTTPError:  # Caddy closes connections while it loads a new config
            status = 0
        left[:] = [
            what
            for what, still in (
                (f"the router answers {status}", status != 404),
                ("a container", bool(containers_of(preview["id"]))),
                ("the database", not refuses(uri)),
            )
            if still
        ]
        return not left

    try:
        samples.add("teardown", wait("the preview to be gone", gone, deadline) - sent)
    except BenchError as exc:
        raise BenchError(f"{exc}; still there: {', '.join(left)}") from None
    return str(preview["id"])


def report(samples: Samples, machine: Sequence[str], latency: float, confined: bool) -> str:
    lines = [*machine, f"fake GitHub latency per API call: {latency * 1000:.0f} ms"]
    lines += ["floor: " + ("confined like a replica" if confined else "plain docker run"), ""]
    width = max(len(row.label) for row in (*ROWS, *FLOOR_ROWS)) + 2
    header = f"{'phase':<{width}}{'n':>5}{'median ms':>12}{'p99 ms':>10}"
    lines += [header, "-" * len(header)]
    for row in (*ROWS, *FLOOR_ROWS):
        if samples.count(row.key):
            lines.append(
                f"{row.label:<{width}}{samples.count(row.key):>5}"
                f"{samples.median_ms(row.key):>12.1f}{samples.p99_ms(row.key):>10.1f}"
            )
    lines.append("-" * len(header))
    lines.append("p99: nearest rank (with fewer than 100 samples it is the maximum)")
    sync, floor_whole = samples.median_ms("sync"), samples.median_ms("floor_whole")
    ratio = sync / floor_whole
    lines += [
        "",
        f"ratio synchronize -> served / floor (medians): {sync:.0f} / {floor_whole:.0f} ms = "
        f"{ratio:.2f}x -> target <= {TARGET_RATIO}x: "
        + ("met" if ratio <= TARGET_RATIO else "NOT met"),
    ]
    return "\n".join(lines)


def run(
    iterations: int,
    latency: float,
    deadline_seconds: float,
    logs_to: Path | None = None,
    confined_floor: bool = False,
) -> str:
    log("making sure the base image exists")
    ensure_python_image()
    machine = describe_machine()
    samples = Samples()
    with warmed_up(
        "slipway-bench-previews-", deadline_seconds, confined_floor=confined_floor, logs_to=logs_to
    ) as run:
        bench = run.bench
        bench.github.latency_seconds = latency
        with httpx.Client(trust_env=False) as client:
            log("warm-up: one pull request and one floor run")
            warm = Samples()
            run.deployment_ids.append(one_pull_request(bench, 1, warm, client, deadline_seconds))
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
                log(f"iteration {index}/{iterations}: a pull request")
                run.deployment_ids.append(
                    one_pull_request(bench, index + 1, samples, client, deadline_seconds)
                )
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
                log(f"  ms: {samples.last([row.key for row in ROWS])}")
        return report(samples, machine, latency, confined_floor)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.previews",
        description="Time pull-request previews: opened, synchronize and closed.",
    )
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument(
        "--github-latency",
        type=float,
        default=DEFAULT_GITHUB_LATENCY,
        help="seconds the fake GitHub waits before each answer (default 0.15)",
    )
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_SECONDS)
    parser.add_argument(
        "--confined-floor",
        action="store_true",
        help="run the floor's container with the confinement Slipway gives replicas",
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
    if not 0 <= args.github_latency <= 2:
        parser.error("--github-latency must be between 0 and 2 seconds")
    try:
        print(
            run(
                args.iterations,
                args.github_latency,
                args.deadline,
                args.keep_logs,
                args.confined_floor,
            ),
            flush=True,
        )
    except (BenchError, AssertionError) as exc:
        print(f"bench failed: {REDACT(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
