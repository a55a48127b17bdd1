"""The worker outlives its queue: Valkey killed with SIGKILL and started again (as `slipway up`
does) on the same port, and a job enqueued afterwards still runs on the same worker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.worker import func

from app.adapters.queue import redis_settings
from app.kernel.settings import Settings
from app.server.embedded import EmbeddedRedis
from jobs.worker import ReconnectingWorker

pytestmark = pytest.mark.timeout(120)


async def record(ctx: dict[str, Any], word: str) -> str:
    ctx["seen"].append(word)
    return word


async def _until(what: str, check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_job_enqueued_after_valkey_was_killed_and_restarted_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    valkey = EmbeddedRedis(tmp_path / "redis")
    url = valkey.start()
    settings = Settings(data_dir=tmp_path / "data", redis_url=url)
    seen: list[str] = []

    async def scenario() -> None:
        worker = ReconnectingWorker(
            functions=[func(record, name="record")],
            redis_settings=redis_settings(settings),
            queue_name="outage",
            poll_delay=0.05,
            handle_signals=False,
            ctx={"seen": seen},
        )
        running = asyncio.create_task(worker.async_run())
        try:
            queue = await create_pool(redis_settings(settings), default_queue_name="outage")
            await queue.enqueue_job("record", "before")
            await _until("the first job", lambda: seen == ["before"], 20)

            os.kill(int(valkey.pid_path.read_text()), signal.SIGKILL)
            await _until(
                "the worker to notice the queue is gone",
                lambda: "job queue unreachable" in caplog.text,
                20,
            )
            assert not running.done(), "the worker exited with its queue"

            assert await asyncio.to_thread(valkey.start) == url  # same port, same password
            await queue.enqueue_job("record", "after")
            await _until("the job enqueued after the restart", lambda: "after" in seen, 30)
            assert not running.done()
            assert "job queue reachable again" in caplog.text
            await queue.aclose()
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await worker.close()

    with caplog.at_level(logging.INFO, logger="jobs.worker"):
        try:
            asyncio.run(scenario())
        finally:
            valkey.stop()
    assert seen == ["before", "after"]
