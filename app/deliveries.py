"""Webhook deliveries: recorded before anything else happens, applied at most once.

Both steps are on the path of every delivery (the API records, the worker applies), and a
burst of them competes for two cores and SQLite's one writer, so each is a short transaction of
Core statements (the ORM is left to the event handlers that need it), and the API records the
deliveries that arrive together in one transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.crypto import SecretBox
from app.db import SessionFactory
from app.events import EventOutcome, process_delivery
from app.facts import CommitFacts
from app.models import Delivery

APPLY_ATTEMPTS = 3
MAX_BATCH = 64
"""Deliveries recorded in one transaction at most: a burst's worth, and still a short write."""

# Built once: composing a statement costs more than running it on SQLite.
_TABLE: Table = Delivery.__table__  # type: ignore[attr-defined]
_ID = _TABLE.c.id == bindparam("delivery_id")
_UNHANDLED = _TABLE.c.processed_at.is_(None)
_INSERT_NEW = {
    name: insert(_TABLE)
    .on_conflict_do_nothing(index_elements=[_TABLE.c.id])
    .execution_options(preserve_rowcount=True)  # read before the cursor closes: psycopg's is -1
    for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}
"""By dialect, an INSERT that leaves an id already recorded alone (rowcount 0) instead of
failing, so one redelivery does not undo the other deliveries of its transaction."""
_APPLIED_AMONG = select(_TABLE.c.id).where(
    _TABLE.c.id.in_(bindparam("delivery_ids", expanding=True)), _TABLE.c.processed_at.is_not(None)
)
_TO_APPLY = select(_TABLE.c.event, _TABLE.c.payload, _TABLE.c.received_at).where(_ID, _UNHANDLED)
_MARK_APPLIED = (
    update(_TABLE)
    .where(_ID, _UNHANDLED)
    .values(processed_at=bindparam("applied_at"), outcome=bindparam("result"))
)


@dataclass(frozen=True)
class Arrival:
    """A delivery as the receiver got it (signature checked, body parsed), not yet recorded."""

    delivery_id: str
    event: str
    body: bytes
    payload: object
    received_at: datetime

    def row(self) -> dict[str, object]:
        payload = self.payload if isinstance(self.payload, dict) else {}
        action = payload.get("action")
        installation = payload.get("installation")
        installation_id = installation.get("id") if isinstance(installation, dict) else None
        return {
            "id": self.delivery_id,
            "event": self.event,
            "action": action if isinstance(action, str) else None,
            "installation_id": installation_id if isinstance(installation_id, int) else None,
            "payload": self.body.decode("utf-8"),
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class Recorded:
    new: bool
    applied: bool
    """A worker has applied it already (it is a redelivery of one that was handled)."""

    @property
    def needs_processing(self) -> bool:
        """A redelivery of something never applied (the queue was down) is worth enqueuing."""
        return not self.applied


def record_deliveries(session: Session, arrivals: Sequence[Arrival]) -> list[Recorded]:
    """One transaction: an INSERT per delivery that skips ids already recorded (redeliveries,
    or the same delivery raced in on another API process), one read of the skipped ones, and
    the commit. In the order given."""
    connection = session.connection()
    insert_new = _INSERT_NEW[connection.dialect.name]
    new = [connection.execute(insert_new, arrival.row()).rowcount == 1 for arrival in arrivals]
    seen = [arrival.delivery_id for arrival, fresh in zip(arrivals, new, strict=True) if not fresh]
    applied = set(connection.scalars(_APPLIED_AMONG, {"delivery_ids": seen})) if seen else set()
    session.commit()
    return [
        Recorded(new=fresh, applied=arrival.delivery_id in applied)
        for arrival, fresh in zip(arrivals, new, strict=True)
    ]


def record_delivery(
    session: Session, delivery_id: str, event: str, body: bytes, payload: object, now: datetime
) -> Recorded:
    return record_deliveries(session, [Arrival(delivery_id, event, body, payload, now)])[0]


class DeliveryRecorder:
    """Records deliveries off the event loop; those arriving while a write is under way go
    together in the next transaction (a group commit).

    Under a burst a delivery's own thread hop, session and commit cost several times its
    INSERT, and SQLite takes one writer at a time anyway. Each caller gets its answer once the
    transaction holding its delivery has committed, or that transaction's error.
    """

    def __init__(self, sessions: SessionFactory, max_batch: int = MAX_BATCH) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._waiting: list[tuple[Arrival, asyncio.Future[Recorded]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, arrival: Arrival) -> Recorded:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Recorded] = loop.create_future()
        self._waiting.append((arrival, answer))
        if self._writer is None:
            self._writer = loop.create_task(self._write_while_waiting())
        return await answer

    async def _write_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await asyncio.to_thread(self._write, [a for a, _ in batch])
                except asyncio.CancelledError:  # the server is stopping
                    for _, answer in batch:
                        answer.cancel()
                    raise
                except Exception as exc:
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), result in zip(batch, results, strict=True):
                    if not answer.done():  # its request may have gone (the row stays)
                        answer.set_result(result)
        finally:
            self._writer = None

    def _write(self, arrivals: list[Arrival]) -> list[Recorded]:
        with self._sessions() as session:
            return record_deliveries(session, arrivals)


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
