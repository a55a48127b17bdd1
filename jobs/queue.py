"""The worker's jobs, enqueued from a domain service's thread onto the worker's event loop.

The services block (they run in threads, see tasks.py); arq's client is async and belongs to
the loop. Each enqueue is handed to the loop and waited for, so a service that goes on after it
knows the job is in the queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq.connections import ArqRedis

from app.kernel.orders import (
    DISPATCH_REVISIONS,
    DRAIN_REPORTS,
    QUEUE_NAME,
    RUN_REVISION,
    SEND_NOTIFICATIONS,
    SEND_NOTIFICATIONS_JOB_ID,
    SYNC_COMMENT,
    TEARDOWN_DEPLOYMENT,
    revision_job_id,
)
from jobs.constants import ENQUEUE_TIMEOUT_SECONDS


class WorkerQueue:
    """The OrderQueue of app.deliveries.bus, and the queues the services are given at start."""

    def __init__(
        self, redis: ArqRedis, loop: asyncio.AbstractEventLoop, queue_name: str = QUEUE_NAME
    ) -> None:
        self._redis = redis
        self._loop = loop
        self._queue_name = queue_name

    def run_revision(self, revision_id: str) -> None:
        self._enqueue(RUN_REVISION, revision_id, _job_id=revision_job_id(revision_id))

    def tear_down(self, deployment_id: str, *, drop_database: bool, reason: str) -> None:
        self._enqueue(TEARDOWN_DEPLOYMENT, deployment_id, drop_database, reason)

    def sync_comment(self, pull_request_id: str) -> None:
        self._enqueue(SYNC_COMMENT, pull_request_id)

    def dispatch_revisions(self) -> None:
        self._enqueue(DISPATCH_REVISIONS)

    def drain_reports(self, revision_id: str) -> None:
        self._enqueue(DRAIN_REPORTS, revision_id)

    def send_notifications(self) -> None:
        self._enqueue(SEND_NOTIFICATIONS, _job_id=SEND_NOTIFICATIONS_JOB_ID)

    def _enqueue(self, function: str, *args: Any, **options: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(
            self._redis.enqueue_job(function, *args, _queue_name=self._queue_name, **options),
            self._loop,
        )
        future.result(timeout=ENQUEUE_TIMEOUT_SECONDS)
