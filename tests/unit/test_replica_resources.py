"""Replicas' CPU and memory: read from the kernel's cgroup files in either layout (the engine
where they are not seen), sampled into a 10 s point when a replica was busy and a minute point
for every replica, and served as the API's per-replica series and Prometheus gauges."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col, select

from app.adapters.container_usage import ContainerUsage, find_cgroup_files, read_cgroup
from app.api.metrics import PrometheusExposition, _replica_views
from app.kernel.db import SessionFactory
from app.kernel.models import Replica, ReplicaMetricPoint, ReplicaState
from app.kernel.ports import ReplicaUsage
from app.replicas.metrics import MetricsSampler, replica_series
from builders.engine_errors import NoSuchContainer
from tests.support.rows import add_web_revision

ID_A = "a" * 64
ID_B = "b" * 64
MiB = 1024**2


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_a_hybrid_v1_host_gives_cpu_from_the_v2_tree_and_memory_from_v1_without_cache(
    tmp_path: Path,
) -> None:
    # Debian 12's Docker 20.10 on cgroupfs: v1 controllers, the v2 tree beside them.
    write(tmp_path / "unified/docker" / ID_A, {"cpu.stat": "usage_usec 2500000\nuser_usec 1\n"})
    write(tmp_path / "cpuacct/docker" / ID_A, {"cpuacct.usage": "9000000000\n"})
    write(
        tmp_path / "memory/docker" / ID_A,
        {
            "memory.usage_in_bytes": f"{50 * MiB}\n",
            "memory.stat": f"cache {20 * MiB}\ntotal_inactive_file {8 * MiB}\n",
        },
    )
    files = find_cgroup_files(tmp_path, ID_A)
    assert files is not None and not files.memory_v2
    usage = read_cgroup(files, read_at=5.0)
    assert usage.cpu_seconds == 9.0  # v1's own cpuacct (the unified tree is not at the root)
    assert usage.memory_bytes == 42 * MiB


def test_a_v2_host_with_the_systemd_driver(tmp_path: Path) -> None:
    folder = tmp_path / "system.slice" / f"docker-{ID_A}.scope"
    write(
        folder,
        {
            "cpu.stat": "usage_usec 1500000\nuser_usec 1000000\n",
            "memory.current": f"{30 * MiB}\n",
            "memory.stat": f"anon {20 * MiB}\ninactive_file {4 * MiB}\nactive_file 0\n",
        },
    )
    files = find_cgroup_files(tmp_path, ID_A)
    assert files is not None and files.cpu_v2 and files.memory_v2
    assert read_cgroup(files, read_at=1.0) == ReplicaUsage(
        cpu_seconds=1.5, memory_bytes=26 * MiB, read_at=1.0
    )


def test_the_engine_answers_for_containers_whose_files_are_not_seen(tmp_path: Path) -> None:
    write(
        tmp_path / "docker" / ID_A,
        {"cpu.stat": "usage_usec 1000000\n", "memory.current": "100\n", "memory.stat": ""},
    )
    asked: list[str] = []

    def engine_stats(ref: str) -> dict[str, Any]:
        asked.append(ref)
        if ref == "gone":
            raise NoSuchContainer("no such container")
        return {
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}},
            "memory_stats": {"usage": 10 * MiB, "stats": {"total_inactive_file": MiB}},
        }

    reader = ContainerUsage(engine_stats, cgroup_root=tmp_path, monotonic=lambda: 7.0)
    found = reader.usage([ID_A, ID_B, "gone", "../../etc"])
    assert found[ID_A].cpu_seconds == 1.0 and found[ID_A].memory_bytes == 100
    assert found[ID_B] == ReplicaUsage(cpu_seconds=3.0, memory_bytes=9 * MiB, read_at=7.0)
    assert "gone" not in found and "../../etc" in found  # a name is never made a path
    assert sorted(asked) == sorted([ID_B, "gone", "../../etc"])

    # The container stopped: its cgroup went, the engine is asked (and says it is gone).
    (tmp_path / "docker" / ID_A / "cpu.stat").unlink()
    asked.clear()
    reader.usage([ID_A])
    assert asked == [ID_A]


def test_an_idle_replica_keeps_its_memory_read_until_its_cpu_moves_or_a_minute_passed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "docker" / ID_A
    write(
        folder,
        {
            "cpu.stat": "usage_usec 1000000\n",
            "memory.current": f"{30 * MiB}\n",
            "memory.stat": "inactive_file 0\n",
        },
    )
    now = [0.0]
    reader = ContainerUsage(lambda ref: {}, cgroup_root=tmp_path, monotonic=lambda: now[0])
    assert reader.usage([ID_A])[ID_A].memory_bytes == 30 * MiB

    # Nothing ran: the memory files are not read again (a changed one is not seen yet).
    (folder / "memory.current").write_text(f"{31 * MiB}\n")
    now[0] = 10.0
    assert reader.usage([ID_A])[ID_A] == ReplicaUsage(
        cpu_seconds=1.0, memory_bytes=30 * MiB, read_at=10.0
    )
    # The app ran: read again at once.
    (folder / "cpu.stat").write_text("usage_usec 1200000\n")
    now[0] = 20.0
    assert reader.usage([ID_A])[ID_A].memory_bytes == 31 * MiB
    # Idle again, but a minute after the last memory read: read again.
    (folder / "memory.current").write_text(f"{29 * MiB}\n")
    now[0] = 79.0
    assert reader.usage([ID_A])[ID_A].memory_bytes == 31 * MiB
    now[0] = 80.0
    assert reader.usage([ID_A])[ID_A].memory_bytes == 29 * MiB


class Resources:
    """A runtime whose replicas use what the test says."""

    def __init__(self) -> None:
        self.now: dict[str, ReplicaUsage] = {}

    def usage(self, refs: Iterable[str]) -> dict[str, ReplicaUsage]:
        return {ref: self.now[ref] for ref in refs if ref in self.now}


@pytest.fixture
def deployment(sessions: SessionFactory) -> str:
    with sessions() as session:
        add_web_revision(session)
        for replica_id, container_id in (("rep_busy", ID_A), ("rep_idle", ID_B)):
            session.add(
                Replica(
                    id=replica_id,
                    revision_id="rev_1",
                    container_name=replica_id,
                    container_id=container_id,
                    container_port=8000,
                    state=ReplicaState.ready,
                )
            )
        session.commit()
    return "dep_web"


def test_busy_replicas_get_ten_second_points_and_every_replica_a_minute_point(
    sessions: SessionFactory, deployment: str
) -> None:
    now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
    resources = Resources()
    sampler = MetricsSampler(
        sessions=sessions,
        scrape=lambda: [""],
        hostname=lambda slug: f"{slug}.localhost",
        clock=lambda: now[0],
        resources=resources,
    )
    for step in range(7):  # the baseline, then a minute of 10 s steps
        busy_cpu = 0.5 * 10 * step if step <= 3 else 15.0  # half a core for 30 s, then idle
        resources.now = {
            ID_A: ReplicaUsage(busy_cpu, (40 + step) * MiB, read_at=10.0 * step),
            ID_B: ReplicaUsage(0.2, 8 * MiB, read_at=10.0 * step),
        }
        sampler.sample()
        now[0] += timedelta(seconds=10)

    with sessions() as session:
        points = session.exec(select(ReplicaMetricPoint).order_by(col(ReplicaMetricPoint.at))).all()
    fine = [(p.replica_id, p.cpu_cores, p.memory_bytes) for p in points if p.step_seconds == 10]
    assert fine == [("rep_busy", 0.5, (40 + s) * MiB) for s in (1, 2, 3)]  # the idle one: none
    coarse = {p.replica_id: (p.cpu_cores, p.memory_bytes) for p in points if p.step_seconds == 60}
    assert coarse == {"rep_busy": (0.25, 46 * MiB), "rep_idle": (0.0, 8 * MiB)}

    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    views = _replica_views(replica_series(sessions, deployment, start, 60))
    assert {v.replica_id: v.points[0].memory_bytes for v in views} == {
        "rep_busy": 46 * MiB,
        "rep_idle": 8 * MiB,
    }

    scraped = PrometheusExposition(sessions).render().decode()
    samples = {
        (s.name, s.labels.get("replica")): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name.startswith("slipway_replica_")
    }
    assert samples == {
        ("slipway_replica_cpu_cores", "rep_busy"): 0.25,
        ("slipway_replica_memory_bytes", "rep_busy"): 46 * MiB,
        ("slipway_replica_cpu_cores", "rep_idle"): 0.0,
        ("slipway_replica_memory_bytes", "rep_idle"): 8 * MiB,
    }

    # A stopped replica is measured no more and leaves the scrape.
    with sessions() as session:
        gone = session.get(Replica, "rep_idle")
        assert gone is not None
        gone.state, gone.stopped_at = ReplicaState.stopped, now[0]
        session.add(gone)
        session.commit()
    resources.now[ID_A] = ReplicaUsage(16.0, 50 * MiB, read_at=70.0)
    sampler.sample()
    scraped = PrometheusExposition(sessions).render().decode()
    assert "rep_idle" not in scraped
    assert 'slipway_replica_cpu_cores{deployment="web",replica="rep_busy"} 0.1' in scraped
