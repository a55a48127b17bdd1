"""What sampling deployment metrics costs the worker at rest (issue 24 with issue 22's budget).

Run with `python -m bench.metrics_idle [--deployments 100] [--samples 60]
[--replicas none,cgroup,engine]`: a migrated SQLite
control plane in a temporary directory with N deployments, each with one running replica, and
the router's metrics text as Caddy writes it for N hosts with traffic counted (the histogram
of 2 status codes each, Caddy's 14 buckets), then `MetricsSampler.sample()` run as the worker's
cron runs it, every 10 s of a fake clock: the CPU time of each call (median, p99), what it
means per 10 s, and the rows written per minute. No Docker, no Caddy (the text is made to
its shape, with only the series the sampler reads; Caddy's own has more, skipped line by line).

`--replicas` adds, per mode, each replica's CPU and memory: `none` (before replicas were
measured), `cgroup` (the kernel's cgroup files, as the worker reads them on the engine's host)
and `engine` (the engine's one-shot stats per replica, the fallback). For those, one idle
container (busybox `sleep`) per deployment really runs and is removed at the end, and the
CPU of dockerd and containerd over the samples (utime+stime from /proc: the engine's share of
the `engine` mode, though other work on the engine counts too) and the wall time of a sample
are reported beside the bench process's own CPU.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
from sqlmodel import func, select

from app.adapters.container_usage import CGROUP_ROOT, ContainerUsage
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.models import (
    Deployment,
    Installation,
    MetricPoint,
    Replica,
    ReplicaMetricPoint,
    ReplicaState,
    Repository,
    Revision,
)
from app.kernel.ports import ReplicaResources
from app.replicas.metrics import MetricsSampler
from builders.engine_errors import typed_api
from tests.support.images import DOCKER, ensure_busybox_image
from tests.support.images import docker as docker_cli

BOUNDS = (
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
)  # fmt: skip


def caddy_text(hosts: int, requests: int) -> str:
    lines = ["# TYPE caddy_http_requests_total counter"]
    lines += [
        f'caddy_http_requests_total{{handler="reverse_proxy",host="d{i}.localhost",server="s"}} '
        f"{requests}"
        for i in range(hosts)
    ]
    lines.append("# TYPE caddy_http_request_duration_seconds histogram")
    for i in range(hosts):
        for code in ("200", "502"):
            labels = f'code="{code}",handler="reverse_proxy",host="d{i}.localhost",method="GET"'
            for bound in BOUNDS:
                lines.append(
                    f'caddy_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{requests}"
                )
            lines.append(f"caddy_http_request_duration_seconds_sum{{{labels}}} 1")
            lines.append(f"caddy_http_request_duration_seconds_count{{{labels}}} {requests}")
    lines.append("# TYPE caddy_http_requests_in_flight gauge")
    lines += [
        f'caddy_http_requests_in_flight{{handler="reverse_proxy",host="d{i}.localhost"}} 0'
        for i in range(hosts)
    ]
    return "\n".join(lines) + "\n"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LABEL = "dev.slipway.bench=metrics-idle"


def engine_cpu_seconds() -> float | None:
    """CPU time of dockerd and containerd so far (None where /proc does not show them)."""
    total = 0.0
    for name in ("dockerd", "containerd"):
        found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
        if not found.split():
            return None
        stat = Path(f"/proc/{found.split()[0]}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@contextmanager
def idle_containers(count: int) -> Iterator[list[str]]:
    image = ensure_busybox_image()
    started: list[str] = []
    try:
        for i in range(count):
            started.append(
                docker_cli(
                    "run", "-d", "--label", LABEL, "--name",
                    f"bench-metrics-idle-{os.getpid()}-{i}",
                    image, "sleep", "3600",
                ).strip()
            )  # fmt: skip
        yield started
    finally:
        if started:
            subprocess.run([DOCKER, "rm", "-f", *started], capture_output=True, check=False)


def control_plane(folder: Path, deployments: int, container_ids: list[str]) -> SessionFactory:
    path = Path(folder) / "control-plane.db"
    migrate(f"sqlite:///{path}", Path(folder))
    sessions = SessionFactory(make_engine(f"sqlite:///{path}"))
    with sessions() as session:
        session.add(Installation(id=1, account_login="octo"))
        session.commit()
        session.add(Repository(id=2, installation_id=1, full_name="octo/web"))
        session.commit()
        for i in range(deployments):
            session.add(Deployment(id=f"dep_{i}", repository_id=2, slug=f"d{i}", branch="b"))
        session.commit()
        for i in range(deployments):
            session.add(
                Revision(
                    id=f"rev_{i}",
                    deployment_id=f"dep_{i}",
                    number=1,
                    commit_sha="0" * 40,
                    env_hash="e",
                )
            )
        session.commit()
        for i in range(deployments):
            session.add(
                Replica(
                    id=f"rep_{i}",
                    revision_id=f"rev_{i}",
                    container_name=f"r{i}",
                    container_id=container_ids[i] if container_ids else None,
                    container_port=8000,
                    state=ReplicaState.ready,
                )
            )
        session.commit()
    return sessions


def run(deployments: int, samples: int, mode: str, container_ids: list[str]) -> str:
    resources: ReplicaResources | None = None
    engine = None
    if mode != "none":
        engine = docker.from_env(timeout=30)
        api = typed_api(engine.api)
        resources = ContainerUsage(
            lambda ref: dict(api.stats(ref, stream=False, one_shot=True)),
            cgroup_root=Path("/nonexistent") if mode == "engine" else CGROUP_ROOT,
        )
    with tempfile.TemporaryDirectory() as folder:
        sessions = control_plane(Path(folder), deployments, container_ids)
        text = caddy_text(deployments, 1000)  # counted once, then idle: no new requests
        now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
        sampler = MetricsSampler(
            sessions=sessions,
            scrape=lambda: [text],
            hostname=lambda slug: f"{slug}.localhost",
            clock=lambda: now[0],
            resources=resources,
        )
        costs, walls = [], []
        engine_before = engine_cpu_seconds()
        for _ in range(samples):
            started, wall = time.process_time(), time.perf_counter()
            sampler.sample()
            costs.append(time.process_time() - started)
            walls.append(time.perf_counter() - wall)
            now[0] += timedelta(seconds=10)
        engine_after = engine_cpu_seconds()
        with sessions() as session:
            rows = session.exec(select(func.count()).select_from(MetricPoint)).one()
            replica_rows = session.exec(select(func.count()).select_from(ReplicaMetricPoint)).one()
    if engine is not None:
        engine.close()
    costs.sort()
    walls.sort()
    median = statistics.median(costs)
    p99 = costs[min(len(costs) - 1, int(len(costs) * 0.99))]
    minutes = samples * 10 / 60
    engine_ms = (
        "n/a"
        if engine_before is None or engine_after is None
        else f"{(engine_after - engine_before) / samples * 1000:.1f}"
    )
    return (
        f"| {mode:6} | {deployments} | {median * 1000:.1f} | {p99 * 1000:.1f} | "
        f"{median / 10 * 100:.2f} | {statistics.median(walls) * 1000:.1f} | {engine_ms} | "
        f"{rows / minutes:.0f} + {replica_rows / minutes:.0f} |"
    )


def main() -> None:
    # A timeout's SIGTERM still removes the containers (the `finally` of idle_containers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument(
        "--replicas",
        default="none",
        help="comma-separated modes of reading replicas' CPU and memory: none, cgroup, engine",
    )
    args = parser.parse_args()
    modes = args.replicas.split(",")
    print(
        f"{args.deployments} idle deployments, one replica each, {args.samples} samples "
        "(10 s apart on a fake clock)"
    )
    print(
        "| replicas read | deployments | sampler CPU median ms | p99 ms | % of a core at rest | "
        "wall median ms | dockerd+containerd CPU ms per sample | rows a minute (deployment + "
        "replica) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    count = args.deployments if set(modes) - {"none"} else 0
    with idle_containers(count) as container_ids:
        for mode in modes:
            print(run(args.deployments, args.samples, mode, container_ids), flush=True)


if __name__ == "__main__":
    main()
