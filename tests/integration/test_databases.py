"""Deployment databases on a real cluster: one role each, unreachable from other roles."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from app.adapters.postgres import PostgresProvisioner, RoleLimits, scram_verifier
from app.kernel.errors import DatabaseError
from app.kernel.names import database_identifier
from app.server.embedded import EmbeddedPostgres, docker_bridge_gateway
from tests.support.images import DOCKER, ensure_python_image

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    gateway = docker_bridge_gateway()
    assert gateway, "a Docker engine with its default bridge is needed (make test starts one)"
    server = EmbeddedPostgres(tmp_path_factory.mktemp("dbs") / "postgres", ["127.0.0.1", gateway])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def provisioner(cluster: EmbeddedPostgres) -> PostgresProvisioner:
    return PostgresProvisioner(cluster.admin_url, "host.docker.internal")


def _local_uri(cluster: EmbeddedPostgres, name: str, password: str, database: str) -> str:
    return f"postgresql://{name}:{password}@127.0.0.1:{cluster.port}/{database}"


def test_each_deployment_reaches_its_own_database_and_no_other(
    cluster: EmbeddedPostgres, provisioner: PostgresProvisioner
) -> None:
    a, b = database_identifier("dep_aaaa1111"), database_identifier("dep_bbbb2222")
    pass_a, pass_b = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    provisioner.ensure(a, a, pass_a, connection_limit=20)
    provisioner.ensure(b, b, pass_b, connection_limit=20)

    with psycopg.connect(_local_uri(cluster, a, pass_a, a), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('mine')")
    # pg_hba allows a role only the database of its own name: refused before any privilege.
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(_local_uri(cluster, a, pass_a, b))
    for system_database in ("postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
            psycopg.connect(_local_uri(cluster, a, pass_a, system_database))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_local_uri(cluster, a, pass_b, a))

    # Provisioning again (a retried job) keeps the data and the password.
    provisioner.ensure(a, a, pass_a, connection_limit=20)
    with psycopg.connect(_local_uri(cluster, a, pass_a, a)) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("mine",)]

    provisioner.drop(b, b)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_local_uri(cluster, b, pass_b, b))


def test_a_container_reaches_its_database_with_the_uri_it_is_given(
    cluster: EmbeddedPostgres, provisioner: PostgresProvisioner, tmp_path: Path
) -> None:
    image = ensure_python_image()
    name = database_identifier("dep_cccc3333")
    password = secrets.token_urlsafe(16)
    provisioner.ensure(name, name, password, connection_limit=20)
    uri = provisioner.container_uri(name, name, password)
    assert uri.startswith(f"postgresql://{name}:") and "@host.docker.internal:" in uri

    script = (
        "import os, psycopg2\n"
        "c = psycopg2.connect(os.environ['DATABASE_URI'], connect_timeout=5)\n"
        "cur = c.cursor(); cur.execute('SELECT current_user, current_database()')\n"
        "print(*cur.fetchone())\n"
    )
    result = subprocess.run(
        [
            DOCKER,
            "run",
            "--rm",
            "--add-host",
            "host.docker.internal:host-gateway",
            "--env",
            "DATABASE_URI",
            image,
            "python3",
            "-c",
            script,
        ],
        env={**os.environ, "DATABASE_URI": uri},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, name]


def test_a_deployment_role_has_a_connection_limit(
    cluster: EmbeddedPostgres, provisioner: PostgresProvisioner
) -> None:
    name = database_identifier("dep_dddd4444")
    password = secrets.token_urlsafe(16)
    provisioner.ensure(name, name, password, connection_limit=2)
    held = [psycopg.connect(_local_uri(cluster, name, password, name)) for _ in range(2)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(_local_uri(cluster, name, password, name))
    finally:
        for conn in held:
            conn.close()
    # A closed connection's slot comes back once its backend has exited, a moment after the
    # client closed it (longer on a loaded machine): asked again until then.
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(_local_uri(cluster, name, password, name)) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            break
        except psycopg.OperationalError as exc:
            if "too many connections" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_no_password_reaches_the_cluster_log_even_when_a_statement_fails(
    cluster: EmbeddedPostgres, provisioner: PostgresProvisioner
) -> None:
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")  # the worst case: log it all
        conn.execute("SELECT pg_reload_conf()")
    try:
        name = database_identifier("dep_eeee5555")
        password = secrets.token_urlsafe(24)
        provisioner.ensure(name, name, password, connection_limit=5)
        # A statement that fails (the limit must be >= -1) is logged with its text.
        with pytest.raises(DatabaseError):
            provisioner.ensure(name, name, password, connection_limit=-5)
        with psycopg.connect(_local_uri(cluster, name, password, name)) as conn:
            conn.execute("SELECT 1")
    finally:
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")
    log = cluster.log_path.read_text(errors="replace")
    assert "CREATE ROLE" in log or "ALTER ROLE" in log  # the statements were logged ...
    assert password not in log  # ... without the password


def test_the_verifier_is_what_postgres_computes_for_the_password() -> None:
    salt = bytes(range(16))
    verifier = scram_verifier("pencil", salt=salt)
    assert verifier.startswith("SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$")
    assert "pencil" not in verifier


def test_a_role_gets_its_statement_timeout_and_a_temp_file_limit_it_cannot_lift(
    cluster: EmbeddedPostgres,
) -> None:
    provisioner = PostgresProvisioner(
        cluster.admin_url,
        "host.docker.internal",
        RoleLimits(statement_timeout_ms=500, temp_file_limit_kb=1024),
    )
    name = database_identifier("dep_ffff6666")
    password = secrets.token_urlsafe(16)
    provisioner.ensure(name, name, password, connection_limit=3)
    with psycopg.connect(_local_uri(cluster, name, password, name), autocommit=True) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        # A sort that spills past 1 MB of temporary files fails alone.
        conn.execute("SET work_mem = '64kB'")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit"):
            conn.execute("SELECT g FROM generate_series(1, 2000000) g ORDER BY g DESC").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET temp_file_limit = -1")


def test_existing_roles_get_the_limits_of_today_and_a_second_run_changes_nothing(
    cluster: EmbeddedPostgres,
) -> None:
    name = database_identifier("dep_gggg7777")
    password = secrets.token_urlsafe(16)
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:  # a role of an old release
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 50 PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(scram_verifier(password))
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(*[sql.Identifier(name)] * 2))
    provisioner = PostgresProvisioner(
        cluster.admin_url, "host.docker.internal", RoleLimits(statement_timeout_ms=700)
    )
    for _ in range(2):
        assert provisioner.limit([(name, 2), ("slipway_dep_gone", 2)]) == 1
    with psycopg.connect(_local_uri(cluster, name, password, name)) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("700ms",)
        assert conn.execute("SHOW temp_file_limit").fetchone() == ("1GB",)
        second = psycopg.connect(_local_uri(cluster, name, password, name))
        try:
            with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
                psycopg.connect(_local_uri(cluster, name, password, name))
        finally:
            second.close()


def test_tenants_at_their_limits_never_take_the_platforms_reserved_connections(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    small = EmbeddedPostgres(
        tmp_path_factory.mktemp("reserved") / "postgres",
        tenant_connections=4,
        platform_connections=3,
    )
    small.start()
    held: list[psycopg.Connection[tuple[object, ...]]] = []
    try:
        provisioner = PostgresProvisioner(small.admin_url, "host.docker.internal")
        roles = []
        for deployment in ("dep_hhhh0001", "dep_hhhh0002"):
            name = database_identifier(deployment)
            password = secrets.token_urlsafe(16)
            provisioner.ensure(name, name, password, connection_limit=3)
            roles.append((name, password))
        # Two tenants together reach the tenants' share (4) before their own limits (3 + 3).
        for name, password in [roles[0], roles[0], roles[1], roles[1]]:
            held.append(psycopg.connect(_local_uri(small, name, password, name)))
        name, password = roles[1]
        with pytest.raises(psycopg.OperationalError, match="reserved"):
            psycopg.connect(_local_uri(small, name, password, name))
        # The platform still provisions: its superuser takes one of the reserved slots.
        third = database_identifier("dep_hhhh0003")
        provisioner.ensure(third, third, secrets.token_urlsafe(16), connection_limit=3)
    finally:
        for conn in held:
            conn.close()
        small.stop()
