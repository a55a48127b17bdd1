"""The queue the API and the workers share (Valkey, through arq), reached so that its
restarts are ridden out rather than ending a process."""

from __future__ import annotations

from arq.connections import RedisSettings
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.kernel.settings import Settings, require

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
