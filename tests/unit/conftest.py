"""Shared builders for the unit tier: a migrated SQLite control plane, an App key, git repos.

Nothing here reaches beyond the test's own tmp_path and 127.0.0.1.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.github import rest
from app.kernel.db import SessionFactory, make_engine, migrate
from tests.support.browser import browser as browser  # a fixture: test_dashboard_browser's
from tests.support.fake_github import FakeGitHub
from tests.support.keys import new_private_key_pem
from tests.unit.cli_harness import Cli, isolated_cli
from tests.unit.slipway_api import FakeApi, running_api
from tests.unit.world import Platform, world_platform

GIT_IDENTITY = ["-c", "user.name=Test Pusher", "-c", "user.email=pusher@example.com"]


def git(path: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, "-C", str(path), *args],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip()


def make_git_repo(path: Path, files: dict[str, str]) -> str:
    """A work tree on branch main with one commit holding `files`; returns the commit sha."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return git(path, "rev-parse", "HEAD")


@pytest.fixture(scope="session")
def app_key_pem() -> str:
    """One RSA key for the whole run: generating one takes ~50 ms."""
    return new_private_key_pem()


@pytest.fixture(scope="session")
def app_git_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding a Dockerfile, to back repositories of the fake GitHub."""
    path = tmp_path_factory.mktemp("app-repo")
    make_git_repo(path, {"Dockerfile": "FROM scratch\n", "index.html": "hello\n"})
    return path


@pytest.fixture
def fake_github(app_key_pem: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(private_key_pem=app_key_pem).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def migrated_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A control plane migrated to head once per run (the migrations take ~0.1 s; a copy of
    their result, a millisecond)."""
    path = tmp_path_factory.mktemp("migrated") / "control-plane.db"
    migrate(f"sqlite:///{path}", path.parent / "locks")
    return path


@pytest.fixture
def sessions(tmp_path: Path, migrated_control_plane: Path) -> Iterator[SessionFactory]:
    """A control plane migrated to head: the migrations are the schema (test_migrations runs
    them on databases of its own)."""
    path = tmp_path / "control-plane.db"
    source, copy = sqlite3.connect(migrated_control_plane), sqlite3.connect(path)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    engine = make_engine(f"sqlite:///{path}")
    try:
        yield SessionFactory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def platform(
    sessions: SessionFactory,
    fake_github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:
    """The platform's services on fakes, with one connected repository `octo/web`; at the end,
    GitHub saw nothing it would have refused (a test provoking a refusal clears it)."""
    # A tarball GitHub fails to serve is not waited for here (the client's retries have tests
    # of their own in test_github_app_auth): an outage fails the revision at once.
    monkeypatch.setattr(rest, "TARBALL_RETRY_SECONDS", 0.0)
    yield world_platform(sessions, fake_github, tmp_path)
    fake_github.assert_no_errors()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """A platform's API over HTTP on 127.0.0.1, with a deployment `web` of three revisions."""
    with running_api() as api:
        api.add_deployment("web")
        yield api


@pytest.fixture
def slipway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """The `slipway` command, in-process, with a home of its own and no login yet."""
    return isolated_cli(tmp_path, monkeypatch, capsys)
