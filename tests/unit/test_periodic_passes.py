"""The worker's periodic passes: when each is due, that only the lease's holder runs them, that
a slow pass is not started again beside itself, and that a failing one does not stop the rest
(the lease on a real Valkey: tests/integration/test_periodic_lease.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.kernel.settings import Settings
from jobs.ticks import Periodic, PeriodicLease, Ticker, holder_name, next_due
from jobs.worker import periodic_passes

AT = datetime(2026, 12, 7, 13, 16, 59, 400_000, tzinfo=UTC)


async def nothing(ctx: dict[str, Any]) -> None:
    return None


def test_a_pass_is_due_at_its_next_second_of_the_minute() -> None:
    every_ten = Periodic("p", nothing, frozenset(range(0, 60, 10)), timeout=1)
    assert next_due(every_ten, AT) == AT.replace(minute=17, second=0, microsecond=0)
    on_the_second = AT.replace(second=10, microsecond=0)
    assert next_due(every_ten, on_the_second) == on_the_second.replace(second=20)


def test_an_hourly_pass_is_due_at_its_minute_of_the_next_hour_once_this_ones_passed() -> None:
    hourly = Periodic("p", nothing, frozenset({0}), timeout=1, minute=17)
    assert next_due(hourly, AT) == AT.replace(minute=17, second=0, microsecond=0)
    assert next_due(hourly, AT.replace(minute=17, second=0)) == AT.replace(
        hour=14, minute=17, second=0, microsecond=0
    )


def test_a_pass_needs_seconds_of_a_minute() -> None:
    with pytest.raises(ValueError, match="seconds of a minute"):
        Periodic("p", nothing, frozenset(), timeout=1)
    with pytest.raises(ValueError, match="seconds of a minute"):
        Periodic("p", nothing, frozenset({60}), timeout=1)


def test_the_reconcilers_pass_follows_its_tick_and_the_janitor_waits_for_its_hour() -> None:
    passes = {
        p.name: p for p in periodic_passes(Settings(_env_file=None, autoscale_tick_seconds=1))
    }
    assert passes["reconcile"].seconds == frozenset(range(60))
    assert passes["clean_up"].minute is not None and not passes["clean_up"].at_start


class MemoryRedis:
    """The one call the lease makes, as Redis's script would answer it, in memory."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.down = False

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> int:
        if self.down:
            raise ConnectionError("refused")
        holder = str(keys_and_args[1])
        if "DEL" in script:
            if self.holder == holder:
                self.holder = None
                return 1
            return 0
        if self.holder in (None, holder):
            self.holder = holder
            return 1
        return 0


def run_for(ticker: Ticker, until: Any, seconds: float) -> None:
    """Runs the ticker until `until()` holds (or `seconds` pass), then stops it."""

    async def scenario() -> None:
        task = asyncio.create_task(ticker.run())
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


EVERY_SECOND = frozenset(range(60))


def test_the_holder_runs_its_passes_at_start_and_when_due_and_frees_the_lease_on_stop() -> None:
    redis = MemoryRedis()
    runs: list[float] = []

    async def count(ctx: dict[str, Any]) -> None:
        runs.append(time.monotonic())

    ticker = Ticker(
        (Periodic("count", count, EVERY_SECOND, timeout=5),),
        PeriodicLease(redis, key="q:periodic-lease"),
        {},
    )
    run_for(ticker, lambda: len(runs) >= 3, 10)
    assert len(runs) >= 3
    assert 0.5 < runs[2] - runs[1] < 1.5  # once a second, not back to back
    assert redis.holder is None  # released on stop: another worker takes over at once


def test_a_worker_without_the_lease_runs_nothing() -> None:
    redis = MemoryRedis()
    redis.holder = "another worker"
    runs: list[str] = []

    async def count(ctx: dict[str, Any]) -> None:
        runs.append("ran")

    ticker = Ticker(
        (Periodic("count", count, EVERY_SECOND, timeout=5),),
        PeriodicLease(redis, key="q:periodic-lease"),
        {},
    )
    run_for(ticker, lambda: False, 2.5)
    assert runs == []
    assert redis.holder == "another worker"


def test_a_slow_pass_is_not_started_beside_itself_and_a_failing_one_stops_nothing() -> None:
    redis = MemoryRedis()
    slow_started: list[float] = []
    other: list[float] = []

    async def slow(ctx: dict[str, Any]) -> None:
        slow_started.append(time.monotonic())
        await asyncio.sleep(30)

    async def failing(ctx: dict[str, Any]) -> None:
        other.append(time.monotonic())
        raise RuntimeError("this pass fails every time")

    ticker = Ticker(
        (
            Periodic("slow", slow, EVERY_SECOND, timeout=60),
            Periodic("failing", failing, EVERY_SECOND, timeout=5),
        ),
        PeriodicLease(redis, key="q:periodic-lease"),
        {},
    )
    run_for(ticker, lambda: len(other) >= 3, 10)
    assert len(other) >= 3, "a failing pass is run again at its next time"
    assert len(slow_started) == 1, "the slow pass was started again while it still ran"


def test_a_pass_past_its_timeout_is_cancelled_and_runs_again_when_due() -> None:
    redis = MemoryRedis()
    started: list[float] = []

    async def hangs(ctx: dict[str, Any]) -> None:
        started.append(time.monotonic())
        await asyncio.sleep(30)

    ticker = Ticker(
        (Periodic("hangs", hangs, EVERY_SECOND, timeout=0.3),),
        PeriodicLease(redis, key="q:periodic-lease"),
        {},
    )
    run_for(ticker, lambda: len(started) >= 2, 10)
    assert len(started) >= 2


def test_with_redis_gone_the_holder_keeps_the_lease_only_until_it_would_have_expired() -> None:
    async def scenario() -> None:
        redis = MemoryRedis()
        clock = [100.0]
        lease = PeriodicLease(redis, key="q:periodic-lease", seconds=15, monotonic=lambda: clock[0])
        assert await lease.hold()
        redis.down = True
        clock[0] = 110.0
        assert await lease.hold()  # no other worker can have it before 115
        clock[0] = 115.5
        assert not await lease.hold()

    asyncio.run(scenario())


def test_a_restarted_worker_holds_the_name_of_the_dead_one_and_a_second_live_one_another(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "periodic-holder"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    first = holder_name(path, pid=int(dead.stdout))
    assert path.stat().st_mode & 0o777 == 0o600
    # Its process is gone: the next worker renews its lease at once.
    assert holder_name(path) == first
    # That one (this process) still runs: a second worker is a holder of its own.
    assert holder_name(path) != first
    path.write_text("not a pid\n")
    assert holder_name(path).isalnum()
