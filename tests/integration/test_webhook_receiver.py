"""The webhook receiver on a real queue: nothing is lost when the queue is briefly away."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import job_key_prefix
from arq.jobs import Job, JobDef, JobStatus
from litestar import Litestar
from litestar.testing import TestClient
from redis import Redis

from app.api import create_app
from app.api.webhooks import DeliveryQueue
from app.kernel.orders import HANDLE_DELIVERY, QUEUE_NAME, delivery_job_id
from app.kernel.settings import Settings
from app.server.embedded import EmbeddedRedis
from tests.support.fake_github.payloads import headers
from tests.support.keys import new_private_key_pem

SECRET = "receiver-secret"


@pytest.fixture
def settings(tmp_path: Path, valkey: EmbeddedRedis) -> Settings:
    pem = new_private_key_pem()
    return Settings(
        _env_file=None,
        github_app_id=1,
        github_private_key=pem,
        github_webhook_secret=SECRET,
        data_dir=tmp_path / "data",
        redis_url=valkey.url,
    )


def _send(client: TestClient[Litestar], delivery_id: str, payload: dict[str, object]) -> Any:
    body = json.dumps(payload).encode()
    return client.post(
        "/webhooks/github", content=body, headers=headers("ping", delivery_id, body, SECRET)
    )


def _post(client: TestClient[Litestar], delivery_id: str, payload: dict[str, object]) -> int:
    return int(_send(client, delivery_id, payload).status_code)


def _stored(settings: Settings) -> list[tuple[str, str | None]]:
    with sqlite3.connect(settings.data_dir / "slipway.db") as db:
        return list(db.execute("SELECT id, processed_at FROM deliveries ORDER BY id"))


def _queued(valkey: EmbeddedRedis) -> int:
    count = Redis.from_url(valkey.url).zcard(QUEUE_NAME)
    assert isinstance(count, int)
    return count


def test_a_delivery_made_while_the_queue_is_down_is_kept_and_a_redelivery_enqueues_it(
    settings: Settings, valkey: EmbeddedRedis
) -> None:
    with TestClient(app=create_app(settings)) as client:
        assert _post(client, "d-1", {"zen": "up"}) == 202
        assert _queued(valkey) == 1

        # The queue refuses work (out of memory): the delivery is kept, GitHub is told to retry.
        admin = Redis.from_url(valkey.url)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        response_code = _post(client, "d-2", {"zen": "queue is down"})
        assert response_code == 503
        assert [row[0] for row in _stored(settings)] == ["d-1", "d-2"]

        admin.config_set("maxmemory", "0")
        assert _post(client, "d-2", {"zen": "queue is down"}) == 202  # GitHub's redelivery
        assert _queued(valkey) == 2
        assert _post(client, "d-2", {"zen": "queue is down"}) == 202  # and once more
        assert _queued(valkey) == 2  # the same job id: no second piece of work


def test_a_redelivery_is_answered_as_a_duplicate_and_queued_once(
    settings: Settings, valkey: EmbeddedRedis
) -> None:
    with TestClient(app=create_app(settings)) as client:
        first = _send(client, "d-1", {"zen": "once"})
        again = _send(client, "d-1", {"zen": "once"})  # GitHub's "Redeliver"
        other = _send(client, "d-2", {"zen": "once"})  # the same content, a new delivery

    assert [r.status_code for r in (first, again, other)] == [202, 202, 202]
    assert [r.json()["duplicate"] for r in (first, again, other)] == [False, True, False]
    assert _queued(valkey) == 2


async def _job(valkey: EmbeddedRedis, delivery_id: str) -> tuple[JobDef, JobStatus, int]:
    """The delivery's job as arq's worker reads it, its status and its time to live in ms."""
    pool = await create_pool(RedisSettings.from_dsn(valkey.url))
    try:
        job = Job(delivery_job_id(delivery_id), pool, _queue_name=QUEUE_NAME)
        info = await job.info()
        assert info is not None
        ttl = await pool.pttl(job_key_prefix + job.job_id)
        return info, await job.status(), ttl
    finally:
        await pool.aclose()


def test_a_delivery_is_queued_as_the_job_arq_enqueue_job_would_make(
    settings: Settings, valkey: EmbeddedRedis
) -> None:
    with TestClient(app=create_app(settings)) as client:
        before_ms = time.time() * 1000
        assert _post(client, "d-1", {"zen": "queued"}) == 202
        after_ms = time.time() * 1000

    info, status, ttl_ms = asyncio.run(_job(valkey, "d-1"))

    assert (info.function, info.args, info.kwargs) == (HANDLE_DELIVERY, ("d-1",), {})
    assert not info.job_try  # a first try, as arq's enqueue_job leaves it
    assert status == JobStatus.queued
    assert info.score is not None and before_ms - 1 <= info.score <= after_ms + 1
    assert info.enqueue_time.timestamp() * 1000 == pytest.approx(info.score, abs=1)
    assert 86_000_000 < ttl_ms <= 86_400_000  # arq's default: a day after it was due


def test_deliveries_queued_together_each_get_their_job_once(valkey: EmbeddedRedis) -> None:
    async def put_burst() -> list[bool]:
        pool = await create_pool(RedisSettings.from_dsn(valkey.url))
        try:
            queue = DeliveryQueue(pool)
            ids = [f"d-{i}" for i in range(12)] + ["d-0", "d-5"]
            return await asyncio.gather(*(queue.put(delivery_id) for delivery_id in ids))
        finally:
            await pool.aclose()

    added = asyncio.run(put_burst())

    assert added == [True] * 12 + [False, False]
    assert _queued(valkey) == 12
    for i in (0, 7, 11):
        info, status, _ = asyncio.run(_job(valkey, f"d-{i}"))
        assert (info.function, info.args, status) == (
            HANDLE_DELIVERY,
            (f"d-{i}",),
            JobStatus.queued,
        )
