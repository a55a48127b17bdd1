"""What wakes a worker waiting for work: a job announced on its queue's wake channel (by any
process's `JobQueue.enqueue_job` or the webhook receiver's script), or one of its own jobs
ending (a slot is free, a retry may be due sooner).

An idle worker polled arq's queue 50 times a second so that a push's job started within
milliseconds; it now waits on these instead, and looks at the queue anyway at its next deferred
job or cron, or after a slow safety poll (a wake-up lost while the subscription was being made
again, a job enqueued by a client that does not announce it).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

LISTEN_RETRY_FIRST_SECONDS = 0.2
LISTEN_RETRY_MAX_SECONDS = 5.0
"""While the queue is down, the subscription is tried again 0.2 s, 0.4 s, ... at most 5 s
apart (the worker's own outage poll has the same pace)."""


class WakeUps:
    """A flag the listener and the worker's jobs raise, and the worker's idle wait clears.

    Wake-ups while the worker is busy are kept (the flag stays raised), so one that comes
    between the worker's look at the queue and its wait ends the wait at once."""

    def __init__(self) -> None:
        self._flag = asyncio.Event()

    def wake(self) -> None:
        self._flag.set()

    def clear(self) -> None:
        """Called before the worker looks at the queue: what comes later wakes it again."""
        self._flag.clear()

    async def wait(self, seconds: float) -> bool:
        """Until woken or `seconds` passed; whether it was woken."""
        if self._flag.is_set():
            return True
        if seconds <= 0:
            return False
        try:
            async with asyncio.timeout(seconds):
                await self._flag.wait()
        except TimeoutError:
            return False
        return True

    async def listen(self, redis: Redis, channel: str) -> None:
        """Forever: every message on the channel wakes the worker, and so does every
        (re)subscription's confirmation: whatever was announced before it was missed, and the
        queue is back (a worker waiting out an outage looks at once). A lost connection is
        subscribed again with a growing pause."""
        pause = LISTEN_RETRY_FIRST_SECONDS
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                # redis-py reconnects and subscribes again itself after a short drop; its
                # confirmation is a message here too.
                async for _message in pubsub.listen():
                    self.wake()
                    pause = LISTEN_RETRY_FIRST_SECONDS
            except (RedisError, OSError) as exc:
                log.debug("wake channel lost", extra={"channel": channel, "error": repr(exc)})
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(LISTEN_RETRY_MAX_SECONDS, pause * 2)
