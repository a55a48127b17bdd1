"""Which build pays when the engine's disk runs low: the step that wrote most, once."""

from __future__ import annotations

from pathlib import Path

from builders.build_limits import (
    KILL_GRACE_SECONDS,
    BuildSteps,
    DiskGuard,
    DiskVerdict,
    RunningStep,
)

FULL = 1 << 62
"""A reserve no disk has: the guard sees a full disk."""


class FakeSteps(BuildSteps):
    def __init__(self, steps: list[RunningStep]) -> None:
        self.steps = steps
        self.killed: list[str] = []

    def running(self) -> list[RunningStep]:
        return [step for step in self.steps if step.name not in self.killed]

    def kill(self, step: RunningStep) -> None:
        self.killed.append(step.name)


def test_the_step_that_wrote_most_is_killed_once_and_the_others_go_on(tmp_path: Path) -> None:
    now = [100.0]
    steps = FakeSteps([RunningStep("small", (1,), 10 << 20), RunningStep("filler", (2,), 3 << 30)])
    guard = DiskGuard(tmp_path, FULL, steps, clock=lambda: now[0])

    assert guard.check() is DiskVerdict.stopped_a_step
    assert steps.killed == ["filler"]
    assert guard.killed_since(99.0) and not guard.killed_since(101.0)
    # While BuildKit drops what the killed step wrote, nobody else pays.
    now[0] += KILL_GRACE_SECONDS / 2
    assert guard.check() is DiskVerdict.ok
    assert steps.killed == ["filler"]


def test_no_build_pays_for_a_disk_no_running_step_filled(tmp_path: Path) -> None:
    assert DiskGuard(tmp_path, FULL, FakeSteps([])).check() is DiskVerdict.not_a_build
    steps = FakeSteps([RunningStep("small", (1,), 10 << 20)])
    assert DiskGuard(tmp_path, FULL, steps).check() is DiskVerdict.not_a_build
    assert steps.killed == []


def test_enough_room_is_ok(tmp_path: Path) -> None:
    steps = FakeSteps([RunningStep("filler", (2,), 3 << 30)])
    assert DiskGuard(tmp_path, 0, steps).check() is DiskVerdict.ok
    assert steps.killed == []
