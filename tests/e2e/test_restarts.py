"""Slipway owns the router's config: routes come back when Caddy or the platform restarts;
and the router keeps serving while the queue or the database cluster is killed and restarted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.apps import static_site
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import (
    INSTALLATION_ID,
    RepoFactory,
    RunningPlatform,
    connect_repository,
    remove_docker_objects,
    start_platform,
    wait_for,
)

HEY = "/usr/bin/hey"


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


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None


def _runs(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _restarted(path: Path, killed: int) -> bool:
    pid = _pid_in(path)
    return pid is not None and pid != killed and _runs(pid)


def _cluster_answers(platform: RunningPlatform) -> bool:
    try:
        with psycopg.connect(platform.postgres_admin_url(), connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


@pytest.mark.timeout(400)
def test_kill_9_of_the_queue_and_of_the_database_cluster_fails_no_request_and_a_push_goes_live(
    platform: RunningPlatform, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("steady", static_site("steady"))
    first = repo.head
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, first)
    deployment, live = platform.settle(repository["full_name"], first)
    assert live["state"] == "live", live["error"]
    slug = deployment["slug"]
    worker = wait_for("the worker process", platform.worker_pid, 10)
    valkey_pid_file = platform.data_dir / "redis" / "valkey.pid"
    postmaster_pid_file = platform.data_dir / "postgres" / "pgdata" / "postmaster.pid"
    valkey, postmaster = _pid_in(valkey_pid_file), _pid_in(postmaster_pid_file)
    assert _runs(valkey) and _runs(postmaster)
    assert valkey is not None and postmaster is not None

    # A bounded load through the router: 10 s, 4 clients, 20 requests a second each.
    router = f"http://127.0.0.1:{platform.router_port}/"
    load = subprocess.Popen(
        [HEY, "-z", "10s", "-q", "20", "-c", "4", "-host", f"{slug}.localhost", router],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        os.kill(valkey, signal.SIGKILL)
        wait_for(
            "the supervisor to start the queue again",
            lambda: _restarted(valkey_pid_file, valkey),
            30,
        )
        os.kill(postmaster, signal.SIGKILL)
        wait_for(
            "the supervisor to start the cluster again",
            lambda: _restarted(postmaster_pid_file, postmaster),
            60,
        )
        assert load.poll() is None, "both were killed while the load ran"
        wait_for("the cluster to answer", lambda: _cluster_answers(platform), 30)
        report, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    print("hey through the router while the queue and the cluster were killed:\n" + report)
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", report))
    assert "Error distribution" not in report, report
    assert list(statuses) == ["200"], report
    assert int(statuses["200"]) >= 400, report  # the load ran the whole 10 s

    # The worker rode the queue's restart out (it did not exit), and a push goes live at once.
    assert platform.worker_pid() == worker
    second = repo.commit(static_site("after the faults"), "after the faults")
    pushed = time.monotonic()
    platform.push(repository, INSTALLATION_ID, first, second)
    _, after = platform.settle(repository["full_name"], second)
    assert after["state"] == "live", after["error"]
    took = time.monotonic() - pushed
    print(f"push to live after the faults: {took:.1f} s")
    assert took < 60
    assert _serves(platform, slug, "after the faults\n")
