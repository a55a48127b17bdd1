"""Webhook deliveries: recorded before anything else happens, applied at most once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.crypto import SecretBox
from app.events import EventOutcome, process_delivery
from app.facts import CommitFacts
from app.models import Delivery

APPLY_ATTEMPTS = 3


@dataclass(frozen=True)
class Recorded:
    delivery: Delivery
    new: bool

    @property
    def needs_processing(self) -> bool:
        """A redelivery of something never applied (the queue was down) is worth enqueuing."""
        return self.new or self.delivery.processed_at is None


def record_delivery(
    session: Session, delivery_id: str, event: str, body: bytes, payload: object, now: datetime
) -> Recorded:
    existing = session.get(Delivery, delivery_id)
    if existing is not None:
        return Recorded(existing, new=False)
    action = payload.get("action") if isinstance(payload, dict) else None
    installation = payload.get("installation") if isinstance(payload, dict) else None
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    delivery = Delivery(
        id=delivery_id,
        event=event,
        action=action if isinstance(action, str) else None,
        installation_id=installation_id if isinstance(installation_id, int) else None,
        payload=body.decode("utf-8"),
        received_at=now,
    )
    session.add(delivery)
    try:
        session.commit()
    except IntegrityError:  # the same delivery raced in on another API process
        session.rollback()
        existing = session.get(Delivery, delivery_id)
        assert existing is not None
        return Recorded(existing, new=False)
    return Recorded(delivery, new=True)


def apply_delivery(
    session: Session,
    delivery_id: str,
    secrets: SecretBox,
    now: datetime,
    facts: CommitFacts | None = None,
) -> EventOutcome | None:
    """None when the delivery was already applied (at-least-once queues deliver twice)."""
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.processed_at is not None:
            return None
        try:
            outcome = process_delivery(session, delivery, secrets, now, facts)
            session.flush()
            break
        except IntegrityError:
            # Another delivery for the same installation or repository inserted the row first
            # (deliveries are applied concurrently); the next attempt finds and updates it.
            session.rollback()
            if attempt == APPLY_ATTEMPTS:
                raise
    delivery = session.get(Delivery, delivery_id)
    assert delivery is not None
    delivery.processed_at = now
    delivery.outcome = json.dumps(
        {"summary": outcome.summary, "revisions": outcome.start_revisions}
    )
    session.add(delivery)
    session.commit()
    return outcome
