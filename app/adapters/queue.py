"""The queue the API and the workers share (Valkey, through arq), reached so that its
restarts are ridden out rather than ending a process, and whose new jobs are announced so that
an idle worker waits for them instead of polling (jobs/wake.py)."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, expires_extra_ms
from arq.jobs import Deserializer, Job, Serializer
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.kernel.settings import Settings, require

log = logging.getLogger(__name__)

CONNECT_RETRIES = 60
"""A worker or API started while the queue is down waits for it a minute (1 s apart) before
exiting; the supervisor then starts it again."""
COMMAND_RETRIES = 3
COMMAND_RETRY_CAP_SECONDS = 1.0
"""A command is tried again 3 times 0.2, 0.4 and 0.8 s apart, and redis-py applies the same
retry to the connect inside each try: about 7 s in all, while a killed Valkey is up again
within a second or two, so an enqueue in the middle of it still lands."""


def redis_settings(settings: Settings) -> RedisSettings:
    """The queue as the worker and the API reach it, riding out the queue's restarts.

    arq retries only the first connection (conn_retries, conn_retry_delay); every later command
    gets redis-py's own retry (a fresh connection, with backoff), which covers the second or so
    the supervisor takes to start a killed Valkey again. A longer outage is ridden out by
    `ReconnectingWorker`'s poll loop.
    """
    dsn = RedisSettings.from_dsn(require(settings.redis_url, "REDIS_URL"))
    dsn.conn_retries = CONNECT_RETRIES
    dsn.conn_retry_delay = 1
    dsn.retry = RedisRetry(
        ExponentialBackoff(cap=COMMAND_RETRY_CAP_SECONDS, base=0.1), COMMAND_RETRIES
    )
    dsn.retry_on_error = [RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError]
    return dsn


WAKE_SUFFIX = ":wake"

announcing: ContextVar[bool] = ContextVar("announcing", default=True)
"""False where the enqueuer is the worker that will run the job and knows when it is due (a cron
arq enqueues ahead): announcing it would only wake that worker for nothing."""


def wake_channel(queue_name: str) -> str:
    """The pub/sub channel a queue's new jobs are announced on: a worker waiting for work
    listens to it and looks at the queue at once, instead of polling it many times a second."""
    return queue_name + WAKE_SUFFIX


class JobQueue(ArqRedis):
    """arq's client, whose `enqueue_job` also announces the job on its queue's wake channel
    (one PUBLISH after arq's transaction). A job enqueued by a client that does not announce
    it (arq's own, another tool) still runs, found by the worker's slow safety poll."""

    async def enqueue_job(
        self,
        function: str,
        *args: Any,
        _job_id: str | None = None,
        _queue_name: str | None = None,
        _defer_until: datetime | None = None,
        _defer_by: int | float | timedelta | None = None,
        _expires: int | float | timedelta | None = None,
        _job_try: int | None = None,
        **kwargs: Any,
    ) -> Job | None:
        job = await super().enqueue_job(
            function,
            *args,
            _job_id=_job_id,
            _queue_name=_queue_name,
            _defer_until=_defer_until,
            _defer_by=_defer_by,
            _expires=_expires,
            _job_try=_job_try,
            **kwargs,
        )
        if job is not None and announcing.get():
            try:
                await self.publish(wake_channel(_queue_name or self.default_queue_name), b"")
            except (RedisError, OSError) as exc:
                # The job is queued: a worker finds it at its safety poll, a second later.
                log.warning("job queued but not announced", extra={"error": repr(exc)})
        return job


async def create_queue(
    settings: RedisSettings,
    *,
    default_queue_name: str = default_queue_name,
    job_serializer: Serializer | None = None,
    job_deserializer: Deserializer | None = None,
    expires_extra_ms: int = expires_extra_ms,
) -> JobQueue:
    """arq's `create_pool` (its connection retries and settings), as a `JobQueue`."""
    pool = await create_pool(
        settings,
        default_queue_name=default_queue_name,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        expires_extra_ms=expires_extra_ms,
    )
    queue = JobQueue(
        pool.connection_pool,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        default_queue_name=default_queue_name,
        expires_extra_ms=expires_extra_ms,
    )
    queue.auto_close_connection_pool = True  # closing the queue closes its connections
    return queue
