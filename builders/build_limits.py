"""CPU, memory and disk bounds on builds, where the engine's BuildKit lets them be set.

What the engine's embedded BuildKit honours (Docker 20.10 with cgroup v1, measured):
`docker build --cpu-quota/--memory/--cgroup-parent` are ignored with BuildKit, and every RUN
step of every build runs in its own cgroup under one parent, `/docker/buildkit` (cgroupfs
driver). Limits written on that parent bound all build steps together (cgroup limits are
hierarchical): builds cannot take the CPU and memory the apps and the platform need, though
two builds running at once share the bound. A step that goes past the memory bound is killed
by the kernel (exit 137) and its build fails, saying so.

Disk: BuildKit's snapshots live on the engine's filesystem with no per-build quota (overlay2
on ext4 has none). While builds run, the free space is watched (DiskGuard); when less than the
reserve is left, the running RUN step that wrote most (its overlay upper directories, found
through its processes' mounts) is killed: the build that fills the disk fails, and a build
running beside it goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
ENGINE_BUILD_CGROUP = "docker/buildkit"
"""Where dockerd (cgroupfs driver, default cgroup parent) puts every BuildKit RUN step."""
CFS_PERIOD_US = 100_000
MAX_WALK_ENTRIES = 200_000
"""Files counted per upper directory when sizing a step; a step that makes more than this is
also sized by the bytes its processes wrote."""
MIN_CULPRIT_BYTES = 256 * 1024**2
"""A step is killed for the disk only when it holds at least this: a step that wrote little
did not fill it (the disk may be low for reasons no build has)."""
KILL_GRACE_SECONDS = 15.0
"""After a step is killed for the disk, BuildKit takes a moment to drop what it wrote: no
other step (nor build) is stopped meanwhile."""


@dataclass(frozen=True)
class BuildLimits:
    cpus: float
    memory_bytes: int
    disk_reserve_bytes: int


class BuildCgroup:
    """The engine's build cgroup, bounded; `problem` says why it could not be (then builds run
    unbounded in CPU and memory, and the build log says so)."""

    def __init__(self, root: Path = CGROUP_ROOT, relative: str = ENGINE_BUILD_CGROUP) -> None:
        self._cpu = root / "cpu" / relative
        self._memory = root / "memory" / relative

    def apply(self, limits: BuildLimits) -> str | None:
        """Write the limits (idempotent: done before each build, in case dockerd made the
        cgroup anew). Returns a problem, or None when the bounds hold."""
        if not (self._cpu.parent.is_dir() and self._memory.parent.is_dir()):
            return (
                "no cgroup v1 `docker` hierarchy on this host (cgroup v2, a systemd cgroup driver "
                "or a remote engine): builds are not bounded in CPU and memory"
            )
        try:
            self._cpu.mkdir(exist_ok=True)
            self._memory.mkdir(exist_ok=True)
            (self._cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (self._cpu / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * CFS_PERIOD_US)))
            self._set_memory(limits.memory_bytes)
        except OSError as exc:
            return f"the build cgroup could not be bounded ({exc.strerror}): builds are unbounded"
        return None

    def _set_memory(self, limit: int) -> None:
        memory = self._memory / "memory.limit_in_bytes"
        swap = self._memory / "memory.memsw.limit_in_bytes"
        if not swap.exists():
            memory.write_text(str(limit))
            return
        # memsw must stay >= memory: raise it first when growing, lower it last when shrinking.
        try:
            memory.write_text(str(limit))
            swap.write_text(str(limit))
        except OSError:
            swap.write_text(str(limit))
            memory.write_text(str(limit))


def free_bytes(path: Path) -> int | None:
    """Free space where the engine keeps its data; None when that is not on this machine."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass(frozen=True)
class RunningStep:
    """One RUN step BuildKit runs now, by its cgroup (any build's: they are not told apart)."""

    name: str
    pids: tuple[int, ...]
    written_bytes: int


class BuildSteps:
    """The engine's running RUN steps, and how to stop one."""

    def __init__(self, root: Path = CGROUP_ROOT, relative: str = ENGINE_BUILD_CGROUP) -> None:
        self._steps = root / "pids" / relative

    def running(self) -> list[RunningStep]:
        steps: list[RunningStep] = []
        with contextlib.suppress(OSError):
            for cgroup in self._steps.iterdir():
                pids = _pids(cgroup)
                if pids:
                    steps.append(RunningStep(cgroup.name, pids, _written(pids)))
        return steps

    def kill(self, step: RunningStep) -> None:
        """SIGKILL every process of the step (again while it forks), for a few rounds."""
        cgroup = self._steps / step.name
        for _ in range(10):
            pids = _pids(cgroup)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


def _pids(cgroup: Path) -> tuple[int, ...]:
    try:
        return tuple(int(line) for line in (cgroup / "cgroup.procs").read_text().split())
    except (OSError, ValueError):
        return ()


def _written(pids: tuple[int, ...]) -> int:
    """What the step holds on disk: its overlay upper directories, or the bytes its live
    processes wrote when that is more (a step of many tiny files is not walked whole)."""
    uppers: set[str] = set()
    written = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
                for option in line.rsplit(" ", 1)[-1].split(","):
                    if option.startswith("upperdir="):
                        uppers.add(option.removeprefix("upperdir="))
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    written += int(line.split(":", 1)[1])
    return max(sum(_size(Path(upper)) for upper in uppers), written)


def _size(top: Path) -> int:
    total, seen = 0, 0
    stack = [top]
    while stack and seen < MAX_WALK_ENTRIES:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                seen += 1
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


class DiskVerdict(StrEnum):
    ok = "ok"
    stopped_a_step = "stopped-a-step"
    """A step that filled the disk was killed; its build fails on its own."""
    not_a_build = "not-a-build"
    """The disk is low but no running step holds much of it: no build is stopped for it."""


class DiskGuard:
    """Shared by the builds of one process; each asks `check` while it runs."""

    def __init__(
        self,
        engine_root: Path,
        reserve_bytes: int,
        steps: BuildSteps | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = engine_root
        self._reserve = reserve_bytes
        self._steps = steps or BuildSteps()
        self._clock = clock
        self._lock = threading.Lock()
        self._last_kill: float | None = None

    def check(self) -> DiskVerdict:
        free = free_bytes(self._root)
        if free is None or free >= self._reserve:
            return DiskVerdict.ok
        with self._lock:
            now = self._clock()
            if self._last_kill is not None and now - self._last_kill < KILL_GRACE_SECONDS:
                return DiskVerdict.ok
            steps = self._steps.running()
            largest = max(steps, key=lambda step: step.written_bytes, default=None)
            if largest is None or largest.written_bytes < MIN_CULPRIT_BYTES:
                return DiskVerdict.not_a_build
            log.warning(
                "build step killed: the disk is full",
                extra={"step": largest.name, "written_bytes": largest.written_bytes},
            )
            self._steps.kill(largest)
            self._last_kill = self._clock()
            return DiskVerdict.stopped_a_step

    def killed_since(self, started: float) -> bool:
        """Whether this guard killed a step after `started` (on its clock)."""
        return self._last_kill is not None and self._last_kill >= started
