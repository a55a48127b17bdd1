"""How long an idle worker waits before it looks at the queue again, what ends the wait, and
an enqueue's announcement (the same on a real Valkey: tests/integration/test_worker_wake.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from arq import cron
from arq.connections import ArqRedis
from arq.jobs import Job
from arq.utils import timestamp_ms
from arq.worker import func
from redis.exceptions import ConnectionError as RedisConnectionError

from app.adapters.queue import JobQueue
from jobs.wake import WakeUps
from jobs.worker import CRON_LEAD_SECONDS, ReconnectingWorker

SAFETY_POLL = 30.0


async def nothing(ctx: dict[str, Any]) -> None:
    return None


class Queue:
    """The one read the wait makes: the first job queued for later than a moment."""

    def __init__(self, later_ms: int | None = None) -> None:
        self.later_ms = later_ms
        self.asked_after: list[str] = []

    async def zrangebyscore(self, name: str, **kwargs: Any) -> list[tuple[bytes, float]]:
        self.asked_after.append(kwargs["min"])
        return [] if self.later_ms is None else [(b"job", float(self.later_ms))]


def worker(queue: Queue, *, crons: bool = False) -> ReconnectingWorker:
    made = ReconnectingWorker(
        functions=[func(nothing, name="nothing")],
        cron_jobs=[cron(nothing, name="tick", second=0)] if crons else None,
        handle_signals=False,
        idle_poll=SAFETY_POLL,
    )
    made._pool = queue  # type: ignore[assignment]
    return made


def test_with_nothing_queued_for_later_the_worker_waits_for_the_safety_poll() -> None:
    async def scenario() -> None:
        queue = Queue()
        looked_at = timestamp_ms()
        assert await worker(queue)._seconds_to_next_look(looked_at) == SAFETY_POLL
        # Jobs due by the look were seen by it: only later ones are asked for.
        assert queue.asked_after == [f"({looked_at}"]

    asyncio.run(scenario())


def test_a_job_deferred_to_sooner_ends_the_wait_when_it_is_due() -> None:
    async def scenario() -> None:
        waiting = await worker(Queue(timestamp_ms() + 3000))._seconds_to_next_look(timestamp_ms())
        assert 2.5 < waiting <= 3.0
        overdue = await worker(Queue(timestamp_ms() - 50))._seconds_to_next_look(timestamp_ms())
        assert overdue == 0.0

    asyncio.run(scenario())


def test_a_cron_ends_the_wait_in_time_for_arq_to_enqueue_it() -> None:
    async def scenario() -> None:
        waiting_worker = worker(Queue(), crons=True)
        [tick] = waiting_worker.cron_jobs
        tick.next_run = datetime.now(tz=waiting_worker.timezone) + timedelta(seconds=4)
        waiting = await waiting_worker._seconds_to_next_look(timestamp_ms())
        assert 3.0 < waiting <= 4.0 - CRON_LEAD_SECONDS

    asyncio.run(scenario())


def test_a_wake_up_before_the_wait_ends_it_at_once_and_a_cleared_one_does_not() -> None:
    async def scenario() -> None:
        wake_ups = WakeUps()
        wake_ups.wake()  # announced while the worker was looking at the queue
        started = time.monotonic()
        assert await wake_ups.wait(SAFETY_POLL)
        assert time.monotonic() - started < 0.1

        wake_ups.clear()
        assert not await wake_ups.wait(0.05)

        later = asyncio.get_running_loop().call_later(0.05, wake_ups.wake)
        started = time.monotonic()
        assert await wake_ups.wait(SAFETY_POLL)
        assert time.monotonic() - started < 1.0
        later.cancel()

    asyncio.run(scenario())


def test_a_job_queued_but_not_announced_is_still_queued(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue dropped between arq's transaction and the announcement: the caller is told
    the job is queued (a worker finds it at its safety poll), not that it failed."""
    queued = Job("job-1", redis=None)  # type: ignore[arg-type]

    async def enqueue(self: ArqRedis, function: str, *args: Any, **kwargs: Any) -> Job:
        return queued

    async def publish(self: JobQueue, channel: str, message: bytes) -> int:
        raise RedisConnectionError("Connection reset by peer")

    monkeypatch.setattr(ArqRedis, "enqueue_job", enqueue)
    monkeypatch.setattr(JobQueue, "publish", publish)

    async def scenario() -> None:
        queue = JobQueue()
        try:
            assert await queue.enqueue_job("nothing") is queued
        finally:
            await queue.aclose()

    asyncio.run(scenario())
    assert "job queued but not announced" in caplog.text
