"""The idle rules end to end, with days as seconds: an unused deployment's owners get a GitHub
issue after "7 days", a request through the router closes it, "28 days" unused delete it as
DELETE /api/deployments/{id} does (database dropped, route 404), and `keep` exempts one. The
defaults themselves, on days of DAY_SECONDS."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.apps import slow_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

DAY_SECONDS = 1.25
"""A "day" of the idle rules: the notice ~10 s after the last use, the deletion ~35 s after it.
Longer than the usage tick, which runs every second here (a day / 8, but the worker's cron
counts whole seconds: jobs/worker.py `usage_tick_seconds`), so every day is looked at. The 21
days from notice to deletion (26 s) leave the metrics sampler's 10 s step ample time to see the
request that closes the notice, and the notice stays closed ~9 s after it is seen (7 days), for
the test to see it closed."""
NOTICE_DAYS = 7
DELETE_DAYS = 28


@pytest.fixture(scope="module")
def idle_platform(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    running = start_platform(
        tmp_path_factory.mktemp("idle-platform"),
        github,
        health_timeout_seconds="30",
        idle_day_seconds=str(DAY_SECONDS),
        idle_notice_days=str(NOTICE_DAYS),
        idle_delete_days=str(DELETE_DAYS),
    )
    yield running
    running.stop_and_clean()


def deploy(platform: RunningPlatform, github: FakeGitHub, path: Path) -> tuple[dict[str, Any], str]:
    repo, repository = connect_repository(platform, github, path, slow_app("one"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    return deployment, str(repository["full_name"])


def issues(github: FakeGitHub, full_name: str) -> list[dict[str, Any]]:
    return list(github.issues(full_name))


def view(platform: RunningPlatform, deployment_id: str) -> dict[str, Any]:
    return dict(platform.api(f"/api/deployments/{deployment_id}"))


def database_name(platform: RunningPlatform, deployment_id: str) -> str:
    with sqlite3.connect(platform.data_dir / "slipway.db") as control_plane:
        [name] = control_plane.execute(
            "SELECT name FROM databases WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
    return str(name)


def database_exists(platform: RunningPlatform, name: str) -> bool:
    with psycopg.connect(platform.postgres_admin_url()) as db, db.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cursor.fetchone() is not None


def test_unused_is_noticed_a_request_closes_the_notice_then_deleted_and_keep_exempts(
    idle_platform: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = idle_platform
    kept, kept_repo = deploy(platform, github, tmp_path / "kept")
    patched = platform.call("PATCH", f"/api/deployments/{kept['id']}", json={"keep": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["idle"]["keep"] is True
    assert patched.json()["idle"]["delete_at"] is None
    idle, idle_repo = deploy(platform, github, tmp_path / "idle")
    shown = view(platform, idle["id"])["idle"]  # the API shows when
    assert shown["notice_at"] is not None and shown["delete_at"] is not None

    [notice] = wait_for(
        f"the notice issue after {NOTICE_DAYS} unused days",
        lambda: [i for i in issues(github, idle_repo) if i["state"] == "open"] or None,
        60,
    )
    assert idle["slug"] in notice["title"] and "deleted on" in notice["body"]
    # The platform stores the issue's number once GitHub has answered: the issue shows first.
    wait_for(
        "the notice issue's number on the deployment",
        lambda: view(platform, idle["id"])["idle"]["notice_issue"] == notice["number"] or None,
        30,
    )

    assert platform.request(idle["slug"]).status_code == 200  # a use
    wait_for(  # seen at the metrics sampler's next step (10 s), then the next usage tick
        "the notice closed by a request through the router",
        lambda: issues(github, idle_repo)[0]["state"] == "closed",
        30,
    )
    assert view(platform, idle["id"])["status"] == "active"

    idle_database, kept_database = (
        database_name(platform, idle["id"]),
        database_name(platform, kept["id"]),
    )
    assert database_exists(platform, idle_database)
    wait_for(
        f"the unused deployment deleted after {DELETE_DAYS} days",
        lambda: view(platform, idle["id"])["status"] == "deleted",
        150,
    )
    wait_for("its database dropped", lambda: not database_exists(platform, idle_database), 30)
    assert database_exists(platform, kept_database)
    assert platform.request(idle["slug"]).status_code == 404
    [issue] = issues(github, idle_repo)  # one issue, reopened, then closed for the deletion
    assert issue["state"] == "closed" and "deleted" in issue["title"]

    # The kept one was unused all along: no notice, still served.
    assert issues(github, kept_repo) == []
    assert view(platform, kept["id"])["status"] == "active"
    assert platform.request(kept["slug"]).status_code == 200
    github.assert_no_errors()
