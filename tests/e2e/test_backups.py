"""A deployment's database dumped and restored with the real CLI through the API, and kept as
a backup when the deployment is deleted."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import psycopg
import pytest

from app.adapters.pg_tools import find_bin_dir
from tests.e2e.test_cli import Cli
from tests.support.apps import notes_app
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform, wait_for


@pytest.fixture
def cli(tmp_path: Path, platform: RunningPlatform) -> Cli:
    runner = Cli(tmp_path)
    runner("auth", "login", platform.api_url, "--with-token", stdin=platform.admin_token + "\n")
    return runner


def test_a_dump_restores_deleted_rows_and_a_deleted_deployment_keeps_its_last_backup(
    cli: Cli, platform: RunningPlatform, make_repository: RepoFactory, tmp_path: Path
) -> None:
    repo, repository = make_repository("dbs", notes_app("dbs-1"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", platform.logs(revision["id"])
    slug, deployment_id = deployment["slug"], deployment["id"]
    for text in ("first", "second", "third"):
        assert platform.request(slug, f"/notes?text={text}", method="POST").status_code == 201

    # A token that may only read gets no dump: the data is all the deployment has.
    reader_token = cli("tokens", "create", "dbs-reader", "--read-only").stdout.strip()
    reader = Cli(tmp_path / "reader")
    (tmp_path / "reader").mkdir()
    reader.env |= {"SLIPWAY_API_URL": platform.api_url, "SLIPWAY_TOKEN": reader_token}
    refused = reader("db", "dump", slug, "-o", str(tmp_path / "stolen.dump"), ok=False)
    assert refused.returncode == 4 and "read-only" in refused.stderr
    assert not (tmp_path / "stolen.dump").exists()

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

    deleted = cli("deployments", "delete", slug, stdin=slug + "\n").stdout
    assert "backed up once more" in deleted and "kept until" in deleted

    def final_backup() -> dict[str, str] | None:
        backups = platform.api(f"/api/deployments/{deployment_id}/backups")
        done = [b for b in backups if b["reason"] == "final" and b["state"] == "done"]
        return done[0] if done else None

    kept = wait_for("the deleted deployment's last backup", final_backup, timeout=120)
    wait_for(
        "the deletion to finish",
        lambda: platform.api(f"/api/deployments/{deployment_id}")["status"] == "deleted",
        timeout=120,
    )
    assert platform.api(f"/api/deployments/{deployment_id}")["last_backup"]["id"] == kept["id"]
    with psycopg.connect(platform.postgres_admin_url()) as admin:
        assert not admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (f"slipway_{deployment_id}",)
        ).fetchone()
    listed = cli("db", "backups", deployment_id).stdout
    assert kept["id"] in listed and "final" in listed

    taken = tmp_path / "last.dump"
    cli("db", "dump", deployment_id, "--backup", kept["id"], "-o", str(taken))
    rows = subprocess.run(
        [str(find_bin_dir() / "pg_restore"), "--data-only", "--table=notes", "--file=-", taken],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(text in rows for text in ("first", "second", "third", "fourth"))
