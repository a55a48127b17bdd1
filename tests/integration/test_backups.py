"""Backups of deployment databases on a real cluster: pg_dump and pg_restore as the platform
runs them, signed in as each deployment's own role."""

from __future__ import annotations

import logging
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from app.adapters.pg_tools import PostgresTools, find_bin_dir
from app.adapters.postgres import PostgresProvisioner
from app.backups.schedule import Schedule
from app.backups.service import BackupPolicy, DatabaseBackups
from app.deployments.teardown import Teardown
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.errors import InvalidRequest
from app.kernel.models import (
    BackupState,
    Database,
    Deployment,
    Installation,
    Repository,
)
from app.kernel.names import database_identifier
from app.server.embedded import EmbeddedPostgres
from manifests.containers import DeploymentType

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
