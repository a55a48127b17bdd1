"""When backups are due (SLIPWAY_BACKUP_SCHEDULE), and how often the worker looks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import event

from app.adapters.pg_tools import PostgresTools
from app.backups.schedule import Schedule
from app.backups.service import BackupPolicy, DatabaseBackups, PassReport
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.errors import DatabaseError
from app.kernel.models import Database, Deployment, Installation, Repository
from app.kernel.settings import Settings, SettingsError, load_settings
from app.server.embedded import free_port
from app.server.service import ServicePlan, render_unit
from jobs.worker import backup_seconds
from manifests.containers import DeploymentType
from tests.support.database_api import database_api

T = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_daily_time_is_due_once_it_passed_since_the_last_backup() -> None:
    daily = Schedule.parse("03:00")
    assert daily.last_moment(T) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert daily.due(since=datetime(2026, 12, 6, 3, 0, 5, tzinfo=UTC), now=T)
    assert not daily.due(since=datetime(2026, 12, 7, 3, 0, 5, tzinfo=UTC), now=T)
    # Before today's time, yesterday's is the one that counts.
    early = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    assert not daily.due(since=datetime(2026, 12, 6, 3, 1, tzinfo=UTC), now=early)
    assert daily.retention(7) == timedelta(days=7)


def test_an_interval_counts_from_the_last_backup() -> None:
    every = Schedule.parse("15m")
    assert not every.due(since=T, now=T + timedelta(minutes=14))
    assert every.due(since=T, now=T + timedelta(minutes=15))
    assert every.retention(4) == timedelta(hours=1)
    assert Schedule.parse("2s").tick_seconds() == 2.0
    assert Schedule.parse("6h").tick_seconds() == 60.0


def test_off_is_never_due() -> None:
    off = Schedule.parse("off")
    assert not off.enabled and not off.due(since=T - timedelta(days=30), now=T)


@pytest.mark.parametrize("text", ["3am", "25:00", "0s", "-5m", "daily", "10"])
def test_a_schedule_that_is_none_of_the_forms_is_refused_naming_the_setting(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="backup schedule"):
        Schedule.parse(text)
    monkeypatch.setenv("SLIPWAY_BACKUP_SCHEDULE", text)
    with pytest.raises(SettingsError, match="SLIPWAY_BACKUP_SCHEDULE: must be HH:MM"):
        load_settings(_env_file=None)


def test_the_worker_looks_for_due_backups_as_often_as_a_short_schedule_asks() -> None:
    assert backup_seconds(Settings(_env_file=None, backup_schedule="2s")) == set(range(0, 60, 2))
    assert backup_seconds(Settings(_env_file=None)) == {30}  # daily: once a minute


def test_a_path_with_systemd_specials_is_escaped_in_the_unit(tmp_path: Path) -> None:
    odd = tmp_path / 'a "b" $HOME 100%'
    unit = render_unit(
        ServicePlan(
            python=odd / "python", working_dir=odd, env_file=odd / "env", data_dir=odd / "data"
        )
    )
    assert f'ExecStart="{tmp_path}/a \\"b\\" $$HOME 100%%/python" -m app.cli up' in unit
    assert f'EnvironmentFile={tmp_path}/a "b" $HOME 100%%/env' in unit
    assert "User=" not in unit


def test_the_next_moment_nothing_backed_up_now_can_be_due() -> None:
    assert Schedule.parse("03:00").next_moment(T) == datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
    early = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    assert Schedule.parse("03:00").next_moment(early) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert Schedule.parse("15m").next_moment(T) == T + timedelta(minutes=15)


class _FailingDumps:
    def dump(self, login: object, destination: Path, *, timeout: float) -> int:
        raise DatabaseError("no cluster in the unit tier")


def _production_deployment(
    sessions: SessionFactory,
    secrets: SecretBox,
    password: str,
    *,
    created_at: datetime,
    provisioned_at: datetime,
) -> str:
    """A production deployment of octo/web with its database provisioned; returns its id."""
    with sessions() as session:
        session.add(Installation(id=1, account_login="octo"))
        session.add(Repository(id=1, installation_id=1, full_name="octo/web"))
        session.commit()
        deployment = Deployment(
            repository_id=1,
            slug="web",
            environment="web",
            branch="main",
            type=DeploymentType.production,
            created_at=created_at,
            updated_at=created_at,
        )
        session.add(deployment)
        session.flush()
        deployment_id = deployment.id
        session.add(
            Database(
                deployment_id=deployment_id,
                name="db_web",
                role="db_web",
                password_encrypted=secrets.encrypt(password),
                provisioned_at=provisioned_at,
            )
        )
        session.commit()
    return deployment_id


def test_the_minutely_look_for_due_backups_runs_no_query_until_one_can_be_due(
    tmp_path: Path,
) -> None:
    """Issue 22: with a daily schedule the worker's look every minute read every production
    deployment's newest backup (100 queries a minute at 100 deployments) to find nothing."""
    url = f"sqlite:///{tmp_path / 'slipway.db'}"
    migrate(url, tmp_path)
    engine = make_engine(url)
    sessions = SessionFactory(engine)
    secrets = SecretBox("k" * 32)
    now = [datetime(2026, 12, 7, 2, 58, tzinfo=UTC)]
    _production_deployment(
        sessions, secrets, "pw", created_at=now[0], provisioned_at=now[0] - timedelta(days=2)
    )
    backups = DatabaseBackups(
        sessions=sessions,
        secrets=secrets,
        dumps=_FailingDumps(),  # type: ignore[arg-type]
        backups_dir=tmp_path / "backups",
        policy=BackupPolicy(schedule=Schedule.parse("03:00")),
        clock=lambda: now[0],
    )
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    first = backups.run_schedule()  # yesterday's 03:00 came after the database: due
    assert len(first.failed) == 1
    now[0] += timedelta(minutes=1)
    backups.run_schedule()  # a failed backup waits for the next moment: nothing due
    statements.clear()
    for _ in range(2):
        now[0] += timedelta(seconds=25)
        assert backups.run_schedule() == PassReport()
    assert statements == []  # 02:59:25 and 02:59:50: before 03:00, not a query

    now[0] = datetime(2026, 12, 7, 3, 0, 1, tzinfo=UTC)
    assert len(backups.run_schedule().failed) == 1  # at the moment, looked at and tried again
    assert statements


def test_a_failed_scheduled_backup_shows_in_the_deployments_api_object_with_its_reason(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    """Issue 23: a failed backup is reported in the deployment's API object. pg_dump itself
    runs (the cluster it is pointed at is not there): its reason is what the user reads, and
    neither the database's password nor the cluster's is in it."""
    secrets = SecretBox("k" * 32)
    deployment_id = _production_deployment(
        sessions,
        secrets,
        "db-password-" + "s" * 16,
        created_at=T - timedelta(days=2),
        provisioned_at=T - timedelta(days=2),
    )
    backups = DatabaseBackups(
        sessions=sessions,
        secrets=secrets,
        dumps=PostgresTools(f"postgresql://slipway_admin:admin-{'p' * 16}@127.0.0.1:{free_port()}"),
        backups_dir=tmp_path / "backups",
        policy=BackupPolicy(schedule=Schedule.parse("03:00")),
        clock=lambda: T,
    )
    assert len(backups.run_schedule().failed) == 1

    app, token = database_api(
        Settings(_env_file=None, data_dir=tmp_path / "data"), sessions, backups, lambda: T
    )
    with TestClient(app=app) as client:
        answer = client.get(
            f"/api/deployments/{deployment_id}", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    shown = answer.json()["last_backup"]
    assert shown["state"] == "failed" and shown["reason"] == "scheduled"
    assert shown["error"].startswith("pg_dump failed: ") and "Connection refused" in shown["error"]
    assert "s" * 16 not in answer.text and "p" * 16 not in answer.text
