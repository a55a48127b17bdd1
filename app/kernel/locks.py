"""One worker at a time per deployment, on every host: who converges its replicas this tick.

A try-lock, never a wait: a worker that finds a deployment taken (another tick still starting
its replicas) leaves it to that one and goes on with the others.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from app.kernel.db import SessionFactory

RECONCILE_LOCK_SPACE = 0x51175A9
"""First key of the two-key Postgres advisory locks, so these never meet admission's or the
route table's."""


def _lock_key(deployment_id: str) -> int:
    """A stable signed 32-bit key for the second half of the advisory lock."""
    return int.from_bytes(hashlib.sha256(deployment_id.encode()).digest()[:4], "big", signed=True)


class DeploymentLocks:
    def __init__(self, sessions: SessionFactory, lock_dir: Path) -> None:
        self._sessions = sessions
        self._lock_dir = lock_dir

    @contextmanager
    def try_hold(self, deployment_id: str) -> Iterator[bool]:
        """Yields True while this process holds the deployment, False if another does."""
        engine = self._sessions.engine
        if engine.dialect.name == "postgresql":
            key = {"space": RECONCILE_LOCK_SPACE, "key": _lock_key(deployment_id)}
            with engine.connect() as connection:
                held = bool(
                    connection.execute(
                        text("SELECT pg_try_advisory_lock(:space, :key)"), key
                    ).scalar()
                )
                connection.commit()
                try:
                    yield held
                finally:
                    if held:
                        connection.execute(text("SELECT pg_advisory_unlock(:space, :key)"), key)
                        connection.commit()
            return
        self._lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self._lock_dir / f"{deployment_id}.lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
