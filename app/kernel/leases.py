"""Short leases on a control-plane row: one worker at a time does a row's outside work.

A lease is a timestamp column compare-and-set in one UPDATE, so it holds across processes and
hosts on SQLite and Postgres alike; a holder that died is waited out when its lease expires.
Used for a pull request's comment and a revision's reports to GitHub.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update

from app.kernel.db import SessionFactory
from app.kernel.ports import Clock


class Lease:
    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        key: Any,
        until: Any,
        duration: timedelta,
    ) -> None:
        """`key` and `until`: the row's id column and its lease column (`col(Model.x)`)."""
        self._sessions = sessions
        self._clock = clock
        self._key = key
        self._until = until
        self._duration = duration

    def acquire(self, row_id: str) -> bool:
        now = self._clock()
        with self._sessions() as session:
            result = session.execute(
                update(self._key.table)
                .where(self._key == row_id, or_(self._until.is_(None), self._until < now))
                .values({self._until.key: now + self._duration})
            )
            session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def release(self, row_id: str) -> None:
        with self._sessions() as session:
            session.execute(
                update(self._key.table).where(self._key == row_id).values({self._until.key: None})
            )
            session.commit()
