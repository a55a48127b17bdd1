"""Short leases on a control-plane row: one worker at a time does a row's outside work.

A lease is a timestamp column compare-and-set in one UPDATE, so it holds across processes and
hosts on SQLite and Postgres alike. The holder renews it while it works, so the lease can be
short: a holder that died (a worker killed in the middle of a send) is waited out within one
lease, seconds, not the longest send GitHub could take. The timestamp the holder wrote is its
token: it renews and releases only a lease that is still its own. Used for a pull request's
comment and a revision's reports to GitHub.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update

from app.kernel.db import SessionFactory
from app.kernel.ports import Clock

log = logging.getLogger(__name__)

RENEWALS_PER_LEASE = 3
"""A renewal every third of the lease: two may be lost to a database blip before it lapses."""


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

    @contextmanager
    def held(self, row_id: str) -> Iterator[bool]:
        """Yields whether the row's lease was taken; while the block runs it is renewed, and
        it is given back at the end. False: another holder has it, do nothing."""
        token = self._acquire(row_id)
        if token is None:
            yield False
            return
        renewal = _Renewal(self, row_id, token)
        renewal.start()
        try:
            yield True
        finally:
            self._release(row_id, renewal.stop())

    def _acquire(self, row_id: str) -> datetime | None:
        now = self._clock()
        token = now + self._duration
        with self._sessions() as session:
            result = session.execute(
                update(self._key.table)
                .where(self._key == row_id, or_(self._until.is_(None), self._until < now))
                .values({self._until.key: token})
            )
            session.commit()
            return token if result.rowcount else None  # type: ignore[attr-defined]

    def renew(self, row_id: str, token: datetime) -> datetime | None:
        """The new token, or None when the lease is no longer this holder's."""
        renewed = self._clock() + self._duration
        with self._sessions() as session:
            result = session.execute(
                update(self._key.table)
                .where(self._key == row_id, self._until == token)
                .values({self._until.key: renewed})
            )
            session.commit()
            return renewed if result.rowcount else None  # type: ignore[attr-defined]

    def _release(self, row_id: str, token: datetime) -> None:
        with self._sessions() as session:
            session.execute(
                update(self._key.table)
                .where(self._key == row_id, self._until == token)
                .values({self._until.key: None})
            )
            session.commit()

    @property
    def renewal_interval(self) -> float:
        return self._duration.total_seconds() / RENEWALS_PER_LEASE


class _Renewal:
    """Renews a held lease from a thread until stopped; quick work never renews at all."""

    def __init__(self, lease: Lease, row_id: str, token: datetime) -> None:
        self._lease = lease
        self._row_id = row_id
        self.token = token
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease:{row_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> datetime:
        self._stopped.set()
        self._thread.join()
        return self.token

    def _run(self) -> None:
        while not self._stopped.wait(self._lease.renewal_interval):
            try:
                renewed = self._lease.renew(self._row_id, self.token)
            except Exception:  # a database blip: the next renewal tries again
                log.warning("lease not renewed", extra={"row_id": self._row_id}, exc_info=True)
                continue
            if renewed is None:
                log.warning("lease lost while held", extra={"row_id": self._row_id})
                return
            self.token = renewed
