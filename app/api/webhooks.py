"""POST /webhooks/github: verify, record, enqueue, answer 202 — in milliseconds, never a build."""

from __future__ import annotations

import json
import logging
from typing import Any

from arq.connections import ArqRedis
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_503_SERVICE_UNAVAILABLE
from redis.exceptions import RedisError

from app.api.schemas import DeliveryAccepted
from app.db import SessionFactory
from app.deliveries import record_delivery
from app.github.webhooks import signature_is_valid
from app.ports import Clock
from app.settings import Settings
from jobs.constants import HANDLE_DELIVERY, QUEUE_NAME, delivery_job_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024
"""GitHub caps payloads at 25 MB."""


class BadDelivery(HTTPException):
    status_code = 400


class BadSignature(HTTPException):
    status_code = 401


class WebhookController(Controller):
    path = "/webhooks"

    @post("/github", status_code=HTTP_202_ACCEPTED, request_max_body_size=MAX_BODY_BYTES)
    async def receive(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        sessions: NamedDependency[SessionFactory],
        queue: NamedDependency[ArqRedis],
        clock: NamedDependency[Clock],
    ) -> DeliveryAccepted:
        body = await request.body()
        secret = settings.github_webhook_secret.get_secret_value()
        if not signature_is_valid(body, secret, request.headers.get("X-Hub-Signature-256")):
            raise BadSignature(
                detail="X-Hub-Signature-256 is missing or does not match the body signed with "
                "the webhook secret (SLIPWAY_GITHUB_WEBHOOK_SECRET)"
            )
        event = request.headers.get("X-GitHub-Event")
        delivery_id = request.headers.get("X-GitHub-Delivery")
        if not event or not delivery_id:
            raise BadDelivery(detail="X-GitHub-Event and X-GitHub-Delivery headers are required")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadDelivery(detail=f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise BadDelivery(detail="the body must be a JSON object")
        with sessions() as session:
            recorded = record_delivery(session, delivery_id, event, body, payload, clock())
        if recorded.needs_processing:
            try:
                await queue.enqueue_job(
                    HANDLE_DELIVERY,
                    delivery_id,
                    _job_id=delivery_job_id(delivery_id),
                    _queue_name=QUEUE_NAME,
                )
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
