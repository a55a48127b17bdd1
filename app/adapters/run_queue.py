"""A LangGraph Server's run queue, counted in its deployment's own database.

The `pg` runtime (langgraph-runtime-pg) keeps the runs of every replica in one table, `runs`,
with a `status` of pending, running, success, error, ... and a `created_at` a delayed run waits
for (its workers take `pending` runs with `created_at <= now()`); its server's metrics endpoint
reports no queue at all (its `get_metrics` is a stub), so the table is the one place to read.

Signed in as the deployment's own role, never the cluster's superuser: the table is the
tenant's, and whatever it made of it (a view, a function, a lock) runs with its own rights
inside its own database. Each statement is fixed text; the role, password and database name are
the platform's own and travel as connection parameters, never inside SQL. The connection's
`statement_timeout` (and `lock_timeout`) of under a second bound what a tick waits on one
deployment, whatever the role's default or the table's size.

One connection per deployment is kept open between ticks (a tick every 2 s would otherwise
spend a SCRAM handshake and a backend start on each LangGraph deployment: ~10 ms of CPU each);
it counts towards the role's CONNECTION LIMIT like any of the app's own, and is closed once the
deployment has no ready replica (`keep_only`) or after any error.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.adapters.postgres import connect_as
from app.kernel.errors import DatabaseError
from app.kernel.ports import DatabaseLogin

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 800
LOCK_TIMEOUT_MS = 400
QUEUE_COUNTS = """
SELECT
    count(*) FILTER (WHERE status = 'pending' AND created_at <= now()),
    count(*) FILTER (WHERE status = 'running')
FROM public.runs
WHERE status IN ('pending', 'running')
"""
"""Both counts in one pass over the runtime's (status, created_at) index."""


class PostgresRunQueues:
    def __init__(self, admin_url: str) -> None:
        parts = urlsplit(admin_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self._lock = threading.Lock()
        self._open: dict[str, tuple[DatabaseLogin, psycopg.Connection[tuple[object, ...]]]] = {}

    def run_counts(self, deployment_id: str, login: DatabaseLogin) -> tuple[int, int]:
        # Imported at the first LangGraph deployment's first read: a platform without one
        # never holds the driver (issue 22: the combined process at rest).
        import psycopg

        with self._lock:
            conn = self._connection(deployment_id, login)
            try:
                row = conn.execute(QUEUE_COUNTS).fetchone()
            except psycopg.Error as exc:
                self._close(deployment_id)
                raise DatabaseError(
                    f"could not count the runs of {login.name}: {_reason(exc)}"
                ) from None
        if row is None:
            return 0, 0
        pending, running = row
        return int(str(pending)), int(str(running))

    def keep_only(self, deployment_ids: Iterable[str]) -> None:
        kept = set(deployment_ids)
        with self._lock:
            for deployment_id in [d for d in self._open if d not in kept]:
                self._close(deployment_id)

    def _connection(
        self, deployment_id: str, login: DatabaseLogin
    ) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        held = self._open.get(deployment_id)
        if held is not None:
            held_login, conn = held
            if held_login == login and not conn.closed and not conn.broken:
                return conn
            self._close(deployment_id)
        try:
            conn = connect_as(
                login,
                self._host,
                self._port,
                application_name="slipway-autoscaler",
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=(
                    f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
                    f" -c lock_timeout={LOCK_TIMEOUT_MS}"
                    " -c default_transaction_read_only=on"
                ),
            )
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not open {login.name} to count its runs: {_reason(exc)}"
            ) from None
        self._open[deployment_id] = (login, conn)
        return conn

    def _close(self, deployment_id: str) -> None:
        held = self._open.pop(deployment_id, None)
        if held is not None:
            import psycopg

            with contextlib.suppress(psycopg.Error):
                held[1].close()


def _reason(exc: psycopg.Error) -> str:
    """The server's first line (it never holds the password), or the error's kind."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    if primary:
        return str(primary)
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
