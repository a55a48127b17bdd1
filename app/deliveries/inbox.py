"""Webhook deliveries: recorded before anything else happens, applied at most once.

Both steps are on the path of every delivery (the API records, the worker applies), and a
burst of them competes for two cores and SQLite's one writer, so each is a short transaction of
Core statements (the ORM is left to the event handlers that need it), and the API records the
deliveries that arrive together in one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, TextClause, bindparam, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.deliveries.facts import CommitFacts
from app.deliveries.handlers import process_delivery
from app.kernel.batches import MAX_BATCH, Batcher
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import Delivery
from app.kernel.orders import WorkOrder

APPLY_ATTEMPTS = 3
_RECORDED = ("id", "event", "action", "installation_id", "payload", "received_at")
"""The columns the receiver writes (Arrival.row); the rest are the worker's."""

# Built once: composing a statement costs more than running it on SQLite.
_TABLE: Table = Delivery.__table__  # type: ignore[attr-defined]
_ID = _TABLE.c.id == bindparam("delivery_id")
_UNHANDLED = _TABLE.c.processed_at.is_(None)


@functools.cache
def _insert_new(rows: int) -> TextClause:
    """One INSERT of `rows` deliveries (parameters `<column>_<row>`) that leaves an id already
    recorded alone (and out of the rowcount) instead of failing, so one redelivery does not
    undo the others. Text, the same for SQLite and Postgres: SQLAlchemy compiles a multi-row
    `insert().values()` anew at every execution, which costs more than the write; this is
    built and compiled once per size."""
    placeholders = ", ".join(
        "(" + ", ".join(f":{column}_{row}" for column in _RECORDED) + ")" for row in range(rows)
    )
    statement = text(
        f"INSERT INTO {_TABLE.name} ({', '.join(_RECORDED)}) VALUES {placeholders} "  # noqa: S608
        "ON CONFLICT (id) DO NOTHING"
    ).bindparams(
        *(
            bindparam(f"{column}_{row}", type_=_TABLE.c[column].type)
            for row in range(rows)
            for column in _RECORDED
        )
    )
    # The rowcount read before the cursor closes: psycopg's reads -1 after.
    return statement.execution_options(preserve_rowcount=True)


_ALREADY_THERE = select(_TABLE.c.id, _TABLE.c.received_at, _TABLE.c.processed_at).where(
    _TABLE.c.id.in_(bindparam("delivery_ids", expanding=True))
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


def record_deliveries(connection: Connection, arrivals: Sequence[Arrival]) -> list[Recorded]:
    """Records them with one INSERT statement that skips ids already recorded (a redelivery,
    or the same delivery raced in on another API process); only when it skipped some does a
    read tell which ones, and whether a worker applied them. In the order given.

    On an autocommit connection (the receiver's) that statement is its own transaction, begun
    and committed inside one call into SQLite: the write lock is never held while this thread
    waits for the GIL, which under a burst the event loop holds for up to 5 ms at a time.
    On a session's connection the caller commits.
    """
    first: dict[str, Arrival] = {}
    for arrival in arrivals:
        first.setdefault(arrival.delivery_id, arrival)
    statement = _insert_new(len(first))
    parameters = {
        f"{column}_{row}": value
        for row, arrival in enumerate(first.values())
        for column, value in arrival.row().items()
    }
    inserted = connection.execute(statement, parameters).rowcount
    if inserted == len(first):  # all new: the usual case, and no read
        ours = dict(first)
        applied: set[str] = set()
    else:
        found = connection.execute(_ALREADY_THERE, {"delivery_ids": list(first)}).all()
        applied = {row.id for row in found if row.processed_at is not None}
        # Some were there before: if not all, the rows this INSERT wrote are those carrying
        # their arrival's own receipt time (to the microsecond; a redelivery comes later).
        ours = {
            row.id: first[row.id]
            for row in found
            if inserted and row.received_at == first[row.id].received_at
        }
    return [
        Recorded(new=ours.get(a.delivery_id) is a, applied=a.delivery_id in applied)
        for a in arrivals
    ]


def record_delivery(
    session: Session, delivery_id: str, event: str, body: bytes, payload: object, now: datetime
) -> Recorded:
    """One delivery, in the session's transaction, committed."""
    arrival = Arrival(delivery_id, event, body, payload, now)
    [recorded] = record_deliveries(session.connection(), [arrival])
    session.commit()
    return recorded


class DeliveryRecorder:
    """Records deliveries off the event loop; those arriving while a write is under way go
    together in the next statement (see app.kernel.batches). A caller gets its answer once the
    row of its delivery is committed, or that statement's error."""

    def __init__(self, sessions: SessionFactory, max_batch: int = MAX_BATCH) -> None:
        self._sessions = sessions
        self._batches: Batcher[Arrival, Recorded] = Batcher(self._write_off_loop, max_batch)

    async def record(self, arrival: Arrival) -> Recorded:
        return await self._batches.submit(arrival)

    async def _write_off_loop(self, arrivals: list[Arrival]) -> list[Recorded]:
        return await asyncio.to_thread(self._write, arrivals)

    def _write(self, arrivals: list[Arrival]) -> list[Recorded]:
        with self._sessions.autocommit() as connection:
            return record_deliveries(connection, arrivals)


def apply_delivery(
    session: Session,
    delivery_id: str,
    secrets: SecretBox,
    now: datetime,
    facts: CommitFacts | None = None,
) -> WorkOrder | None:
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
