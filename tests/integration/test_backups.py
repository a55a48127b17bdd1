"""Backups of deployment databases on a real cluster: pg_dump and pg_restore as the platform
runs them, signed in as each deployment's own role."""

from __future__ import annotations

import logging
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest

from app.adapters.pg_tools import PostgresTools, find_bin_dir
from app.adapters.postgres import PostgresProvisioner
from app.backups.schedule import Schedule
from app.backups.service import BackupPolicy, DatabaseBackups
from app.cli.client import TOKEN_VARIABLE, URL_VARIABLE
from app.deployments.teardown import Teardown
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.errors import ConflictError, InvalidRequest
from app.kernel.models import (
    BackupState,
    Database,
    Deployment,
    Installation,
    Repository,
)
from app.kernel.names import database_identifier
from app.kernel.settings import Settings
from app.server.embedded import EmbeddedPostgres
from manifests.containers import DeploymentType
from tests.support.api_server import serve_api
from tests.support.database_api import database_api
from tests.support.load import start_load
from tests.support.platform import wait_for
from tests.unit.cli_harness import isolated_cli

pytestmark = pytest.mark.timeout(180)

SECRETS = SecretBox("k" * 32)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("backups") / "postgres", ["127.0.0.1"])
    server.start()
    yield server
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    sessions: SessionFactory
    backups: DatabaseBackups
    provisioner: PostgresProvisioner
    cluster: EmbeddedPostgres
    clock: Clock
    data_dir: Path

    def deployment(self, slug: str, password: str = "pw-" + "x" * 20) -> str:
        """A production deployment with a provisioned database, as its first revision left it."""
        now = self.clock()
        with self.sessions() as session:
            if session.get(Installation, 1) is None:
                session.add(Installation(id=1, account_login="octo"))
                session.add(Repository(id=1, installation_id=1, full_name="octo/web"))
                session.commit()
            deployment = Deployment(
                repository_id=1,
                slug=slug,
                environment=slug,
                branch="main",
                type=DeploymentType.production,
                created_at=now,
                updated_at=now,
            )
            session.add(deployment)
            session.flush()
            name = database_identifier(deployment.id)
            session.add(
                Database(
                    deployment_id=deployment.id,
                    name=name,
                    role=name,
                    password_encrypted=SECRETS.encrypt(password),
                    provisioned_at=now,
                )
            )
            session.commit()
            deployment_id = deployment.id
        self.provisioner.ensure(name, name, password, connection_limit=10)
        return deployment_id

    def sql(self, deployment_id: str, statement: str, *args: str) -> list[tuple[object, ...]]:
        """As the deployment's app runs it: its own role on its own database."""
        with self.sessions() as session:
            database = session.get(Database, deployment_id)
            assert database is not None
            password = SECRETS.decrypt(database.password_encrypted)
        url = (
            f"postgresql://{database.role}:{password}@127.0.0.1:{self.cluster.port}/{database.name}"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(statement, args or None)
            return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture
def world(tmp_path: Path, cluster: EmbeddedPostgres) -> World:
    url = f"sqlite:///{tmp_path / 'slipway.db'}"
    migrate(url, tmp_path)
    sessions = SessionFactory(make_engine(url))
    clock = Clock()
    backups = DatabaseBackups(
        sessions=sessions,
        secrets=SECRETS,
        dumps=PostgresTools(cluster.admin_url),
        backups_dir=tmp_path / "backups",
        policy=BackupPolicy(schedule=Schedule.parse("1s"), keep=2),
        clock=clock,
    )
    provisioner = PostgresProvisioner(cluster.admin_url, "127.0.0.1")
    return World(sessions, backups, provisioner, cluster, clock, tmp_path)


def _notes(world: World, deployment_id: str) -> list[str]:
    return [str(row[0]) for row in world.sql(deployment_id, "SELECT text FROM notes ORDER BY id")]


def test_a_dump_brings_back_the_rows_deleted_after_it(world: World, tmp_path: Path) -> None:
    web = world.deployment("web")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(web, "INSERT INTO notes (text) VALUES ('first'), ('second'), ('third')")
    dump = tmp_path / "web.dump"
    dump.write_bytes(b"".join(world.backups.stream(web)))
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format

    world.sql(web, "DELETE FROM notes WHERE text <> 'second'")
    world.sql(web, "CREATE TABLE later (id int)")
    assert _notes(world, web) == ["second"]

    with pytest.raises(InvalidRequest, match="'web'"):
        world.backups.upload_path(web, "not-web")
    upload = world.backups.upload_path(web, "web")
    upload.write_bytes(dump.read_bytes())
    world.backups.restore_upload(web, "web", upload)

    assert _notes(world, web) == ["first", "second", "third"]
    assert not upload.exists()
    # The app's role still owns what was restored: it writes on as before.
    world.sql(web, "INSERT INTO notes (text) VALUES ('fourth')")
    assert _notes(world, web)[-1] == "fourth"


def test_an_archive_that_needs_more_than_the_deployments_role_changes_nothing(
    world: World, cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    """An archive is the caller's data, and it holds SQL: restored as the deployment's role,
    what needs a superuser fails, and the single transaction leaves the rows as they were."""
    web = world.deployment("web2")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(web, "INSERT INTO notes (text) VALUES ('kept')")
    with psycopg.connect(cluster.admin_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE hostile")
    hostile = cluster.admin_url.rsplit("/", 1)[0] + "/hostile"
    with psycopg.connect(hostile, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
        conn.execute("INSERT INTO notes (text) VALUES ('planted')")
        conn.execute(
            "CREATE FUNCTION grab() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$"
        )
        conn.execute("CREATE EVENT TRIGGER grab ON ddl_command_start EXECUTE FUNCTION grab()")
    archive = tmp_path / "hostile.dump"
    subprocess.run(
        [str(find_bin_dir() / "pg_dump"), "--format=custom", f"--file={archive}", hostile],
        check=True,
    )

    upload = world.backups.upload_path(web, "web2")
    upload.write_bytes(archive.read_bytes())
    with pytest.raises(InvalidRequest, match="changed nothing"):
        world.backups.restore_upload(web, "web2", upload)
    assert _notes(world, web) == ["kept"]

    not_an_archive = world.backups.upload_path(web, "web2")
    not_an_archive.write_bytes(b"DROP TABLE notes;\n")
    with pytest.raises(InvalidRequest, match="not an archive"):
        world.backups.restore_upload(web, "web2", not_an_archive)
    assert _notes(world, web) == ["kept"]


def test_scheduled_backups_appear_private_are_restorable_by_id_and_the_oldest_go(
    world: World,
) -> None:
    web = world.deployment("web3")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(web, "INSERT INTO notes (text) VALUES ('one')")
    assert world.backups.due() == []  # the schedule (1 s) has not come round since it was made

    made = []
    for second in range(1, 4):
        world.clock.now += timedelta(seconds=1)
        report = world.backups.run_schedule()
        assert len(report.done) == 1 and report.failed == [], report
        made += report.done
        world.sql(web, "INSERT INTO notes (text) VALUES (%s)", f"after {second}")

    listed = world.backups.of(web)
    assert [b.id for b in listed] == made[::-1][:2]  # keep=2: the oldest went
    assert all(b.state is BackupState.done and b.size_bytes for b in listed)
    folder = world.data_dir / "backups" / web
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{b}.dump" for b in made[1:])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((world.data_dir / "backups").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())

    # The second backup was taken after 'after 1' was written, before 'after 2'.
    world.backups.restore_backup(web, made[1], "web3")
    assert _notes(world, web) == ["one", "after 1"]


def test_a_failed_backup_is_reported_and_tried_again_at_the_next_moment(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    web = world.deployment("web4")
    with world.sessions() as session:  # the stored password no longer signs in
        database = session.get(Database, web)
        assert database is not None
        database.password_encrypted = SECRETS.encrypt("wrong")
        session.add(database)
        session.commit()
    world.clock.now += timedelta(seconds=1)
    with caplog.at_level(logging.WARNING):
        report = world.backups.run_schedule()
    assert len(report.failed) == 1 and report.done == []
    [failed] = world.backups.of(web)
    assert failed.state is BackupState.failed and "password authentication failed" in (
        failed.error or ""
    )
    assert any(
        r.getMessage() == "backup failed" and getattr(r, "deployment_id", None) == web
        for r in caplog.records
    )
    assert "wrong" not in caplog.text
    assert world.backups.due() == []  # not again at once...
    world.clock.now += timedelta(seconds=1)
    assert world.backups.due() == [web]  # ...but at the next moment


def test_a_deleted_deployment_keeps_its_last_backup_for_the_retention_period(
    world: World,
) -> None:
    web = world.deployment("web5")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(web, "INSERT INTO notes (text) VALUES ('precious')")
    world.clock.now += timedelta(seconds=1)
    world.backups.run_schedule()
    world.sql(web, "INSERT INTO notes (text) VALUES ('written since')")
    world.clock.now += timedelta(minutes=5)
    with world.sessions() as session:
        deployment = session.get(Deployment, web)
        assert deployment is not None
        deployment.deleted_at = deployment.removed_at = world.clock()
        session.add(deployment)
        session.commit()

    teardown = Teardown(
        sessions=world.sessions,
        runtime=_NoRuntime(),  # type: ignore[arg-type]
        routes=_NoRoutes(),  # type: ignore[arg-type]
        databases=world.provisioner,
        reports=None,  # type: ignore[arg-type]
        builds_dir=world.data_dir / "builds",
        clock=world.clock,
        final_backup=world.backups.final,
    )
    teardown._drop_database(web)  # the teardown's step: a last backup, then the drop
    with psycopg.connect(world.cluster.admin_url) as admin:
        name = database_identifier(web)
        assert (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is None
        )

    world.backups.prune()
    [kept] = world.backups.of(web)
    assert kept.reason == "final" and kept.state is BackupState.done
    assert world.backups.path_of(kept).is_file()
    # What it holds: everything up to the deletion, restorable elsewhere.
    other = world.deployment("elsewhere")
    upload = world.backups.upload_path(other, "elsewhere")
    upload.write_bytes(world.backups.path_of(kept).read_bytes())
    world.backups.restore_upload(other, "elsewhere", upload)
    assert _notes(world, other) == ["precious", "written since"]

    world.clock.now += world.backups.policy.retention
    world.backups.prune()
    assert world.backups.of(web) == []
    assert not world.backups.path_of(kept).exists()


class _NoRuntime:
    pass


class _NoRoutes:
    pass


# -- the app's traffic while its database is dumped and restored ----------------------------
TRAFFIC_ROWS = 200_000
"""Enough rows (some 15 MB) that a restore lasts long enough for requests to meet it."""


class _NotesApp(ThreadingHTTPServer):
    """The deployment's app as tests/support/apps.py's notes app is: one connection per
    request, as its own role, one query on the table a restore replaces. It notes when each
    request began and ended, and how it ended."""

    daemon_threads = True

    def __init__(self, url: str) -> None:
        super().__init__(("127.0.0.1", 0), _NoteHandler)
        self.url = url
        self.lock = threading.Lock()
        self.answers: list[tuple[float, float, int]] = []


class _NoteHandler(BaseHTTPRequestHandler):
    server: _NotesApp

    def do_GET(self) -> None:
        began = time.monotonic()
        try:
            with psycopg.connect(self.server.url, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute("SELECT text FROM notes WHERE id = 500").fetchone()
            status, body = (200, str(row[0]).encode()) if row else (404, b"gone")
        except psycopg.Error as exc:
            status, body = 500, str(exc).encode()
        with self.server.lock:
            self.server.answers.append((began, time.monotonic(), status))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class _Window:
    """The requests that were being answered while one operation ran."""

    seconds: float
    statuses: dict[int, int]
    p99: float
    slowest: float

    @classmethod
    def of(cls, app: _NotesApp, start: float, end: float) -> _Window:
        with app.lock:
            met = [(b, e, s) for b, e, s in app.answers if b < end and e > start]
        latencies = sorted(e - b for b, e, _ in met)
        statuses: dict[int, int] = {}
        for _, _, status in met:
            statuses[status] = statuses.get(status, 0) + 1
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if met else 0.0
        return cls(end - start, statuses, p99, latencies[-1] if met else 0.0)

    def __str__(self) -> str:
        return (
            f"{self.seconds:.2f} s, answers {self.statuses}, p99 {self.p99 * 1000:.0f} ms, "
            f"slowest {self.slowest * 1000:.0f} ms"
        )


def test_the_apps_requests_are_all_answered_while_its_database_is_dumped_and_restored(
    world: World,
) -> None:
    """Issue 23: a backup or restore never blocks the deployment's traffic. A dump takes only
    ACCESS SHARE locks (the app reads and writes on); a restore is one transaction that drops
    and recreates each table, so the app's queries on them wait until it commits, then see
    the restored rows. Measured under load: every request answered 200, those that met the
    restore answered late by at most its length (docs/operations.md has the numbers)."""
    web = world.deployment("busy")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(
        web,
        "INSERT INTO notes (text) SELECT 'note number ' || n || repeat('.', 40) "
        "FROM generate_series(1, %s::int) AS n",
        str(TRAFFIC_ROWS),
    )
    with world.sessions() as session:
        database = session.get(Database, web)
        assert database is not None
        password = SECRETS.decrypt(database.password_encrypted)
    url = f"postgresql://{database.role}:{password}@127.0.0.1:{world.cluster.port}/{database.name}"
    app = _NotesApp(url)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        # Bounded (hey stops by itself after 60 s) and stopped as soon as the restore is done.
        load = start_load(app.server_address[1], "busy.example", seconds=60, concurrency=8)
        wait_for("the app to answer under load", lambda: len(app.answers) >= 50)
        steady = time.monotonic()
        wait_for("a second of steady load", lambda: time.monotonic() - steady >= 1.0)
        before = _Window.of(app, steady, time.monotonic())

        start = time.monotonic()
        backup = world.backups.back_up(web, "scheduled")
        dumped = _Window.of(app, start, time.monotonic())
        assert backup.state is BackupState.done, backup.error

        world.sql(web, "DELETE FROM notes WHERE id > 1000")
        start = time.monotonic()
        world.backups.restore_backup(web, backup.id, "busy")
        restored = _Window.of(app, start, time.monotonic())
        load.stop()
        assert world.sql(web, "SELECT count(*) FROM notes") == [(TRAFFIC_ROWS,)]
    finally:
        app.shutdown()
        app.server_close()

    print(f"\nbefore:  {before}\ndump:    {dumped}\nrestore: {restored}\nhey: {load.summary()}")
    print(f"hey latency: {load.latency}")
    assert load.failed == 0 and load.requests > 0, load.summary()
    for window in (dumped, restored):
        assert window.statuses and set(window.statuses) == {200}, window
    # What the restore makes wait is its own length, no more (and the dump makes nothing wait).
    assert restored.slowest <= restored.seconds + 1.0, restored


def test_a_restore_that_waits_for_a_table_the_app_holds_gives_up_and_changes_nothing(
    world: World,
) -> None:
    """While the restore waits for a table's lock, the app's queries on that table queue
    behind it: an app transaction left open would stop the app's traffic for as long as it
    stays open. The restore waits for any one table at most its lock wait, then changes
    nothing, and the app's queued queries go on."""
    web = world.deployment("holding")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(web, "INSERT INTO notes (text) VALUES ('kept')")
    backup = world.backups.back_up(web, "scheduled")
    world.sql(web, "INSERT INTO notes (text) VALUES ('written since')")
    impatient = DatabaseBackups(
        sessions=world.sessions,
        secrets=SECRETS,
        dumps=PostgresTools(world.cluster.admin_url, restore_lock_wait_seconds=1.0),
        backups_dir=world.data_dir / "backups",
        policy=world.backups.policy,
        clock=world.clock,
    )
    with world.sessions() as session:
        database = session.get(Database, web)
        assert database is not None
    url = (
        f"postgresql://{database.role}:{SECRETS.decrypt(database.password_encrypted)}"
        f"@127.0.0.1:{world.cluster.port}/{database.name}"
    )
    queued: list[tuple[float, object]] = []

    def another_request() -> None:
        """One more of the app's requests, sent once the restore waits: it queues behind."""
        with psycopg.connect(url, autocommit=True) as conn:
            wait_for(
                "the restore to wait for the app's lock",
                lambda: conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE "
                    "'slipway-restore-%' AND wait_event_type = 'Lock'"
                ).fetchone(),
                timeout=30,
            )
            began = time.monotonic()
            count = conn.execute("SELECT count(*) FROM notes").fetchone()
            queued.append((time.monotonic() - began, count))

    with psycopg.connect(url) as holder:  # a transaction the app left open on notes
        holder.execute("SELECT count(*) FROM notes")
        request = threading.Thread(target=another_request)
        request.start()
        start = time.monotonic()
        with pytest.raises(ConflictError, match=r"held a table it replaces for more than 1 s"):
            impatient.restore_backup(web, backup.id, "holding")
        assert time.monotonic() - start < 15
        request.join(timeout=30)
        holder.rollback()
    [(waited, count)] = queued
    assert count == (2,) and waited < 10  # answered once the restore gave up
    assert _notes(world, web) == ["kept", "written since"]
    # Once the app let go, the same restore goes through.
    impatient.restore_backup(web, backup.id, "holding")
    assert _notes(world, web) == ["kept"]


def test_a_stored_backup_is_restored_by_id_through_the_api_and_the_cli(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`slipway db backups` lists what the schedule stored; `POST .../backups/{id}/restore`
    restores one only when `confirm` names the deployment (a wrong name changes nothing);
    `slipway db restore --backup ID` does the same from the command line."""
    web = world.deployment("byid")
    world.sql(web, "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)")
    world.sql(web, "INSERT INTO notes (text) VALUES ('one')")
    world.clock.now += timedelta(seconds=1)
    [backup_id] = world.backups.run_schedule().done
    world.sql(web, "INSERT INTO notes (text) VALUES ('two')")

    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    app, token = database_api(settings, world.sessions, world.backups, world.clock)
    cli = isolated_cli(tmp_path, monkeypatch, capsys)
    with serve_api(app) as base:
        monkeypatch.setenv(URL_VARIABLE, base)
        monkeypatch.setenv(TOKEN_VARIABLE, token)
        listed = cli("db", "backups", "byid")
        assert listed.code == 0, listed
        [row] = [line for line in listed.out.splitlines() if backup_id in line]
        assert "scheduled" in row and "done" in row

        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        path = f"/api/deployments/{web}/backups/{backup_id}/restore"
        wrong = client.post(path, json={"confirm": "not-byid"})
        assert wrong.status_code == 422 and "'byid'" in wrong.json()["detail"]
        assert _notes(world, web) == ["one", "two"]
        missing = client.post(
            f"/api/deployments/{web}/backups/bak_nothing/restore", json={"confirm": "byid"}
        )
        assert missing.status_code == 404
        done = client.post(path, json={"confirm": "byid"})
        assert done.status_code == 200, done.text
        assert done.json()["restored_from"] == backup_id
        assert _notes(world, web) == ["one"]

        world.sql(web, "INSERT INTO notes (text) VALUES ('three')")
        mistyped = cli("db", "restore", "byid", "--backup", backup_id, stdin="byi\n")
        assert mistyped.code == 1 and "did not match" in mistyped.err
        assert _notes(world, web) == ["one", "three"]
        restored = cli("db", "restore", "byid", "--backup", backup_id, "--confirm", "byid")
        assert restored.code == 0, restored
        assert restored.out.strip() == f"byid: the database now holds what backup {backup_id} held"
        assert _notes(world, web) == ["one"]
