"""Replicas' CPU and memory, read from the kernel's cgroup files when the platform can see them,
else from the Docker engine.

The engine's `GET /containers/{id}/stats?stream=false&one-shot=true` costs a request, and the
engine's own work (it reads the same cgroup files, then its JSON), per replica every 10 s; and
Docker 20.10 answers it from its stats collector, which publishes once a second: a call waits
up to a second (measured: 7 ms when it came just before a tick, 1.0 s otherwise), so 20
replicas asked one after the other took 20 s, more than the sampler's 10 s step. A platform
running on the engine's host reads the files itself: three small files per replica
(bench/metrics_idle.py measures both). Where the files are not found (the platform in a
container of its own, a remote engine, a cgroup parent of the operator's), the engine is
asked, ENGINE_CALLS_AT_ONCE replicas at a time, so they wait for the same tick.

Layouts read (the engine's default cgroup parent, either cgroup driver):
- cgroup v2: `<root>/docker/<id>/` (cgroupfs) or `<root>/system.slice/docker-<id>.scope/`
  (systemd): `cpu.stat` (`usage_usec`), `memory.current` less `memory.stat`'s `inactive_file`.
- cgroup v1: `<root>/cpuacct/…` (`cpuacct.usage`, ns) and `<root>/memory/…`
  (`memory.usage_in_bytes` less `memory.stat`'s `total_inactive_file`). A hybrid host (v1
  controllers with the v2 tree beside them, as Debian 12's Docker 20.10 with cgroupfs) has
  v2's `cpu.stat` but v1's memory: CPU and memory are each looked for on their own.

Memory is counted as `docker stats` counts it: without the inactive page cache, which the
kernel drops before it would kill the app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.kernel.ports import ReplicaUsage
from builders.engine_errors import NoSuchContainer
from builders.errors import EngineError

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMORY_REREAD_SECONDS = 60.0
"""A replica whose CPU counter did not move since its last read keeps that read's memory for up
to this long: a process that ran nothing allocated nothing, and `memory.stat` is the dear file
of the three (the kernel sums it over the cgroup's pages; ~40 lines). With 100 idle replicas
that is 200 of the 300 file reads every 10 s saved; the minute's point still has a fresh read."""
ENGINE_CALLS_AT_ONCE = 16
"""Engine stats asked at once where the cgroup files are not seen: each call waits for the
engine's next once-a-second collection, and calls made together wait for the same one."""


@dataclass(frozen=True)
class CgroupFiles:
    """Where one container's counters are: the CPU file (and whether it is v2's cpu.stat in
    microseconds or v1's cpuacct.usage in nanoseconds), and the memory folder."""

    cpu: Path
    cpu_v2: bool
    memory: Path
    memory_v2: bool


def _container_dirs(root: Path, controller: str | None, container_id: str) -> list[Path]:
    base = root / controller if controller else root
    return [base / "docker" / container_id, base / "system.slice" / f"docker-{container_id}.scope"]


def find_cgroup_files(root: Path, container_id: str) -> CgroupFiles | None:
    """The container's counter files under `root`, if this process sees them."""
    if not container_id.isalnum():  # a container id is hex: nothing else becomes a path
        return None
    cpu: tuple[Path, bool] | None = None
    for folder in _container_dirs(root, None, container_id):
        if (folder / "cpu.stat").is_file():
            cpu = (folder / "cpu.stat", True)
            break
    if cpu is None:
        for controller in ("cpuacct", "cpu,cpuacct"):
            for folder in _container_dirs(root, controller, container_id):
                if (folder / "cpuacct.usage").is_file():
                    cpu = (folder / "cpuacct.usage", False)
                    break
            if cpu:
                break
    memory: tuple[Path, bool] | None = None
    for folder in _container_dirs(root, None, container_id):
        if (folder / "memory.current").is_file():
            memory = (folder, True)
            break
    if memory is None:
        for folder in _container_dirs(root, "memory", container_id):
            if (folder / "memory.usage_in_bytes").is_file():
                memory = (folder, False)
                break
    if cpu is None or memory is None:
        return None
    return CgroupFiles(cpu=cpu[0], cpu_v2=cpu[1], memory=memory[0], memory_v2=memory[1])


def read_cgroup(files: CgroupFiles, read_at: float) -> ReplicaUsage:
    """One read of the counters (OSError when the container went away meanwhile)."""
    return ReplicaUsage(
        cpu_seconds=read_cpu_seconds(files), memory_bytes=read_memory_bytes(files), read_at=read_at
    )


def read_cpu_seconds(files: CgroupFiles) -> float:
    if files.cpu_v2:
        return _stat_field(files.cpu.read_text(), "usage_usec") / 1e6
    return int(files.cpu.read_text()) / 1e9


def read_memory_bytes(files: CgroupFiles) -> int:
    if files.memory_v2:
        used = int((files.memory / "memory.current").read_text())
        inactive = _stat_field((files.memory / "memory.stat").read_text(), "inactive_file")
    else:
        used = int((files.memory / "memory.usage_in_bytes").read_text())
        inactive = _stat_field((files.memory / "memory.stat").read_text(), "total_inactive_file")
    return max(0, used - int(inactive))


def _stat_field(text: str, name: str) -> float:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return float(value)
    return 0.0


def usage_from_engine_stats(stats: dict[str, Any], read_at: float) -> ReplicaUsage | None:
    """The engine's one-shot stats of a running container (None for one that is not: the
    engine answers zeros for it)."""
    cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
    memory = stats.get("memory_stats") or {}
    if "total_usage" not in cpu or "usage" not in memory:
        return None
    detail = memory.get("stats") or {}
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    return ReplicaUsage(
        cpu_seconds=int(cpu["total_usage"]) / 1e9,
        memory_bytes=max(0, int(memory["usage"]) - int(inactive)),
        read_at=read_at,
    )


class ContainerUsage:
    """`ReplicaResources` on one Docker engine: cgroup files where seen, else the engine."""

    def __init__(
        self,
        engine_stats: Callable[[str], dict[str, Any]],
        cgroup_root: Path = CGROUP_ROOT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`engine_stats`: a container id → the engine's one-shot stats of it (raising
        EngineError, NoSuchContainer for one gone)."""
        self._engine_stats = engine_stats
        self._root = cgroup_root
        self._monotonic = monotonic
        self._files: dict[str, CgroupFiles | None] = {}
        """Each container's files, looked for once (None: not seen here, the engine answers)."""
        self._read: dict[str, tuple[ReplicaUsage, float]] = {}
        """Each container's last read from its files, and when its memory was last read."""
        self._calls: ThreadPoolExecutor | None = None

    def usage(self, refs: Iterable[str]) -> dict[str, ReplicaUsage]:
        wanted = list(dict.fromkeys(refs))
        self._files = {ref: self._files[ref] for ref in wanted if ref in self._files}
        self._read = {ref: self._read[ref] for ref in wanted if ref in self._read}
        found: dict[str, ReplicaUsage] = {}
        ask_engine: list[str] = []
        for ref in wanted:
            if ref not in self._files:
                self._files[ref] = find_cgroup_files(self._root, ref)
            files = self._files[ref]
            if files is not None:
                try:
                    found[ref] = self._from_files(ref, files)
                    continue
                except (OSError, ValueError):
                    # Gone (a stopped container's cgroup is removed), or moved: ask the engine.
                    self._files[ref] = None
                    self._read.pop(ref, None)
            ask_engine.append(ref)
        if len(ask_engine) == 1:
            readings = [self._from_engine(ask_engine[0])]
        elif ask_engine:
            if self._calls is None:
                self._calls = ThreadPoolExecutor(
                    max_workers=ENGINE_CALLS_AT_ONCE, thread_name_prefix="replica-stats"
                )
            readings = list(self._calls.map(self._from_engine, ask_engine))
        else:
            readings = []
        for ref, reading in zip(ask_engine, readings, strict=True):
            if reading is not None:
                found[ref] = reading
        return found

    def _from_files(self, ref: str, files: CgroupFiles) -> ReplicaUsage:
        now = self._monotonic()
        cpu_seconds = read_cpu_seconds(files)
        last = self._read.get(ref)
        if last is not None:
            reading, memory_read_at = last
            if reading.cpu_seconds == cpu_seconds and now - memory_read_at < MEMORY_REREAD_SECONDS:
                kept = ReplicaUsage(
                    cpu_seconds=cpu_seconds, memory_bytes=reading.memory_bytes, read_at=now
                )
                self._read[ref] = (kept, memory_read_at)
                return kept
        fresh = ReplicaUsage(
            cpu_seconds=cpu_seconds, memory_bytes=read_memory_bytes(files), read_at=now
        )
        self._read[ref] = (fresh, now)
        return fresh

    def _from_engine(self, ref: str) -> ReplicaUsage | None:
        try:
            stats = self._engine_stats(ref)
        except NoSuchContainer:
            return None
        except EngineError as exc:
            log.warning("the Docker engine gave no stats of %s: %s", ref, exc)
            return None
        return usage_from_engine_stats(stats, self._monotonic())
