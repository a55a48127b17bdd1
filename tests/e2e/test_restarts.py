"""Slipway owns the router's config: routes come back when Caddy or the platform restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.apps import static_site
from tests.e2e.conftest import INSTALLATION_ID, connect_repository, remove_docker_objects
from tests.fake_github import FakeGitHub
from tests.platform import RunningPlatform, start_platform, wait_for


def _serves(platform: RunningPlatform, slug: str, text: str) -> bool:
    try:
        return platform.request(slug).text == text
    except httpx.HTTPError:
        return False


def test_routes_are_restored_after_caddy_dies_and_after_the_platform_restarts(
    tmp_path: Path, github: FakeGitHub, base_images: dict[str, str]
) -> None:
    data_dir = tmp_path / "platform"
    platform = start_platform(data_dir, github)
    deployment_ids: list[str] = []
    try:
        repo, repository = connect_repository(
            platform, github, tmp_path / "restartable", static_site("still here")
        )
        platform.push(repository, INSTALLATION_ID, "0" * 40, repo.head)
        deployment, revision = platform.settle(repository["full_name"], repo.head)
        deployment_ids.append(deployment["id"])
        assert revision["state"] == "live", revision["error"]
        slug = deployment["slug"]
        assert _serves(platform, slug, "still here\n")

        # Caddy dies: `slipway up` starts it again with the routes from its database.
        caddy_pid = int((data_dir / "caddy" / "caddy.pid").read_text())
        os.kill(caddy_pid, signal.SIGKILL)
        wait_for(
            "the route to come back after Caddy died",
            lambda: _serves(platform, slug, "still here\n"),
            30,
        )

        # The whole platform restarts on the same data dir: the app kept running, and is
        # routed again as soon as the new router is up.
        platform.stop()
        api_port = int(platform.api_url.rsplit(":", 1)[1])
        platform = start_platform(
            data_dir, github, api_port=api_port, router_port=platform.router_port
        )
        wait_for(
            "the route to come back after a restart",
            lambda: _serves(platform, slug, "still here\n"),
            30,
        )
    finally:
        platform.stop()
        remove_docker_objects(deployment_ids)


def test_the_platforms_files_and_services_are_its_users_alone(platform: RunningPlatform) -> None:
    """DATA_DIR: nothing readable or writable by others; only search (o+x) where the embedded
    Postgres, which runs as its own user, must pass. Caddy's admin API is a private socket."""
    postgres = platform.data_dir / "postgres"
    for path in [platform.data_dir, *platform.data_dir.rglob("*")]:
        if path.is_symlink() or path.is_socket():
            continue
        if postgres in path.parents and not path.is_dir():
            continue  # the cluster's own files, owned and guarded by its system user
        mode = path.stat().st_mode & 0o777
        allowed = 0o701 if path in (platform.data_dir, postgres) else 0o700
        if path.is_dir() and postgres in path.parents:
            allowed = 0o701 if path == postgres / "run" else 0o711
        assert mode & ~allowed & 0o077 == 0, f"{path} is {mode:04o}"
    admin = platform.data_dir / "caddy" / "admin.sock"
    assert admin.is_socket()
    assert admin.stat().st_mode & 0o077 == 0
    redis_url = (platform.data_dir / "redis" / "password").read_text().strip()
    assert redis_url  # the queue has a password
