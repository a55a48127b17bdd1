"""Recording deliveries as the receiver does under a burst: several in one transaction, each
delivery id once, a redelivery told apart from a new one and from one already applied."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from app.deliveries.inbox import (
    Arrival,
    DeliveryRecorder,
    Recorded,
    apply_delivery,
    record_deliveries,
)
from app.kernel.crypto import SecretBox
from app.kernel.db import HOT_PATH_AUTOCHECKPOINT_PAGES, SessionFactory
from app.kernel.models import Delivery

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRETS = SecretBox("k" * 32)


def arrival(
    delivery_id: str, event: str = "ping", payload: object | None = None, at: datetime = NOW
) -> Arrival:
    payload = payload if payload is not None else {"zen": delivery_id}
    return Arrival(delivery_id, event, json.dumps(payload).encode(), payload, at)


def stored(sessions: SessionFactory) -> dict[str, Delivery]:
    with sessions() as session:
        return {d.id: d for d in session.exec(select(Delivery)).all()}


def test_deliveries_recorded_together_are_each_stored_once_in_order(
    sessions: SessionFactory,
) -> None:
    earlier = NOW - timedelta(minutes=5)
    with sessions.autocommit() as connection:
        record_deliveries(connection, [arrival("applied", at=earlier)])
        record_deliveries(connection, [arrival("waiting", at=earlier)])
    with sessions() as session:
        assert apply_delivery(session, "applied", SECRETS, NOW) is not None

    push = {"action": "opened", "installation": {"id": 7}}
    with sessions.autocommit() as connection:
        results = record_deliveries(
            connection,
            [
                arrival("a"),
                arrival("applied"),  # GitHub's redelivery of one handled
                arrival("b", "pull_request", push),
                arrival("waiting"),  # redelivered: recorded, its job lost
                arrival("a"),  # twice in one statement
            ],
        )

    assert results == [
        Recorded(new=True, applied=False),
        Recorded(new=False, applied=True),
        Recorded(new=True, applied=False),
        Recorded(new=False, applied=False),
        Recorded(new=False, applied=False),
    ]
    assert [r.needs_processing for r in results] == [True, False, True, True, True]
    rows = stored(sessions)
    assert sorted(rows) == ["a", "applied", "b", "waiting"]
    assert (rows["b"].event, rows["b"].action, rows["b"].installation_id) == (
        "pull_request",
        "opened",
        7,
    )
    assert json.loads(rows["b"].payload) == push
    assert rows["a"].received_at == NOW
    assert rows["applied"].received_at == earlier


def test_redeliveries_alone_are_told_apart_whatever_the_clock_says(
    sessions: SessionFactory,
) -> None:
    with sessions.autocommit() as connection:
        record_deliveries(connection, [arrival("a"), arrival("b")])
        again = record_deliveries(connection, [arrival("a"), arrival("b"), arrival("a")])

    assert again == [Recorded(new=False, applied=False)] * 3


def test_a_burst_is_recorded_in_fewer_statements_than_deliveries(
    sessions: SessionFactory,
) -> None:
    recorder = DeliveryRecorder(sessions, max_batch=8)
    inserts: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO deliveries"):
            inserts.append(statement)

    async def burst() -> list[Recorded]:
        ids = [f"d-{i}" for i in range(40)] + ["d-0", "d-1"]
        return await asyncio.gather(*(recorder.record(arrival(i)) for i in ids))

    event.listen(Engine, "before_cursor_execute", count)  # the recorder's engine is its own
    try:
        results = asyncio.run(burst())
    finally:
        event.remove(Engine, "before_cursor_execute", count)

    assert [r.new for r in results] == [True] * 40 + [False, False]
    assert len(stored(sessions)) == 40
    assert 42 / 8 <= len(inserts) < 42  # each statement its own transaction


def test_when_a_transaction_fails_each_of_its_deliveries_gets_the_error(
    sessions: SessionFactory,
) -> None:
    recorder = DeliveryRecorder(sessions)
    with sessions.engine.begin() as connection:
        connection.execute(text("ALTER TABLE deliveries RENAME TO deliveries_away"))

    async def burst() -> list[Recorded | BaseException]:
        return await asyncio.gather(
            *(recorder.record(arrival(f"d-{i}")) for i in range(3)), return_exceptions=True
        )

    results = asyncio.run(burst())

    assert all(isinstance(r, OperationalError) and "no such table" in str(r) for r in results)

    # The table back, the next delivery starts a new write.
    with sessions.engine.begin() as connection:
        connection.execute(text("ALTER TABLE deliveries_away RENAME TO deliveries"))
    assert asyncio.run(recorder.record(arrival("later"))).new
    assert sorted(stored(sessions)) == ["later"]


@pytest.mark.parametrize("payload", [[1, 2], "text", {"installation": {"id": "x"}, "action": 3}])
def test_fields_of_odd_payloads_are_left_empty(sessions: SessionFactory, payload: object) -> None:
    with sessions.autocommit() as connection:
        record_deliveries(connection, [arrival("odd", "ping", payload)])

    row = stored(sessions)["odd"]
    assert (row.action, row.installation_id) == (None, None)


def test_the_receivers_connections_leave_checkpoints_to_the_others(
    sessions: SessionFactory,
) -> None:
    """A checkpoint fsyncs in the committing thread: not the one every delivery waits for."""
    with sessions.autocommit() as connection:
        receiver = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    with sessions() as session:
        others = session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()

    assert (receiver, others) == (HOT_PATH_AUTOCHECKPOINT_PAGES, 1000)
