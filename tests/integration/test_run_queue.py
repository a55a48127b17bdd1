"""Counting a LangGraph deployment's runs in its own database, on a real cluster.

The table is langgraph-runtime-pg's `runs` (its migration 001: run_id, status, created_at, ...),
made here as the runtime makes it. The reader signs in as the deployment's role: whatever the
tenant made of its table is bounded by a statement timeout under a second and runs with the
tenant's own rights.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import psycopg
import pytest

from app.adapters.postgres import PostgresProvisioner
from app.adapters.run_queue import PostgresRunQueues
from app.kernel.errors import DatabaseError
from app.kernel.names import database_identifier
from app.kernel.ports import DatabaseLogin
from app.server.embedded import EmbeddedPostgres

pytestmark = pytest.mark.timeout(180)

RUNS_TABLE = """
CREATE TABLE runs (
    run_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id uuid,
    assistant_id uuid NOT NULL DEFAULT gen_random_uuid(),
    status varchar(32) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_runs_status_created_at ON runs (status, created_at);
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("queues") / "postgres", ["127.0.0.1"])
    server.start()
    yield server
    server.stop()


def deployment_database(cluster: EmbeddedPostgres, deployment_id: str) -> DatabaseLogin:
    name = database_identifier(deployment_id)
    password = secrets.token_urlsafe(16)
    PostgresProvisioner(cluster.admin_url, "127.0.0.1").ensure(
        name, name, password, connection_limit=5
    )
    return DatabaseLogin(name=name, role=name, password=password)


def tenant(
    cluster: EmbeddedPostgres, login: DatabaseLogin
) -> psycopg.Connection[tuple[object, ...]]:
    """The deployment's own connection, as its app makes one."""
    return psycopg.connect(
        host="127.0.0.1",
        port=cluster.port,
        user=login.role,
        password=login.password,
        dbname=login.name,
        autocommit=True,
    )


def test_pending_runs_due_now_and_running_runs_are_counted_over_one_kept_connection(
    cluster: EmbeddedPostgres,
) -> None:
    login = deployment_database(cluster, "dep_queue001")
    with tenant(cluster, login) as conn:
        conn.execute(RUNS_TABLE)
        for status, count in (("pending", 4), ("running", 3), ("success", 9), ("error", 2)):
            for _ in range(count):
                conn.execute("INSERT INTO runs (status) VALUES (%s)", (status,))
        # A run created with `after_seconds` waits: no worker may take it yet.
        conn.execute("INSERT INTO runs (status, created_at) VALUES ('pending', now() + '1h')")
    queues = PostgresRunQueues(cluster.admin_url)

    assert queues.run_counts("dep_queue001", login) == (4, 3)
    with tenant(cluster, login) as conn:
        conn.execute("UPDATE runs SET status = 'success' WHERE status = 'running'")
        backends = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'slipway-autoscaler'"
        ).fetchone()
    assert queues.run_counts("dep_queue001", login) == (4, 0)
    assert backends == (1,), "one connection, kept between reads"

    queues.keep_only([])
    with tenant(cluster, login) as conn:

        def gone() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'slipway-autoscaler'"
            ).fetchone()
            return row == (0,)

        deadline = time.monotonic() + 10
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone()


def test_a_hostile_table_costs_under_a_second_and_is_read_with_the_tenants_rights(
    cluster: EmbeddedPostgres,
) -> None:
    login = deployment_database(cluster, "dep_queue002")
    with tenant(cluster, login) as conn:
        # A view that sleeps, and one that tries to write: the reader's session is read-only.
        conn.execute(
            "CREATE FUNCTION slow() RETURNS varchar LANGUAGE sql AS "
            "$$ SELECT pg_sleep(30)::text || 'pending' $$"
        )
        conn.execute(
            "CREATE VIEW runs AS SELECT slow() AS status, now() AS created_at "
            "FROM generate_series(1, 3)"
        )
    queues = PostgresRunQueues(cluster.admin_url)

    started = time.monotonic()
    with pytest.raises(DatabaseError, match="statement timeout"):
        queues.run_counts("dep_queue002", login)
    assert time.monotonic() - started < 3

    with tenant(cluster, login) as conn:
        conn.execute("DROP VIEW runs")
        conn.execute("CREATE TABLE written (v text)")
        conn.execute(
            "CREATE FUNCTION sneaky() RETURNS varchar LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO written VALUES (current_user); RETURN 'running'; END $$"
        )
        conn.execute("CREATE VIEW runs AS SELECT sneaky() AS status, now() AS created_at")
    with pytest.raises(DatabaseError, match="read-only transaction"):
        queues.run_counts("dep_queue002", login)
    with tenant(cluster, login) as conn:
        assert conn.execute("SELECT count(*) FROM written").fetchone() == (0,)


def test_no_runs_table_or_a_wrong_password_is_a_database_error_without_the_password(
    cluster: EmbeddedPostgres,
) -> None:
    login = deployment_database(cluster, "dep_queue003")
    queues = PostgresRunQueues(cluster.admin_url)

    with pytest.raises(DatabaseError, match="runs"):
        queues.run_counts("dep_queue003", login)

    wrong = DatabaseLogin(name=login.name, role=login.role, password="not-" + login.password)
    with pytest.raises(DatabaseError) as refused:
        queues.run_counts("dep_queue003", wrong)
    assert wrong.password not in str(refused.value)
    assert "password authentication failed" in str(refused.value)


def test_a_role_reads_no_other_deployments_runs(cluster: EmbeddedPostgres) -> None:
    mine = deployment_database(cluster, "dep_queue004")
    theirs = deployment_database(cluster, "dep_queue005")
    with tenant(cluster, theirs) as conn:
        conn.execute(RUNS_TABLE)
    crossed = DatabaseLogin(name=theirs.name, role=mine.role, password=mine.password)
    with pytest.raises(DatabaseError):
        PostgresRunQueues(cluster.admin_url).run_counts("dep_queue004", crossed)
