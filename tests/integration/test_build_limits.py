"""A build cannot take the machine: its steps are bounded in CPU and memory (on the engine's
build cgroup, see builders/build_limits.py), and one that fills the disk is stopped and fails
alone.

These tests write limits on the engine's shared build cgroup for a few seconds and put back
what was there: other builds on this engine share the bound meanwhile.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builders.build_limits import CGROUP_ROOT, ENGINE_BUILD_CGROUP, BuildCgroup, BuildLimits
from builders.errors import BuildError
from builders.images import BuildKitBuilder
from manifests.recipes import BuildPlan
from tests.support.images import DOCKER, ensure_python_pip_image
from tests.support.platform import wait_for

pytestmark = pytest.mark.docker

MiB = 1024**2
LIMIT_FILES = (
    f"memory/{ENGINE_BUILD_CGROUP}/memory.memsw.limit_in_bytes",
    f"memory/{ENGINE_BUILD_CGROUP}/memory.limit_in_bytes",
    f"cpu/{ENGINE_BUILD_CGROUP}/cpu.cfs_quota_us",
    f"cpu/{ENGINE_BUILD_CGROUP}/cpu.cfs_period_us",
)


@pytest.fixture
def cgroup() -> Iterator[BuildCgroup]:
    """The engine's build cgroup, its limits as they were put back afterwards."""
    if not (CGROUP_ROOT / "memory" / ENGINE_BUILD_CGROUP).is_dir():
        pytest.skip("no cgroup v1 build cgroup of the engine's here")
    before = {name: (CGROUP_ROOT / name).read_text() for name in LIMIT_FILES}
    yield BuildCgroup()
    unlimited = str(2**63 - 1)
    # Memory: lift both first (memsw must stay >= memory), then the old values, memsw last.
    for name in LIMIT_FILES[:2]:
        (CGROUP_ROOT / name).write_text(unlimited)
    for name in reversed(LIMIT_FILES):
        (CGROUP_ROOT / name).write_text(before[name])


def build(
    root: Path,
    limits: BuildLimits | None,
    step: str,
    tags: list[str],
    script: str = "",
    timeout_seconds: float = 300,
    builder: BuildKitBuilder | None = None,
) -> tuple[str, Exception | None]:
    """(the build log, the error it failed with) of one RUN `step` on the Python base, with
    `script` at /script.py."""
    context = root / "src"
    context.mkdir(parents=True)
    (context / "script.py").write_text(script)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(
        f"FROM {ensure_python_pip_image()}\nCOPY script.py /script.py\n"
        f"RUN echo {uuid.uuid4().hex}\nRUN {step}\n"
    )
    tag = f"slipway-test/build-limits:{uuid.uuid4().hex[:8]}"
    tags.append(tag)
    plan = BuildPlan(
        recipe="dockerfile",
        context_dir=context,
        dockerfile=dockerfile,
        dockerfile_path="Dockerfile",
        cache_scope="build-limits-test",
    )
    log = root / "build.log"
    error: Exception | None = None
    try:
        (builder or BuildKitBuilder(DOCKER, limits=limits)).build(
            plan, tag, {}, log, cancelled=lambda: False, timeout_seconds=timeout_seconds
        )
    except BuildError as exc:
        error = exc
    return log.read_text(), error


ALLOCATE = "python3 -c \"x = b'x' * ({mib} * 2**20); print('allocated', len(x) >> 20, 'MiB')\""
SPIN = """
import os, time
start = time.time()
for _ in range(2):
    if os.fork() == 0:
        end = time.time() + 4
        while time.time() < end:
            pass
        os._exit(0)
os.wait()
os.wait()
t = os.times()
print(f"spun cpu={t.children_user + t.children_system:.2f} wall={time.time() - start:.2f}")
"""
"""Two processes spinning for 4 s each, then their CPU time and the wall time."""


def test_a_step_allocating_past_the_memory_bound_is_killed_and_the_build_says_so(
    tmp_path: Path, cgroup: BuildCgroup, tags: list[str]
) -> None:
    limits = BuildLimits(cpus=2.0, memory_bytes=512 * MiB, disk_reserve_bytes=0)
    log, error = build(tmp_path / "over", limits, ALLOCATE.format(mib=900), tags)
    assert error is not None, log[-2000:]
    assert "ran out of memory" in str(error) and "512 MiB" in str(error)
    assert "Killed" in log
    assert "allocated 900 MiB" not in log
    # Under the bound, the same step runs.
    log, error = build(tmp_path / "under", limits, ALLOCATE.format(mib=200), tags)
    assert error is None and "allocated 200 MiB" in log, log[-2000:]


def test_a_cpu_spinner_gets_no_more_than_the_cpu_bound(
    tmp_path: Path, cgroup: BuildCgroup, tags: list[str]
) -> None:
    limits = BuildLimits(cpus=0.5, memory_bytes=1024 * MiB, disk_reserve_bytes=0)
    log, error = build(tmp_path / "spin", limits, "python3 /script.py", tags, script=SPIN)
    assert error is None, log[-2000:]
    found = re.search(r"spun cpu=([\d.]+) wall=([\d.]+)", log)
    assert found is not None, log[-2000:]
    cpu, wall = float(found.group(1)), float(found.group(2))
    # Two spinners for 4 s would take 8 CPU-seconds unbounded (on 2 cores); 0.5 CPU gives 2.
    assert cpu <= 0.5 * wall * 1.15, (cpu, wall)


def test_a_build_that_fills_the_disk_is_stopped_and_fails_alone(
    tmp_path: Path, cgroup: BuildCgroup, tags: list[str]
) -> None:
    root = Path(
        subprocess.run(
            [DOCKER, "info", "--format", "{{.DockerRootDir}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    free = shutil.disk_usage(root).free
    # Leave 400 MiB before the reserve; one build tries to write 3 GiB while another, beside
    # it, writes a little and takes its time.
    limits = BuildLimits(cpus=2.0, memory_bytes=2048 * MiB, disk_reserve_bytes=free - 400 * MiB)
    builder = BuildKitBuilder(DOCKER, limits=limits)
    steps = {
        "filler": "dd if=/dev/zero of=/filler bs=1M count=3072",
        "neighbour": "dd if=/dev/zero of=/small bs=1M count=20 && sleep 8 && echo neighbour done",
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = {
            name: pool.submit(build, tmp_path / name, limits, step, tags, builder=builder)
            for name, step in steps.items()
        }
        (filler_log, filler_error), (neighbour_log, neighbour_error) = (
            results["filler"].result(timeout=300),
            results["neighbour"].result(timeout=300),
        )
    assert filler_error is not None, filler_log[-2000:]
    assert "filled the disk" in str(filler_error)
    assert "3221225472 bytes" not in filler_log  # dd never finished
    assert neighbour_error is None, neighbour_log[-2000:]
    assert "neighbour done" in neighbour_log
    # What the step wrote is given back once BuildKit drops the killed step.
    wait_for(
        "the stopped step's files to be removed",
        lambda: shutil.disk_usage(root).free > free - 200 * MiB,
        60,
    )


def test_a_build_past_its_time_is_stopped_and_its_step_does_not_run_on(
    tmp_path: Path, tags: list[str]
) -> None:
    marker = str(600 + uuid.uuid4().int % 300)  # a sleep no other process on the host runs
    log, error = build(tmp_path / "slow", None, f"sleep {marker}", tags, timeout_seconds=3)
    assert error is not None and "longer than 3 s" in str(error), log[-2000:]
    wait_for(
        "the stopped step's process to end",
        lambda: (
            not any(
                cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", marker.encode()]
                for cmdline in Path("/proc").glob("[0-9]*/cmdline")
                if _readable(cmdline)
            )
        ),
        30,
    )


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True
