"""Real servers from app.server.embedded: Postgres, Valkey and Caddy under a temporary data dir.

Everything talks to 127.0.0.1 only. The Docker bridge is used only to choose Postgres's
listen addresses (checked through 127.0.0.1); the container-reaches-Postgres check lives with
the runtime tests.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.adapters.caddy_admin import admin_base, admin_client
from app.server.cold_pages import reclaim_file_pages
from app.server.embedded import (
    PG_ADMIN_USER,
    Caddy,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServiceError,
    docker_bridge_gateway,
    find_caddy,
    free_port,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bridge_gateway() -> str | None:
    return docker_bridge_gateway()


@pytest.fixture(scope="module")
def pg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded") / "postgres"


@pytest.fixture(scope="module")
def pg(pg_dir: Path, bridge_gateway: str | None) -> Iterator[EmbeddedPostgres]:
    hosts = ["127.0.0.1"] + ([bridge_gateway] if bridge_gateway else [])
    server = EmbeddedPostgres(pg_dir, hosts)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _http(client_timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=client_timeout)


# -- Postgres ---------------------------------------------------------------------------------


def test_postgres_admin_url_and_files(pg: EmbeddedPostgres, pg_dir: Path) -> None:
    url = pg.admin_url
    assert url.startswith(f"postgresql://{PG_ADMIN_USER}:")
    assert url.endswith(f"@127.0.0.1:{pg.port}/postgres")
    assert pg.port not in (5432, 6379)
    password_file = pg_dir / "admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text().strip() in url
    assert int((pg_dir / "port").read_text()) == pg.port
    assert pg.is_running()

    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT current_user, current_setting('password_encryption'), "
            "current_setting('port')::int"
        ).fetchone()
    assert row == (PG_ADMIN_USER, "scram-sha-256", pg.port)


def test_postgres_wrong_password_is_refused(pg: EmbeddedPostgres) -> None:
    bad = f"postgresql://{PG_ADMIN_USER}:not-the-password@127.0.0.1:{pg.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)


def test_postgres_hba_rejects_admin_from_elsewhere(pg: EmbeddedPostgres) -> None:
    with psycopg.connect(pg.admin_url, connect_timeout=5) as conn:
        rules = conn.execute(
            "SELECT type, user_name, address, netmask, auth_method FROM pg_hba_file_rules "
            "WHERE error IS NULL ORDER BY rule_number"
        ).fetchall()
    admin_rules = [r for r in rules if r[1] == [PG_ADMIN_USER]]
    assert admin_rules[0][2:] == ("127.0.0.1", "255.255.255.255", "scram-sha-256")
    assert {r[4] for r in admin_rules[1:]} == {"reject"}
    assert ("host", ["all"], "172.16.0.0", "255.240.0.0", "scram-sha-256") in rules


def test_postgres_role_and_database_survive_restart(pg: EmbeddedPostgres) -> None:
    url, port = pg.admin_url, pg.port
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE ROLE app_one LOGIN PASSWORD 'app-one-pw'")
        conn.execute("CREATE DATABASE app_one OWNER app_one")
    app_url = f"postgresql://app_one:app-one-pw@127.0.0.1:{port}/app_one"
    with psycopg.connect(app_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")

    pg.stop()
    assert not pg.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    assert pg.start() == url  # same password, same port
    assert pg.port == port
    with psycopg.connect(app_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]


def test_postgres_killed_with_sigkill_is_seen_dead_and_comes_back_on_its_url(
    pg: EmbeddedPostgres,
) -> None:
    """What `slipway up` does when the cluster dies: is_alive (polled twice a second) sees it,
    and start() brings it back at the same URL the platform's processes hold."""
    url = pg.admin_url
    assert pg.is_alive()
    postmaster = int((pg.pgdata / "postmaster.pid").read_text().splitlines()[0])
    os.kill(postmaster, signal.SIGKILL)
    _until("the cluster to be seen dead", lambda: not pg.is_alive())

    def restarted() -> bool:
        try:  # its orphaned backends may hold the shared memory for a moment: retried
            return pg.start() == url
        except EmbeddedServiceError:
            return False

    _until("the cluster to start again", restarted, 60)
    assert pg.is_alive()
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("420",)
        assert conn.execute("SHOW superuser_reserved_connections").fetchone() == ("20",)
        # Idle deployments' databases are not visited every minute (issue 22).
        assert conn.execute("SHOW autovacuum_naptime").fetchone() == ("5min",)
        # No I/O workers nor a logical replication launcher at rest (issue 22).
        assert conn.execute("SHOW io_method").fetchone() == ("sync",)
        assert conn.execute("SHOW max_logical_replication_workers").fetchone() == ("0",)


def _until(what: str, check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_postgres_second_handle_adopts_running_server(
    pg: EmbeddedPostgres, pg_dir: Path, bridge_gateway: str | None
) -> None:
    with psycopg.connect(pg.admin_url, connect_timeout=5) as conn:
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    hosts = ["127.0.0.1"] + ([bridge_gateway] if bridge_gateway else [])
    again = EmbeddedPostgres(pg_dir, hosts)
    assert again.is_running()
    assert again.start() == pg.admin_url
    with psycopg.connect(again.admin_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone() == started


def test_postgres_listens_on_docker_bridge(
    pg: EmbeddedPostgres, bridge_gateway: str | None
) -> None:
    if bridge_gateway is None:
        pytest.skip("no Docker engine answers: no bridge gateway to listen on")
    with psycopg.connect(pg.admin_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting('listen_addresses')").fetchone()
    assert row is not None
    assert row[0].split(",") == ["127.0.0.1", bridge_gateway]


def test_postgres_start_failure_reports_log(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        conf = server.pgdata / "postgresql.conf"
        conf.write_text(
            conf.read_text().replace(
                "include_if_exists = 'slipway.conf'",
                "temp_buffers = 'not-a-size'\ninclude_if_exists = 'slipway.conf'",
            )
        )
        server.stop()
        with pytest.raises(EmbeddedServiceError, match="temp_buffers"):
            server.start()
    finally:
        server.stop()


# -- helpers ----------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert port not in (5432, 6379)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_bridge_gateway_without_docker_binary() -> None:
    assert docker_bridge_gateway("/nonexistent/docker") is None


# -- Valkey -----------------------------------------------------------------------------------


def _redis_command(port: int, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        payload += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(1024)


def _redis_session(port: int, password: str, *args: str) -> bytes:
    payload = b""
    for command in (("AUTH", password), args):
        payload += f"*{len(command)}\r\n".encode()
        for arg in command:
            payload += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        reply = b""
        while reply.count(b"\r\n") < (3 if args[0] == "GET" else 2):
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"+OK\r\n"), reply
    return reply.removeprefix(b"+OK\r\n")


def test_redis_needs_its_password_and_keeps_jobs_across_restarts(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "valkey")
    try:
        url = redis.start()
        password = (tmp_path / "valkey" / "password").read_text().strip()
        assert url == f"redis://:{password}@127.0.0.1:{redis.port}/0"
        assert (tmp_path / "valkey" / "password").stat().st_mode & 0o077 == 0
        assert redis.port not in (6379, 5432)
        # Any local user can reach 127.0.0.1; without the password they get nothing.
        assert _redis_command(redis.port, "PING").startswith(b"-NOAUTH")
        assert _redis_command(redis.port, "AUTH", "guess").startswith(b"-WRONGPASS")
        assert _redis_session(redis.port, password, "PING") == b"+PONG\r\n"
        assert _redis_session(redis.port, password, "SET", "queued", "job-1") == b"+OK\r\n"
        redis.stop()
        assert not redis.is_running()

        assert redis.start() == url  # the same password after a restart
        assert _redis_session(redis.port, password, "GET", "queued") == b"$5\r\njob-1\r\n"
    finally:
        redis.stop()
    log = (tmp_path / "valkey" / "valkey.log").read_text()
    assert log and password not in log


# -- Caddy ------------------------------------------------------------------------------------


def _hello_config(port: int) -> dict[str, Any]:
    return {
        "apps": {
            "http": {
                "servers": {
                    "apps": {
                        "listen": [f"127.0.0.1:{port}"],
                        "automatic_https": {"disable": True},
                        "routes": [
                            {
                                "match": [{"host": ["x.localhost"]}],
                                "handle": [{"handler": "static_response", "body": "hi"}],
                            }
                        ],
                    }
                }
            }
        }
    }


def _get(port: int, host: str) -> httpx.Response:
    with _http() as client:
        return client.get(f"http://127.0.0.1:{port}/", headers={"Host": host})


def test_caddy_load_route_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "caddy"
    caddy = Caddy(data)
    try:
        admin = caddy.start()
        assert admin == f"unix://{data / 'admin.sock'}"
        assert caddy.is_running()
        # Only its owner can reach the admin API: no TCP port, a private socket.
        assert (data / "admin.sock").stat().st_mode & 0o077 == 0
        assert data.stat().st_mode & 0o077 == 0

        port = free_port()
        config = caddy.full_config(_hello_config(port))
        # One connection per request: Caddy replaces its admin server on every load, so a
        # kept-alive connection from before the load is reset.
        with admin_client(admin, timeout=10) as client:
            loaded = client.post(f"{admin_base(admin)}/load", json=config)
            assert loaded.status_code == 200, loaded.text
        with admin_client(admin, timeout=10) as client:
            # The admin endpoint stayed where it was: the merged config carries it.
            listen = client.get(f"{admin_base(admin)}/config/admin/listen").json()
        assert listen == f"unix/{data / 'admin.sock'}"
        assert _get(port, "x.localhost").text == "hi"
        assert _get(port, "other.localhost").text == ""

        caddy.stop()
        assert not caddy.is_running()
        with pytest.raises(httpx.ConnectError):
            _get(port, "x.localhost")

        admin = caddy.start(initial_config=_hello_config(port))
        assert _get(port, "x.localhost").text == "hi"
        with admin_client(admin, timeout=10) as client:
            persist = client.get(f"{admin_base(admin)}/config/admin/config/persist")
            assert persist.json() is False
    finally:
        caddy.stop()

    # Caddy kept its state under data_dir and logged there.
    assert (data / "caddy.log").stat().st_size > 0
    assert not (data / "xdg-config" / "caddy" / "autosave.json").exists()


def test_caddy_load_method_survives_restart(tmp_path: Path) -> None:
    caddy = Caddy(tmp_path / "caddy")
    port = free_port()
    try:
        caddy.start()
        caddy.load(_hello_config(port))
        assert _get(port, "x.localhost").text == "hi"
        caddy.stop()
        caddy.start()  # no initial_config: the last loaded config comes back
        assert _get(port, "x.localhost").text == "hi"
        with pytest.raises(EmbeddedServiceError, match="rejected"):
            caddy.load({"apps": {"http": {"servers": {"bad": {"listen": ["nonsense:::"]}}}}})
        assert _get(port, "x.localhost").text == "hi"
    finally:
        caddy.stop()


def test_caddy_bad_boot_config_reports_log(tmp_path: Path) -> None:
    caddy = Caddy(tmp_path / "caddy")
    port = free_port()
    try:
        caddy.start(initial_config=_hello_config(port))
        caddy.stop()
        refused = r"(?s)exited during startup.*unknown module"
        with pytest.raises(EmbeddedServiceError, match=refused):
            caddy.start(initial_config={"apps": {"nope": {}}})
        assert not caddy.is_running()
        # The refused config did not replace the last good one.
        caddy.start()
        assert _get(port, "x.localhost").text == "hi"
    finally:
        caddy.stop()


def test_valkey_whose_port_was_taken_between_the_look_and_its_bind_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two platforms (or test workers) starting at once look for the same first free port;
    the one whose Valkey binds second must not fail its start."""
    from app.server.embedded import _redis

    with socket.create_server(("127.0.0.1", 0)) as taken:  # the other one's, bound first
        busy = taken.getsockname()[1]
        looks: list[frozenset[int]] = []
        real = _redis._first_free_port

        def first_free(excluding: set[int] | frozenset[int] = frozenset()) -> int:
            looks.append(frozenset(excluding))
            return busy if not excluding else real(excluding)

        monkeypatch.setattr(_redis, "_first_free_port", first_free)
        redis = EmbeddedRedis(tmp_path / "valkey")
        try:
            redis.start()
            assert redis.port != busy and redis.is_running()
            assert looks == [frozenset(), frozenset({busy})]
        finally:
            redis.stop()


def _rss_file_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError(f"no RssFile for {pid}")


def test_caddys_cold_start_pages_are_reclaimed_and_it_still_serves(tmp_path: Path) -> None:
    """The router's binary pages that only its start touched are given back (issue 22), and
    what it needs comes back: it still serves, and loads a new config.

    Caddy runs from a copy of its binary of its own: the kernel reclaims no page another
    process maps, and other tests' routers run the shipped one beside this test."""
    executable = tmp_path / "caddy-bin"
    executable.write_bytes(find_caddy().read_bytes())
    executable.chmod(0o700)
    caddy = Caddy(tmp_path / "caddy", executable=executable)
    port = free_port()
    try:
        caddy.start(initial_config=_hello_config(port))
        pid = caddy.pid()
        assert pid is not None
        assert _get(port, "x.localhost").text == "hi"
        before = _rss_file_kib(pid)
        assert reclaim_file_pages(pid) > 0
        after = _rss_file_kib(pid)
        assert before - after > 10 * 1024, f"file pages resident: {before} -> {after} KiB"
        assert _get(port, "x.localhost").text == "hi"
        caddy.load(_hello_config(port))
        assert _get(port, "x.localhost").text == "hi"
    finally:
        caddy.stop()
