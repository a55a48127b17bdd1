"""A work order carried out on the worker's real queue: the jobs it leaves are the ones the
workers run, and an order carried out twice leaves one build job per revision."""

from __future__ import annotations

import asyncio

from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import JobDef

from app.deliveries.bus import OrderBus
from app.kernel.orders import (
    QUEUE_NAME,
    RUN_REVISION,
    SYNC_COMMENT,
    TEARDOWN_DEPLOYMENT,
    TeardownOrder,
    WorkOrder,
    revision_job_id,
)
from app.server.embedded import EmbeddedRedis
from jobs.queue import WorkerQueue


class CheckRuns:
    def __init__(self) -> None:
        self.announced: list[str] = []

    def report_cancelled(self, revision_id: str) -> None: ...

    def announce(self, revision_id: str) -> None:
        self.announced.append(revision_id)

    def report_approval_refused(self, revision_id: str, login: str, role: str) -> None: ...

    def report_approved(self, revision_id: str) -> None: ...


async def carry_out_twice(url: str, order: WorkOrder) -> tuple[list[JobDef], list[str]]:
    """As the worker does: the bus in a thread, its enqueues on the loop."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        check_runs = CheckRuns()
        bus = OrderBus(queue=WorkerQueue(pool, asyncio.get_running_loop()), check_runs=check_runs)
        await asyncio.to_thread(bus.carry_out, order)
        await asyncio.to_thread(bus.carry_out, order)
        jobs = await pool.queued_jobs(queue_name=QUEUE_NAME)
        return jobs, check_runs.announced
    finally:
        await pool.aclose()


def test_an_order_carried_out_twice_queues_one_build_per_revision(
    valkey: EmbeddedRedis,
) -> None:
    order = WorkOrder(
        "pull request #7 closed",
        start_revisions=["rev_a"],
        teardowns=[TeardownOrder("dep_preview", drop_database=True)],
        comments=["pr_7"],
    )

    jobs, announced = asyncio.run(carry_out_twice(valkey.url, order))

    builds = [job for job in jobs if job.function == RUN_REVISION]
    assert [(job.args, job.job_id) for job in builds] == [(("rev_a",), revision_job_id("rev_a"))]
    teardowns = [job.args for job in jobs if job.function == TEARDOWN_DEPLOYMENT]
    # A second teardown finds less to do; both are harmless (see test_faults_heal.py).
    assert teardowns == [("dep_preview", True, "pull request #7 closed")] * 2
    assert [job.args for job in jobs if job.function == SYNC_COMMENT] == [("pr_7",)] * 2
    assert announced == ["rev_a", "rev_a"]  # the outbox opens the check run once
