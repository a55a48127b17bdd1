"""What keeping server logs costs at rest, two ways (issue 24, with issue 22's budget).

Run with `python -m bench.server_logs [--replicas 20] [--rest-seconds 30] [--lines 10000]`:
N idle containers (the test Python image, one line printed, then asleep), labelled as one
bench's; then, over the same rest, (a) nothing held: Slipway's way, the engine's json-file
logs read on demand, and (b) one `logs?follow=1` stream per container held by threads of this
process, the other design. For each: dockerd's CPU over the rest (utime+stime from
/proc/<pid>/stat), dockerd's RSS, this process's RSS and threads. Then the cost of a read on
demand: one container that printed `--lines` lines read whole by `DockerOutputs` (median of 5),
and the copy-out at removal (read + write to the archive). Containers are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker

from app.adapters.docker_output import DockerOutputs
from app.replicas.server_logs import ServerLogArchive
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--rest-seconds", type=float, default=30.0)
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
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
