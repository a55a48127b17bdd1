"""The periodic lease on a real Valkey: one worker holds it, a second is refused while the first
renews, takes it once the first stopped renewing (killed) or at once when it let go (stopped);
and the crons an earlier version queued are forgotten at an upgrade."""

from __future__ import annotations

import asyncio
import time

import pytest
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from app.server.embedded import EmbeddedRedis
from jobs.ticks import PeriodicLease
from jobs.worker import forget_retired_crons

pytestmark = pytest.mark.timeout(60)


def test_one_worker_holds_the_lease_and_another_takes_it_when_the_first_goes_quiet(
    valkey: EmbeddedRedis,
) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(valkey.url)
        try:
            first = PeriodicLease(redis, key="q:periodic-lease", seconds=1.0, holder="first")
            second = PeriodicLease(redis, key="q:periodic-lease", seconds=1.0, holder="second")
            assert await first.hold()
            assert not await second.hold()
            # Renewed before it runs out: still the first's, past its first second.
            for _ in range(3):
                await asyncio.sleep(0.4)
                assert await first.hold()
                assert not await second.hold()
            # The first goes quiet (killed): the second has it once the time ran out.
            quiet_since = time.monotonic()
            while not await second.hold():
                assert time.monotonic() - quiet_since < 3.0, "the lease never ran out"
                await asyncio.sleep(0.05)
            assert time.monotonic() - quiet_since >= 0.5
            assert not await first.hold()  # back, but the lease is the second's now
            # A clean stop lets go at once.
            await second.release()
            assert await first.hold()
            await second.release()  # not its lease any more: nothing happens
            assert await first.hold() and not await second.hold()
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_crons_an_earlier_version_queued_ahead_are_forgotten_at_start_and_nothing_else(
    valkey: EmbeddedRedis,
) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(valkey.url)
        try:
            queued = {"reconcile:1796648740123": 1, "rev_42": 2, "recover:soon": 3}
            await redis.zadd("arq:queue", queued)
            for job_id in queued:
                await redis.set(job_key_prefix + job_id, b"job")
            assert await forget_retired_crons(redis, "arq:queue") == 1
            left = {job_id.decode() for job_id in await redis.zrange("arq:queue", 0, -1)}
            assert left == {"rev_42", "recover:soon"}
            assert not await redis.exists(job_key_prefix + "reconcile:1796648740123")
            assert await redis.exists(job_key_prefix + "rev_42")
        finally:
            await redis.aclose()

    asyncio.run(scenario())
