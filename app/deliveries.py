"""Webhook deliveries: recorded before anything else happens, applied at most once.

Both steps are on the path of every delivery (the API records, the worker applies), and a
burst of them competes for two cores and SQLite's one writer, so each is a single short
transaction of Core statements; the ORM is left to the event handlers that need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.crypto import SecretBox
from app.events import EventOutcome, process_delivery
from app.facts import CommitFacts
from app.models import Delivery

APPLY_ATTEMPTS = 3

# Built once: composing a statement costs more than running it on SQLite.
_TABLE: Table = Delivery.__table__  # type: ignore[attr-defined]
_ID = _TABLE.c.id == bindparam("delivery_id")
_UNHANDLED = _TABLE.c.processed_at.is_(None)
_INSERT = insert(_TABLE)
_APPLIED_AT = select(_TABLE.c.processed_at).where(_ID)
_TO_APPLY = select(_TABLE.c.event, _TABLE.c.payload, _TABLE.c.received_at).where(_ID, _UNHANDLED)
_MARK_APPLIED = (
    update(_TABLE)
    .where(_ID, _UNHANDLED)
    .values(processed_at=bindparam("applied_at"), outcome=bindparam("result"))
)


@dataclass(frozen=True)
class Recorded:
    new: bool
    applied: bool
    """A worker has applied it already (it is a redelivery of one that was handled)."""

    @property
    def needs_processing(self) -> bool:
        """A redelivery of something never applied (the queue was down) is worth enqueuing."""
        return not self.applied


def record_delivery(
    session: Session, delivery_id: str, event: str, body: bytes, payload: object, now: datetime
) -> Recorded:
    """One INSERT and its commit; only a redelivery (the INSERT refused) reads the row."""
    action = payload.get("action") if isinstance(payload, dict) else None
    installation = payload.get("installation") if isinstance(payload, dict) else None
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    row = {
        "id": delivery_id,
        "event": event,
        "action": action if isinstance(action, str) else None,
        "installation_id": installation_id if isinstance(installation_id, int) else None,
        "payload": body.decode("utf-8"),
        "received_at": now,
    }
    try:
        session.connection().execute(_INSERT, row)
        session.commit()
    except IntegrityError:  # a redelivery, or the same delivery raced in on another process
        session.rollback()
        processed_at = session.connection().scalar(_APPLIED_AT, {"delivery_id": delivery_id})
        session.commit()
        return Recorded(new=False, applied=processed_at is not None)
    return Recorded(new=True, applied=False)


def apply_delivery(
    session: Session,
    delivery_id: str,
    secrets: SecretBox,
    now: datetime,
    facts: CommitFacts | None = None,
) -> EventOutcome | None:
    """None when the delivery was already applied (at-least-once queues deliver twice).

    The handler's changes and the delivery's mark commit together, and the mark only lands on
    a delivery nobody marked yet: of two workers applying the same delivery, one commits.
    """
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        delivery = _unapplied(session, delivery_id)
        if delivery is None:
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
    result = json.dumps({"summary": outcome.summary, "revisions": outcome.start_revisions})
    marked = session.connection().execute(
        _MARK_APPLIED, {"delivery_id": delivery_id, "applied_at": now, "result": result}
    )
    if marked.rowcount != 1:  # another worker applied it meanwhile: its changes stand
        session.rollback()
        return None
    session.commit()
    return outcome


def _unapplied(session: Session, delivery_id: str) -> Delivery | None:
    """The delivery as the handlers read it (not tracked by the session), if not yet applied."""
    row = session.connection().execute(_TO_APPLY, {"delivery_id": delivery_id}).one_or_none()
    if row is None:
        return None
    return Delivery(
        id=delivery_id, event=row.event, payload=row.payload, received_at=row.received_at
    )
