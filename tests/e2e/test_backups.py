"""A deployment's database: backed up by the worker on a schedule (shortened here to seconds),
dumped and restored with the real CLI through the API, and kept as a last backup for the
retention period when the deployment is deleted.

A platform of its own: its BACKUP_SCHEDULE (10 s) and BACKUP_KEEP (3) would have the shared
platform dump every production deployment of the tier all the time.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.adapters.pg_tools import find_bin_dir
from tests.e2e.conftest import HEALTH_TIMEOUT_SECONDS
from tests.e2e.test_cli import Cli
from tests.support.apps import notes_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

SCHEDULE_SECONDS = 10
KEEP = 3
RETENTION_SECONDS = SCHEDULE_SECONDS * KEEP
"""How long a deleted deployment's last backup is kept here."""


@pytest.fixture(scope="module")
def backing_up(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    running = start_platform(
        tmp_path_factory.mktemp("backing-up"),
        github,
        health_timeout_seconds=HEALTH_TIMEOUT_SECONDS,
        backup_schedule=f"{SCHEDULE_SECONDS}s",
        backup_keep=str(KEEP),
    )
    yield running
    running.stop_and_clean()


def test_backups_on_schedule_a_dump_restores_deleted_rows_and_delete_keeps_the_last_one(
    backing_up: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = backing_up
    cli = Cli(tmp_path)
    cli("auth", "login", platform.api_url, "--with-token", stdin=platform.admin_token + "\n")
    repo, repository = connect_repository(
        platform, github, tmp_path / "notes-kept", notes_app("kept-1")
    )
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", platform.logs(revision["id"])
    assert deployment["type"] == "production"
    slug, deployment_id = deployment["slug"], deployment["id"]
    for text in ("first", "second", "third"):
        assert platform.request(slug, f"/notes?text={text}", method="POST").status_code == 201

    # The worker's schedule: a backup appears by itself, private, and the app kept answering.
    def done_backups() -> list[dict[str, Any]] | None:
        backups = platform.api(f"/api/deployments/{deployment_id}/backups")
        return [b for b in backups if b["state"] == "done"] or None

    scheduled = wait_for("a scheduled backup", done_backups, timeout=SCHEDULE_SECONDS * 4)[0]
    assert scheduled["reason"] == "scheduled" and scheduled["size_bytes"] > 0
    shown = platform.api(f"/api/deployments/{deployment_id}")["last_backup"]
    assert shown["state"] in ("done", "running")
    folder = platform.data_dir / "backups" / deployment_id
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    stored = folder / f"{scheduled['id']}.dump"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_bytes().startswith(b"PGDMP")
    assert platform.request(slug, "/notes").json() == ["first", "second", "third"]

    # A token that may only read gets no dump: the data is all the deployment has.
    reader_token = cli("tokens", "create", "dbs-reader", "--read-only").stdout.strip()
    (tmp_path / "reader").mkdir()
    reader = Cli(tmp_path / "reader")
    reader.env |= {"SLIPWAY_API_URL": platform.api_url, "SLIPWAY_TOKEN": reader_token}
    refused = reader("db", "dump", slug, "-o", str(tmp_path / "stolen.dump"), ok=False)
    assert refused.returncode == 4 and "read-only" in refused.stderr
    assert not (tmp_path / "stolen.dump").exists()

    # By hand: a dump through the API, the rows deleted, the dump restored, the rows back.
    dump = tmp_path / "web.dump"
    cli("db", "dump", slug, "-o", str(dump))
    assert dump.read_bytes().startswith(b"PGDMP")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    with psycopg.connect(platform.database_uri(deployment_id), autocommit=True) as conn:
        conn.execute("DELETE FROM notes WHERE text <> 'second'")
    assert platform.request(slug, "/notes").json() == ["second"]

    mistyped = cli("db", "restore", slug, str(dump), stdin="not-it\n", ok=False)
    assert mistyped.returncode == 1 and "did not match" in mistyped.stderr
    assert platform.request(slug, "/notes").json() == ["second"]

    cli("db", "restore", slug, str(dump), "--confirm", slug)
    assert platform.request(slug, "/notes").json() == ["first", "second", "third"]
    # The app goes on writing to what was restored, as its own role.
    assert platform.request(slug, "/notes?text=fourth", method="POST").status_code == 201

    # Delete: one more backup, the database dropped, that backup kept for the retention period.
    deleted = cli("deployments", "delete", slug, stdin=slug + "\n").stdout
    assert "backed up once more" in deleted and "kept until" in deleted

    def final_backup() -> dict[str, Any] | None:
        backups = platform.api(f"/api/deployments/{deployment_id}/backups")
        done = [b for b in backups if b["reason"] == "final" and b["state"] == "done"]
        return done[0] if done else None

    kept = wait_for("the deleted deployment's last backup", final_backup, timeout=60)
    wait_for(
        "the deletion to finish",
        lambda: platform.api(f"/api/deployments/{deployment_id}")["status"] == "deleted",
        timeout=60,
    )
    with psycopg.connect(platform.postgres_admin_url()) as admin:
        assert not admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (f"slipway_{deployment_id}",)
        ).fetchone()
    taken = tmp_path / "last.dump"
    cli("db", "dump", deployment_id, "--backup", kept["id"], "-o", str(taken))
    rows = subprocess.run(
        [str(find_bin_dir() / "pg_restore"), "--data-only", "--table=notes", "--file=-", taken],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(text in rows for text in ("first", "second", "third", "fourth"))
    # A deleted deployment keeps only that one (the job prunes the others at its next pass).
    wait_for(
        "only the last backup to be left",
        lambda: (
            [b["id"] for b in platform.api(f"/api/deployments/{deployment_id}/backups")]
            == [kept["id"]]
        ),
        timeout=SCHEDULE_SECONDS * 2,
        every=0.5,
    )

    # Once the retention period is over, the worker's job prunes it.
    wait_for(
        "the last backup to be pruned",
        lambda: platform.api(f"/api/deployments/{deployment_id}/backups") == [],
        timeout=RETENTION_SECONDS * 3,
        every=1,
    )
    assert not folder.exists() or not any(folder.iterdir())
