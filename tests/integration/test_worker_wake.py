"""The worker waits for work instead of polling for it, on a real Valkey: a job announced while
it waits starts at once, deferred jobs, retries and crons still run on time, and an idle worker
makes a few Redis calls a second, not fifty.

Each worker here has a 30 s safety poll, so anything that starts within a second was woken."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from arq import Retry, cron
from arq.worker import func

from app.adapters.queue import JobQueue, create_queue, redis_settings, wake_channel
from app.api.webhooks import DeliveryQueue
from app.kernel.orders import QUEUE_NAME
from app.kernel.settings import Settings
from app.server.embedded import EmbeddedRedis
from jobs.worker import ReconnectingWorker

pytestmark = pytest.mark.timeout(120)

QUEUE = "wake-test"
SAFETY_POLL_SECONDS = 30.0
AT_ONCE_SECONDS = 1.0
"""Far below the safety poll, far above the few milliseconds a wake-up takes."""


def settings_of(valkey: EmbeddedRedis, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", redis_url=valkey.url)


async def record(ctx: dict[str, Any], word: str) -> None:
    ctx["started"].append((word, time.monotonic()))


async def retried_once(ctx: dict[str, Any]) -> None:
    ctx["started"].append(("try", time.monotonic()))
    if ctx["job_try"] == 1:
        raise Retry(defer=1.5)


async def tick(ctx: dict[str, Any]) -> None:
    ctx["started"].append(("tick", time.monotonic()))


@asynccontextmanager
async def running_worker(settings: Settings, **options: Any) -> AsyncIterator[dict[str, Any]]:
    """A worker on QUEUE until the block ends; its ctx (ctx["started"]: (word, when))."""
    ctx: dict[str, Any] = {"started": []}
    options.setdefault("idle_poll", SAFETY_POLL_SECONDS)
    worker = ReconnectingWorker(
        functions=[
            func(record, name="record", keep_result=0),
            func(retried_once, name="retried_once", keep_result=0),
        ],
        redis_settings=redis_settings(settings),
        queue_name=QUEUE,
        poll_delay=0,
        handle_signals=False,
        ctx=ctx,
        **options,
    )
    running = asyncio.create_task(worker.async_run())
    queue = await create_queue(redis_settings(settings), default_queue_name=QUEUE)
    try:
        # Subscribed to its wake channel: what is announced from now on wakes it.
        await until("the worker listening", lambda: subscribers(queue), 20)
        ctx["queue"] = queue
        yield ctx
        assert not running.done(), "the worker exited"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()
        await queue.aclose()


async def subscribers(queue: JobQueue) -> bool:
    counts = await queue.pubsub_numsub(wake_channel(QUEUE))
    return bool(counts and counts[0][1] > 0)


async def until(what: str, check: Callable[[], Awaitable[bool] | bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        outcome = check()
        if await outcome if isinstance(outcome, Awaitable) else outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def started_within(ctx: dict[str, Any], word: str, since: float, seconds: float) -> float:
    await until(f"job {word!r} to start", lambda: word in dict(ctx["started"]), seconds + 5)
    delay = float(dict(ctx["started"])[word]) - since
    assert delay < seconds, f"{word!r} started {delay:.3f} s after it was enqueued"
    return delay


def test_a_job_enqueued_while_the_worker_waits_starts_at_once(
    valkey: EmbeddedRedis, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_worker(settings_of(valkey, tmp_path)) as ctx:
            for n in range(5):
                await asyncio.sleep(0.3)  # waiting again
                since = time.monotonic()
                await ctx["queue"].enqueue_job("record", f"job {n}")
                await started_within(ctx, f"job {n}", since, AT_ONCE_SECONDS)

    asyncio.run(scenario())


def test_a_delivery_queued_by_the_webhook_receiver_wakes_the_worker(
    valkey: EmbeddedRedis, tmp_path: Path
) -> None:
    """The receiver's script announces its jobs as JobQueue does (on the platform's queue)."""

    async def scenario() -> None:
        settings = settings_of(valkey, tmp_path)
        queue = await create_queue(redis_settings(settings))
        pubsub = queue.pubsub()
        try:
            await pubsub.subscribe(wake_channel(QUEUE_NAME))
            assert await pubsub.get_message(timeout=5)  # the subscription's confirmation
            assert await DeliveryQueue(queue).put("delivery-1")
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None and message["type"] == "message", message
            assert not await DeliveryQueue(queue).put("delivery-1")  # queued already: no news
            assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await queue.aclose()

    asyncio.run(scenario())


def test_deferred_jobs_and_retries_run_on_time(valkey: EmbeddedRedis, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_worker(settings_of(valkey, tmp_path)) as ctx:
            since = time.monotonic()
            await ctx["queue"].enqueue_job("record", "later", _defer_by=2.0)
            delay = await started_within(ctx, "later", since, 2.0 + AT_ONCE_SECONDS)
            assert delay >= 1.9, f"a job deferred by 2 s started after {delay:.3f} s"

            since = time.monotonic()
            await ctx["queue"].enqueue_job("retried_once")
            await until("the second try", lambda: len(ctx["started"]) == 3, 10)
            first, second = ctx["started"][1][1], ctx["started"][2][1]
            assert first - since < AT_ONCE_SECONDS
            # arq defers a retry from the job's enqueue time.
            assert 1.4 <= second - since < 1.5 + AT_ONCE_SECONDS, second - since

    asyncio.run(scenario())


def test_crons_run_on_time_while_the_worker_waits(valkey: EmbeddedRedis, tmp_path: Path) -> None:
    async def scenario() -> None:
        every_other_second = cron(tick, name="tick", second=set(range(0, 60, 2)))
        async with running_worker(
            settings_of(valkey, tmp_path), cron_jobs=[every_other_second]
        ) as ctx:
            await until("five ticks", lambda: len(ctx["started"]) >= 5, 20)
            times = [when for word, when in ctx["started"] if word == "tick"]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert all(1.5 < gap < 2.5 for gap in gaps), gaps

    asyncio.run(scenario())


def test_an_idle_worker_makes_a_few_redis_calls_a_second(
    valkey: EmbeddedRedis, tmp_path: Path
) -> None:
    """With the platform's 1 s safety poll: two calls a look (arq's read of the due jobs, and
    the next deferred one's time); polling every 20 ms made 100."""

    async def scenario() -> None:
        settings = settings_of(valkey, tmp_path)
        async with running_worker(settings, idle_poll=1.0) as ctx:
            queue = ctx["queue"]
            before = int((await queue.info("stats"))["total_commands_processed"])
            await asyncio.sleep(10)
            calls = int((await queue.info("stats"))["total_commands_processed"]) - before - 1
            assert calls <= 30, f"{calls} Redis calls in 10 s at rest"

    asyncio.run(scenario())


def test_the_worker_is_woken_again_after_valkey_was_killed_and_restarted(
    valkey: EmbeddedRedis, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_worker(settings_of(valkey, tmp_path)) as ctx:
            os.kill(int(valkey.pid_path.read_text()), signal.SIGKILL)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(valkey.start)
            await until("the worker listening again", lambda: subscribers(ctx["queue"]), 30)
            since = time.monotonic()
            await ctx["queue"].enqueue_job("record", "after")
            await started_within(ctx, "after", since, AT_ONCE_SECONDS)

    asyncio.run(scenario())
