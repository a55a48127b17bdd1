"""Idle worker: what an arq worker with nothing to do costs, and how soon it starts a job.

Run with `.venv/bin/python -m bench.idle_worker [--seconds 30] [--rounds 3] [--crons]`.

One embedded Valkey (as `slipway up` runs it) in a temporary directory; each round starts a
worker process per mode, one after the other, with a function that does nothing:

* `poll`: arq's Worker polling every 20 ms (Slipway's worker before it waited for work);
* `wake`: jobs.worker.ReconnectingWorker, which waits for a job's announcement on the queue's
  wake channel, its next deferred job or cron, or its 1 s safety poll.

With `--crons` the worker also has Slipway's crons (the reconciler's every 2 s, the others
every 10 s), each doing nothing: arq's own cost of running them.

For each: CPU of the worker process and of Valkey as % of one core from utime+stime over the
window (CPU time, not wall time: other work on the machine does not count), Redis commands the
server processed (INFO's total_commands_processed, less the bench's own), and then the delay
from an enqueue (announced, as Slipway's enqueues are) to the job's start, median and max of 20.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from app.adapters.queue import create_queue
from app.server.embedded import EmbeddedRedis

QUEUE = "bench-idle"
STARTS = 20
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def nothing(ctx: dict[str, Any], enqueued: float = 0.0) -> None:
    if enqueued:
        ctx["redis_sync"].rpush("bench-starts", f"{time.time() - enqueued:.6f}")


def child(mode: str, url: str, crons: bool) -> None:
    """The worker process of one mode."""
    from arq import cron
    from arq.worker import Worker, func

    from app.adapters.queue import redis_settings
    from app.kernel.settings import Settings
    from jobs.worker import (
        DISPATCH_SECONDS,
        RECOVERY_SECONDS_OF_MINUTE,
        ReconnectingWorker,
        tick_seconds,
    )

    settings = Settings(redis_url=url)
    cron_jobs = (
        [
            cron(nothing, name="reconcile", second=tick_seconds(2.0), run_at_startup=True),
            cron(nothing, name="recover", second=RECOVERY_SECONDS_OF_MINUTE),
            cron(nothing, name="drain", second=DISPATCH_SECONDS),
            cron(nothing, name="dispatch", second=DISPATCH_SECONDS),
        ]
        if crons
        else []
    )
    options: dict[str, Any] = {
        "functions": [func(nothing, name="nothing", keep_result=0)],
        "cron_jobs": cron_jobs,
        "redis_settings": redis_settings(settings),
        "queue_name": QUEUE,
        "ctx": {"redis_sync": redis.Redis.from_url(url)},
    }
    worker: Worker
    if mode == "poll":
        worker = Worker(poll_delay=0.02, **options)
    else:
        worker = ReconnectingWorker(poll_delay=0, **options)
    worker.run()


def ready(client: redis.Redis, worker: subprocess.Popen[bytes]) -> None:
    """Once the worker ran a first job (imports done), and a second for its first crons."""
    deadline = time.monotonic() + 60
    while client.llen("bench-starts") == 0:
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError("the worker did not start")
        with contextlib.suppress(Exception):
            asyncio.run(enqueue_one(client))
        time.sleep(0.5)
    time.sleep(3.0)
    client.delete("bench-starts")


async def enqueue_one(client: redis.Redis) -> None:
    from arq.connections import RedisSettings

    url = client.connection_pool.connection_kwargs
    settings = RedisSettings(
        host=url["host"], port=url["port"], password=url.get("password"), database=url["db"]
    )
    queue = await create_queue(settings, default_queue_name=QUEUE)
    try:
        await queue.enqueue_job("nothing", time.time())
    finally:
        await queue.aclose()


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def measure(mode: str, url: str, valkey_pid: int, seconds: float, crons: bool) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    client.delete(QUEUE, "bench-starts")
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.idle_worker", "--child", mode, url]
        + (["--crons"] if crons else []),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        ready(client, worker)
        worker_before, valkey_before = cpu_seconds(worker.pid), cpu_seconds(valkey_pid)
        commands_before = commands(client)
        time.sleep(seconds)
        worker_cpu = cpu_seconds(worker.pid) - worker_before
        valkey_cpu = cpu_seconds(valkey_pid) - valkey_before
        calls = commands(client) - commands_before - 1  # the INFO itself
        delays = asyncio.run(start_delays(url))
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(30)
    return {
        "worker %": 100 * worker_cpu / seconds,
        "valkey %": 100 * valkey_cpu / seconds,
        "calls/min": calls * 60 / seconds,
        "start ms p50": 1000 * statistics.median(delays),
        "start ms max": 1000 * max(delays),
    }


async def start_delays(url: str) -> list[float]:
    from arq.connections import RedisSettings

    queue = await create_queue(RedisSettings.from_dsn(url), default_queue_name=QUEUE)
    try:
        for _ in range(STARTS):
            await queue.enqueue_job("nothing", time.time())
            await asyncio.sleep(0.25)  # idle again between two
        deadline = time.monotonic() + 10
        while await queue.llen("bench-starts") < STARTS and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return [float(v) for v in await queue.lrange("bench-starts", 0, -1)]
    finally:
        await queue.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_worker")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crons", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.crons)
        return 0
    with tempfile.TemporaryDirectory(prefix="slipway-bench-idle-") as tmp:
        valkey = EmbeddedRedis(Path(tmp) / "valkey")
        url = valkey.start()
        try:
            pid = int(valkey.pid_path.read_text())
            rows: dict[str, list[dict[str, float]]] = {"poll": [], "wake": []}
            for round_ in range(args.rounds):
                for mode in rows:
                    row = measure(mode, url, pid, args.seconds, args.crons)
                    rows[mode].append(row)
                    shown = ", ".join(f"{k} {v:.2f}" for k, v in row.items())
                    print(f"round {round_ + 1} {mode}: {shown}", flush=True)
            for mode, measured in rows.items():
                medians = {k: statistics.median(r[k] for r in measured) for k in measured[0]}
                shown = ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
                print(f"median {mode}: {shown}")
        finally:
            valkey.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
