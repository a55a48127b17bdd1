"""The e2e tier: `slipway up` as a subprocess, a fake GitHub, real Docker, BuildKit and Caddy."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_github import FakeGitHub
from tests.fake_github.payloads import installation_payload
from tests.git_repos import GitRepo
from tests.images import DOCKER, ensure_busybox_image, ensure_python_image
from tests.platform import RunningPlatform, start_platform

INSTALLATION_ID = 4242
ACCOUNT = "octo-org"
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


def remove_docker_objects(deployment_ids: list[str]) -> None:
    """Containers, images and networks this run made; BuildKit's cache stays to keep the next
    run fast."""
    for deployment_id in deployment_ids:
        label = f"label=dev.slipway.deployment={deployment_id}"
        containers = subprocess.run(
            [DOCKER, "ps", "-aq", "--filter", label], capture_output=True, text=True, check=False
        ).stdout.split()
        if containers:
            subprocess.run([DOCKER, "rm", "-f", *containers], capture_output=True, check=False)
        images = subprocess.run(
            [DOCKER, "images", "-q", "--filter", label], capture_output=True, text=True, check=False
        ).stdout.split()
        if images:
            subprocess.run([DOCKER, "rmi", "-f", *set(images)], capture_output=True, check=False)
        networks = subprocess.run(
            [DOCKER, "network", "ls", "-q", "--filter", label],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if networks:
            subprocess.run([DOCKER, "network", "rm", *networks], capture_output=True, check=False)


RepoFactory = Callable[[str, dict[str, str | bytes]], tuple[GitRepo, dict[str, Any]]]


def connect_repository(
    platform: RunningPlatform,
    github: FakeGitHub,
    path: Path,
    files: dict[str, str | bytes],
) -> tuple[GitRepo, dict[str, Any]]:
    """A git repository at `path` with a first commit, known to the fake GitHub and connected
    to the App on `platform` (named after the directory)."""
    repo = GitRepo(path)
    repo.commit(files, "first commit")
    repository = github.add_repository(INSTALLATION_ID, ACCOUNT, path.name, repo.path)
    response = platform.send(
        "installation",
        installation_payload(
            "created", INSTALLATION_ID, ACCOUNT, [repository], app_id=github.app_id
        ),
    )
    assert response.status_code == 202, response.text
    return repo, repository


@pytest.fixture
def make_repository(tmp_path: Path, github: FakeGitHub, platform: RunningPlatform) -> RepoFactory:
    """A git repository with a first commit, known to the fake GitHub and connected to the App."""

    def make(name: str, files: dict[str, str | bytes]) -> tuple[GitRepo, dict[str, Any]]:
        return connect_repository(platform, github, tmp_path / f"{name}-{next(_repo_ids)}", files)

    return make
