"""Deployment databases on a real cluster: one role each, unreachable from other roles."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.databases import PostgresProvisioner, database_identifier
from app.embedded import EmbeddedPostgres, docker_bridge_gateway
from tests.images import DOCKER, ensure_python_image

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
    provisioner.ensure(a, a, pass_a)
    provisioner.ensure(b, b, pass_b)

    with psycopg.connect(_local_uri(cluster, a, pass_a, a), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('mine')")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(_local_uri(cluster, a, pass_a, b))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_local_uri(cluster, a, pass_b, a))

    # Provisioning again (a retried job) keeps the data and the password.
    provisioner.ensure(a, a, pass_a)
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
    provisioner.ensure(name, name, password)
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
