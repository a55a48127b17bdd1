"""Which handler applies each kind of webhook delivery: one module per event, one table here.

Handlers run inside one transaction and say what they did in a WorkOrder; the caller
commits, records the outcome on the Delivery and hands the order to the workers (bus.py).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from pydantic import ValidationError
from sqlmodel import Session

from app.deliveries.check_run import handle_check_run
from app.deliveries.check_suite import handle_check_suite
from app.deliveries.context import EventContext, Handler
from app.deliveries.facts import NO_FACTS, CommitFacts
from app.deliveries.installation import handle_installation, handle_installation_repositories
from app.deliveries.pull_request import handle_pull_request
from app.deliveries.push import handle_push
from app.kernel.crypto import SecretBox
from app.kernel.models import Delivery
from app.kernel.orders import WorkOrder

log = logging.getLogger(__name__)


def handle_ping(ctx: EventContext, payload: dict[str, object]) -> WorkOrder:
    """GitHub's first delivery after the webhook is set up: it proves the secret matches."""
    return WorkOrder("pong: the webhook reaches Slipway")


HANDLERS: dict[str, Handler] = {
    "ping": handle_ping,
    "installation": handle_installation,
    "installation_repositories": handle_installation_repositories,
    "push": handle_push,
    "pull_request": handle_pull_request,
    "check_run": handle_check_run,
    "check_suite": handle_check_suite,
}
"""Events not named here are recorded and ignored."""


def process_delivery(
    session: Session,
    delivery: Delivery,
    secrets: SecretBox,
    now: datetime,
    facts: CommitFacts | None = None,
) -> WorkOrder:
    """Apply one delivery; unknown events and unreadable payloads are recorded, not raised."""
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return WorkOrder(f"{delivery.event} events are recorded and ignored")
    payload = json.loads(delivery.payload)
    ctx = EventContext(
        session=session,
        secrets=secrets,
        now=now,
        delivery_id=delivery.id,
        facts=facts or NO_FACTS,
    )
    try:
        return handler(ctx, payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        log.warning(
            "delivery payload unreadable",
            extra={"delivery_id": delivery.id, "event": delivery.event, "problems": problems},
        )
        session.rollback()
        return WorkOrder(f"payload could not be read ({problems}); nothing done")
