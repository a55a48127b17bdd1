"""What keeping server logs costs at rest, two ways (issue 24, with issue 22's budget).

Run with `python -m bench.server_logs [--replicas 20] [--rest-seconds 30] [--lines 10000]`:
N idle containers (the test Python image, one line printed, then asleep), labelled as one
bench's; then, over the same rest, (a) nothing held: Slipway's way, the engine's json-file
logs read on demand, and (b) one `logs?follow=1` stream per container held by threads of this
process, the other design. For each: dockerd's CPU over the rest (utime+stime from
/proc/<pid>/stat), dockerd's RSS, this process's RSS and threads. Then the cost of a read on
demand: one container that printed `--lines` lines read whole by `DockerOutputs` (median of 5),
and the copy-out at removal (read + write to the archive). Containers are removed at the end.

`python -m bench.server_logs --reads [--reps 30] [--poll-seconds 5]`: what reading costs the
API process (and the engine) with a full archive (`SERVER_LOG_MAX_BYTES`, its default unless
given, of removed replicas' output) and one live replica that printed `--lines` lines and
prints one more every 0.2 s. CPU (this process's, all threads: `time.process_time`) of one
read (no filter, the default limit, as a deployment page or the first read of a follow), of a
read with `q` matching one line, and of a read with `since=1m`, `--reps` times each, median and
p99; then a follow (the API's own `_follow`, polling back to back) for `--poll-seconds`: CPU
per poll, which is a follow's CPU per second (it polls once a second), its own and dockerd's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from app.adapters.docker_output import DockerOutputs
from app.api import logs as logs_api
from app.feedback.reports import Redactor
from app.kernel.ports import OutputLine
from app.kernel.settings import Settings
from app.replicas.server_logs import (
    LogCursor,
    LogQuery,
    ServerLogArchive,
    ServerLogs,
    moment_ns,
)
from manifests.containers import DEPLOYMENT_LABEL, REVISION_LABEL
from tests.support.images import ensure_python_image

BENCH_LABEL = "dev.slipway.bench"
MIB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")


def dockerd_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "dockerd":
                    return int(entry.name)
            except OSError:
                continue
    raise SystemExit("no dockerd running")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def at_rest(seconds: float, engine: int) -> dict[str, float]:
    me = os.getpid()
    before = cpu_seconds(engine)
    time.sleep(seconds)
    return {
        "dockerd CPU %": 100 * (cpu_seconds(engine) - before) / seconds,
        "dockerd RSS MiB": rss_mib(engine),
        "bench RSS MiB": rss_mib(me),
        "bench threads": threads(me),
    }


class BenchLogs(ServerLogs):
    """ServerLogs without a control plane: two secrets to redact, as a deployment has."""

    def redactor(self, deployment_id: str) -> Redactor:
        return Redactor(["sk-bench-0123456789abcdef", "db-password-of-the-bench"])


class CountedOutputs:
    """DockerOutputs, counting the reads (a follow reads once per poll)."""

    def __init__(self, outputs: DockerOutputs) -> None:
        self.outputs = outputs
        self.reads = 0

    def of_deployment(self, *args: Any, **kwargs: Any) -> list[OutputLine]:
        self.reads += 1
        return self.outputs.of_deployment(*args, **kwargs)

    def of_replica(self, name: str) -> list[OutputLine]:
        return self.outputs.of_replica(name)


def full_archive(root: Path, deployment_id: str, max_bytes: int) -> int:
    """Removed replicas' output up to the bound (and a little over, so the oldest went), each
    replica ~2 MiB of ~100-byte lines, the newest ending a minute ago."""
    archive = ServerLogArchive(root, max_bytes)
    per_replica = 2 * MIB // 150
    replicas = max_bytes // (2 * MIB) + 1
    start = time.time_ns() - 60 * 1_000_000_000 - replicas * per_replica * 10_000_000
    for number in range(replicas):
        archive.keep(
            [
                OutputLine(
                    at_ns=start + (number * per_replica + i) * 10_000_000,
                    deployment_id=deployment_id,
                    revision_id="rev_bench",
                    replica=f"web-{number}-bench",
                    stream="stdout",
                    text=f'127.0.0.1 - "GET /items/{i} HTTP/1.1" 200 {i % 977} replica {number}',
                )
                for i in range(per_replica)
            ]
        )
    return sum(path.stat().st_size for path in (root / deployment_id).iterdir())


def cpu_of(call: Any) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def read_costs(args: argparse.Namespace) -> None:
    client = docker.from_env(timeout=60)
    image = ensure_python_image()
    run = uuid.uuid4().hex[:8]
    deployment_id = f"dep_reads{run}"
    labels = {BENCH_LABEL: run, DEPLOYMENT_LABEL: deployment_id, REVISION_LABEL: "rev_bench"}
    max_bytes = args.max_bytes or Settings.model_fields["server_log_max_bytes"].default
    program = (
        f"import time\nfor i in range({args.lines}): print('line', i, 'x' * 60)\n"
        "while True:\n    print('tick', time.time(), flush=True); time.sleep(0.2)"
    )
    live = client.containers.run(
        image, ["python3", "-u", "-c", program], detach=True, labels=labels, network_mode="none"
    )
    engine = dockerd_pid()
    try:
        with tempfile.TemporaryDirectory() as folder:
            size = full_archive(Path(folder), deployment_id, max_bytes)
            outputs = CountedOutputs(DockerOutputs())
            logs = BenchLogs(
                sessions=None,  # type: ignore[arg-type]
                secrets=None,  # type: ignore[arg-type]
                archive=ServerLogArchive(Path(folder), max_bytes),
                outputs=outputs,
            )
            while len(logs.read(deployment_id, LogQuery(limit=1))) < 1:
                time.sleep(0.2)
            time.sleep(2)  # the live replica's first lines are all written
            since = moment_ns("1m", datetime.now(UTC))
            kinds = {
                "read, no filter (limit 1000)": LogQuery(),
                "read, q matching one line": LogQuery(
                    text='GET /items/77 HTTP/1.1" 200 77 replica 3'
                ),
                "read, since=1m": LogQuery(since_ns=since),
            }
            files = len(list(Path(folder, deployment_id).iterdir()))
            print(
                f"archive: {size / MIB:.1f} MiB in {files} files; one live replica with "
                f"{args.lines}+ lines; {args.reps} reads each"
            )
            print("| read | CPU median ms | CPU p99 ms |")
            for name, query in kinds.items():
                costs = [
                    cpu_of(lambda q=query: logs.read(deployment_id, q)) for _ in range(args.reps)
                ]
                print(
                    f"| {name} | {statistics.median(costs) * 1000:.0f} | {p99(costs) * 1000:.0f} |"
                )
            for name, query in {
                "follow, no filter": LogQuery(),
                "follow, q (rare)": LogQuery(text="tick 1"),
            }.items():
                per_poll, engine_per_poll = follow_cost(
                    logs, outputs, deployment_id, query, args.poll_seconds, engine
                )
                print(
                    f"{name}: CPU per poll (= per follow-second) median "
                    f"{statistics.median(per_poll) * 1000:.1f} ms, "
                    f"p99 {p99(per_poll) * 1000:.1f} ms;"
                    f" dockerd {engine_per_poll * 1000:.1f} ms per poll; {len(per_poll)} polls"
                )
    finally:
        live.remove(force=True)


def follow_cost(
    logs: ServerLogs,
    outputs: CountedOutputs,
    deployment_id: str,
    query: LogQuery,
    seconds: float,
    engine: int,
) -> tuple[list[float], float]:
    """The API's follow, polling back to back (FOLLOW_POLL_SECONDS 0) for `seconds`: the CPU
    of each poll (measured between two reads of the runtime), and dockerd's mean per poll."""
    logs_api.FOLLOW_POLL_SECONDS = 0.0
    per_poll: list[float] = []

    async def drive() -> None:
        cursor = LogCursor()
        first = await asyncio.to_thread(logs.read, deployment_id, query, cursor)
        events = logs_api._follow(
            logs,
            deployment_id,
            query,
            first,
            cursor,
            {"rev_bench": 1},
            None,  # type: ignore[arg-type]
            seconds,
        )
        async for _event in events:
            pass

    marks: list[float] = []
    counted = outputs.of_deployment

    def marked(*args: Any, **kwargs: Any) -> list[OutputLine]:
        marks.append(time.process_time())
        return counted(*args, **kwargs)

    outputs.of_deployment = marked  # type: ignore[method-assign]
    before_engine = cpu_seconds(engine)
    asyncio.run(drive())
    engine_used = cpu_seconds(engine) - before_engine
    outputs.of_deployment = counted  # type: ignore[method-assign]
    per_poll = [b - a for a, b in itertools.pairwise(marks[1:])]
    return per_poll, engine_used / max(1, len(marks) - 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--rest-seconds", type=float, default=30.0)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--reads", action="store_true", help="the cost of reads and follows")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--max-bytes", type=int, default=0)
    args = parser.parse_args()
    if args.reads:
        read_costs(args)
        return
    client = docker.from_env(timeout=60)
    image = ensure_python_image()
    run = uuid.uuid4().hex[:8]
    labels = {BENCH_LABEL: run, DEPLOYMENT_LABEL: f"dep_bench{run}", REVISION_LABEL: "rev_bench"}
    engine = dockerd_pid()
    containers: list[Any] = []
    try:
        for _ in range(args.replicas):
            containers.append(
                client.containers.run(
                    image,
                    ["python3", "-c", "import time; print('up', flush=True); time.sleep(10**6)"],
                    detach=True,
                    labels=labels,
                    network_mode="none",
                )
            )
        time.sleep(2)
        results = {"on demand (nothing held)": at_rest(args.rest_seconds, engine)}
        stop = threading.Event()

        def follow(container: Any) -> None:
            for _chunk in client.api.logs(container.id, stream=True, follow=True):
                if stop.is_set():
                    return

        for container in containers:
            threading.Thread(target=follow, args=(container,), daemon=True).start()
        time.sleep(2)
        results[f"{args.replicas} followers"] = at_rest(args.rest_seconds, engine)
        stop.set()
        print(f"{args.replicas} idle replicas, {args.rest_seconds:.0f} s at rest each way")
        print(f"| {'design':<28} | " + " | ".join(next(iter(results.values()))) + " |")
        for name, row in results.items():
            print(f"| {name:<28} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |")

        chatty = client.containers.run(
            image,
            ["python3", "-c", f"for i in range({args.lines}): print('line', i, 'x' * 60)"],
            detach=True,
            labels={**labels, DEPLOYMENT_LABEL: f"dep_chatty{run}"},
            network_mode="none",
        )
        containers.append(chatty)
        chatty.wait(timeout=60)
        outputs = DockerOutputs()
        reads = []
        for _ in range(5):
            started = time.perf_counter()
            read = outputs.of_deployment(f"dep_chatty{run}")
            reads.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            archive = ServerLogArchive(Path(folder), 20 * MIB)
            started = time.perf_counter()
            archive.keep(outputs.of_replica(chatty.name))
            copied = time.perf_counter() - started
        print(
            f"read on demand, {len(read)} lines of one replica: median "
            f"{statistics.median(reads) * 1000:.0f} ms; copy-out at removal (read + archive): "
            f"{copied * 1000:.0f} ms"
        )
    finally:
        for container in containers:
            container.remove(force=True)


if __name__ == "__main__":
    main()
