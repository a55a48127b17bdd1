"""POST /webhooks/github: verify, record, enqueue, answer 202 — in milliseconds, never a build."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_503_SERVICE_UNAVAILABLE
from redis.exceptions import RedisError

from app.adapters.queue import wake_channel
from app.api.schemas import DeliveryAccepted
from app.deliveries.inbox import Arrival, DeliveryRecorder
from app.github.webhooks import signature_is_valid
from app.kernel.batches import Batcher
from app.kernel.orders import HANDLE_DELIVERY, QUEUE_NAME, delivery_job_id
from app.kernel.ports import Clock
from app.kernel.settings import Settings
from app.setup.credentials import (
    GitHubAppCredentials,
    GitHubAppUnreadable,
    not_configured_message,
)

log = logging.getLogger(__name__)

ENQUEUE_NEW = """
local added = {}
local any = false
for n = 0, (#ARGV - 2) / 3 - 1 do
  local job, result = KEYS[2 * n + 1], KEYS[2 * n + 2]
  if redis.call('exists', job, result) == 0 then
    redis.call('psetex', job, ARGV[#ARGV - 1], ARGV[3 * n + 1])
    redis.call('zadd', KEYS[#KEYS], ARGV[3 * n + 2], ARGV[3 * n + 3])
    added[n + 1] = 1
    any = true
  else
    added[n + 1] = 0
  end
end
if any then
  redis.call('publish', ARGV[#ARGV], '')
end
return added
"""
"""arq's enqueue_job for several jobs as one script, announced on the queue's wake channel as
`JobQueue.enqueue_job` does. KEYS: per job its job and result keys, then the queue; ARGV: per
job the serialised job, its score and its id, then the expiry (ms) and the wake channel. Redis
runs a script atomically, so it needs no WATCH and no retry."""

MAX_BODY_BYTES = 25 * 1024 * 1024
"""GitHub caps payloads at 25 MB; Litestar refuses a larger body with 413 as it streams in."""
MAX_JSON_DEPTH = 64
"""GitHub's payloads nest about 8 levels; far deeper is an attack on the parser, not a delivery."""


class BadDelivery(HTTPException):
    status_code = 400


class BadSignature(HTTPException):
    status_code = 401


def parse_payload(body: bytes) -> dict[str, Any]:
    """The delivery's JSON object, or BadDelivery saying what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadDelivery(
            detail=f"the body is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadDelivery(detail=f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadDelivery(detail=f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(payload, dict):
        raise BadDelivery(detail="the body must be a JSON object")
    if _depth(payload) > MAX_JSON_DEPTH:
        raise BadDelivery(detail=f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return payload


def _depth(value: object) -> int:
    """Nesting depth, iteratively (a recursive walk is what the bound protects against)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class DeliveryQueue:
    """Puts deliveries' jobs on arq's queue: those put while a round trip to Redis is under way
    go together in the next one (see app.kernel.batches).

    arq's own `enqueue_job` takes three round trips per job (WATCH, EXISTS, then MULTI/EXEC),
    and under a burst its Python work was a sizeable part of a delivery's answer time. The job
    is the same (arq's serialisation, keys, score and default expiry), so the worker cannot
    tell the difference; a job id already queued or with a result kept enqueues nothing, as
    with arq.
    """

    def __init__(self, redis: ArqRedis) -> None:
        self._script = redis.register_script(ENQUEUE_NEW)
        self._batches: Batcher[str, bool] = Batcher(self._put_all)

    async def put(self, delivery_id: str) -> bool:
        """False when the delivery's job is queued already."""
        return await self._batches.submit(delivery_id)

    async def _put_all(self, delivery_ids: list[str]) -> list[bool]:
        now_ms = timestamp_ms()
        keys: list[str] = []
        args: list[bytes | int | str] = []
        for delivery_id in delivery_ids:
            job_id = delivery_job_id(delivery_id)
            keys += [job_key_prefix + job_id, result_key_prefix + job_id]
            args += [
                serialize_job(HANDLE_DELIVERY, (delivery_id,), {}, None, now_ms),
                now_ms,
                job_id,
            ]
        added = await self._script(
            keys=[*keys, QUEUE_NAME], args=[*args, expires_extra_ms, wake_channel(QUEUE_NAME)]
        )
        return [bool(flag) for flag in added]


@dataclass(frozen=True)
class Receiver:
    """What the receiver works with, as one dependency: Litestar resolves two or more
    dependencies of a handler as concurrent tasks, which under a burst cost more than the
    signature check and the JSON parse together."""

    settings: Settings
    recorder: DeliveryRecorder
    queue: DeliveryQueue
    clock: Clock
    app_credentials: GitHubAppCredentials


class WebhookController(Controller):
    path = "/webhooks"

    @post("/github", status_code=HTTP_202_ACCEPTED, request_max_body_size=MAX_BODY_BYTES)
    async def receive(
        self, request: Request[Any, Any, Any], receiver: NamedDependency[Receiver]
    ) -> DeliveryAccepted:
        body = await request.body()
        # Cached once found; until the App exists each delivery looks (off the loop) again.
        credentials = receiver.app_credentials
        try:
            app = credentials.cached() or await asyncio.to_thread(credentials.current)
        except GitHubAppUnreadable as exc:
            log.error("github app unreadable", extra={"error": str(exc)})
            raise HTTPException(status_code=HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
        if app is None:
            raise HTTPException(
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
                detail=not_configured_message(receiver.settings),
            )
        if not signature_is_valid(
            body, app.webhook_secret, request.headers.get("X-Hub-Signature-256")
        ):
            raise BadSignature(
                detail="X-Hub-Signature-256 is missing or does not match the body signed with "
                "the GitHub App's webhook secret"
            )
        event = request.headers.get("X-GitHub-Event")
        delivery_id = request.headers.get("X-GitHub-Delivery")
        if not event or not delivery_id:
            raise BadDelivery(detail="X-GitHub-Event and X-GitHub-Delivery headers are required")
        payload = parse_payload(body)
        # Off the event loop: a write waiting on the control plane never stalls other requests.
        arrival = Arrival(delivery_id, event, body, payload, receiver.clock())
        recorded = await receiver.recorder.record(arrival)
        if recorded.needs_processing:
            try:
                await receiver.queue.put(delivery_id)
            except (RedisError, OSError) as exc:
                log.error(
                    "delivery not enqueued", extra={"delivery_id": delivery_id, "error": repr(exc)}
                )
                # Recorded but not queued: GitHub shows the failure and a redelivery retries.
                raise HTTPException(
                    status_code=HTTP_503_SERVICE_UNAVAILABLE,
                    detail="the job queue is unavailable; the delivery was stored, redeliver it",
                ) from None
        log.info(
            "delivery received",
            extra={"delivery_id": delivery_id, "event": event, "duplicate": not recorded.new},
        )
        return DeliveryAccepted(delivery_id=delivery_id, duplicate=not recorded.new)
