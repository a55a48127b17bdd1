"""CPU, memory and disk bounds on builds, where the engine's BuildKit lets them be set.

What the engine's embedded BuildKit honours (Docker 20.10 with cgroup v1, measured):
`docker build --cpu-quota/--memory/--cgroup-parent` are ignored with BuildKit, and every RUN
step of every build runs in its own cgroup under one parent, `/docker/buildkit` (cgroupfs
driver). Limits written on that parent bound all build steps together (cgroup limits are
hierarchical): builds cannot take the CPU and memory the apps and the platform need, though
two builds running at once share the bound. A step that goes past the memory bound is killed
by the kernel (exit 137) and its build fails, saying so.

Disk: BuildKit's snapshots live on the engine's filesystem with no per-build quota (overlay2
on ext4 has none), so the builder watches the free space while a build runs and stops the
build when less than the reserve is left: the build that fills the disk fails, alone.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
ENGINE_BUILD_CGROUP = "docker/buildkit"
"""Where dockerd (cgroupfs driver, default cgroup parent) puts every BuildKit RUN step."""
CFS_PERIOD_US = 100_000


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
