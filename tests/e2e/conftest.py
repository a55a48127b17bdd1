"""The e2e tier: `slipway up` as a subprocess, a fake GitHub, real Docker, BuildKit and Caddy."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_github import FakeGitHub
from tests.support.git_repos import GitRepo
from tests.support.images import ensure_busybox_image, ensure_python_image
from tests.support.platform import (
    ACCOUNT,
    INSTALLATION_ID,
    RepoFactory,
    RunningPlatform,
    connect_repository,
    remove_docker_objects,
    start_platform,
)

HEALTH_TIMEOUT_SECONDS = "8"
"""Short, so the never-healthy test fails in seconds; real apps here answer in under one."""

_repo_ids = itertools.count(1)


@pytest.fixture(scope="session")
def base_images() -> dict[str, str]:
    return {"busybox": ensure_busybox_image(), "python": ensure_python_image()}


@pytest.fixture(scope="session")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(app_id=31337, app_slug="slipway-test")
    fake.start()
    fake.add_installation(INSTALLATION_ID, ACCOUNT)
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    running = start_platform(
        tmp_path_factory.mktemp("platform"),
        github,
        health_timeout_seconds=HEALTH_TIMEOUT_SECONDS,
    )
    yield running
    deployments = running.api("/api/deployments")
    running.stop()
    remove_docker_objects([d["id"] for d in deployments])


@pytest.fixture
def make_repository(tmp_path: Path, github: FakeGitHub, platform: RunningPlatform) -> RepoFactory:
    """A git repository with a first commit, known to the fake GitHub and connected to the App."""

    def make(name: str, files: dict[str, str | bytes]) -> tuple[GitRepo, dict[str, Any]]:
        return connect_repository(platform, github, tmp_path / f"{name}-{next(_repo_ids)}", files)

    return make
