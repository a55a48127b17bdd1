"""What `slipway up` survives: its own processes killed one by one, and a whole restart.

The router keeps serving while the queue or the database cluster is killed and restarted; a
worker killed mid-build leaves a failed revision and nothing running; Slipway owns the router's
config, so routes come back when Caddy dies or the platform restarts, and a pull request keeps
its one comment across the restart. These tests share one platform of their own (the session's
is not killed under the other modules), in the order written: the restart comes last.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.feedback.outbox import LEASE as REPORT_LEASE
from app.rollout.recovery import kill_builds
from tests.e2e.pull_requests import PullRequests
from tests.support.apps import static_site
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

HEY = "/usr/bin/hey"
RECOVERY_SECONDS = "15"
"""Short, so the killed worker's revision fails in seconds; three of the job's 5 s heartbeats,
so no revision of the other tests here is failed for one late beat."""


@pytest.fixture(scope="module")
def disruptable(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    running = start_platform(
        tmp_path_factory.mktemp("disruptable"), github, recovery_seconds=RECOVERY_SECONDS
    )
    yield running
    running.stop_and_clean()


def _serves(platform: RunningPlatform, slug: str, text: str) -> bool:
    try:
        return platform.request(slug).text == text
    except httpx.HTTPError:
        return False


def test_the_platforms_files_and_services_are_its_users_alone(
    disruptable: RunningPlatform,
) -> None:
    """DATA_DIR: nothing readable or writable by others; only search (o+x) where the embedded
    Postgres, which runs as its own user, must pass. Caddy's admin API is a private socket."""
    platform = disruptable
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
    disruptable: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = disruptable
    repo, repository = connect_repository(
        platform, github, tmp_path / "steady-under-kills", static_site("steady")
    )
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


def _builds_of(tag: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    return True
            except OSError:
                continue
    return False


@pytest.mark.timeout(400)
def test_a_worker_killed_mid_build_leaves_a_failed_revision_and_nothing_running(
    disruptable: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = disruptable
    tag = ""
    try:
        repo, repository = connect_repository(
            platform, github, tmp_path / "killed-mid-build", static_site("before")
        )
        first = repo.head
        platform.push(repository, INSTALLATION_ID, ZERO_SHA, first)
        deployment, live = platform.settle(repository["full_name"], first)
        assert live["state"] == "live", live["error"]

        # A build that takes long enough to be killed in the middle of.
        slow = static_site("after", extra_run=f"RUN echo {uuid.uuid4().hex} && sleep 60\n")
        second = repo.commit(slow, "slow build")
        platform.push(repository, INSTALLATION_ID, first, second)
        building = platform.settle(repository["full_name"], second, frozenset({"building"}))[1]
        tag = f"dev.slipway.revision={building['id']}"  # on the build's command line
        wait_for("the docker build to run", lambda: _builds_of(tag), 60)
        pid = wait_for("the worker process", platform.worker_pid, 10)

        os.kill(pid, signal.SIGKILL)  # the supervisor starts a new worker

        failed = platform.wait_state(building["id"], {"failed"}, timeout=90)
        assert failed["error"] == "the worker stopped during its build; push again or press Re-run"
        wait_for("the orphaned docker build to be gone", lambda: not _builds_of(tag), 30)

        def check_run_completed() -> bool:
            runs = [r for r in github.check_runs(repository["full_name"]) if r.head_sha == second]
            return (
                bool(runs) and runs[-1].status == "completed" and runs[-1].conclusion == "failure"
            )

        # A worker killed while it sent a report of this revision holds the revision's report
        # lease until it expires: the failure reaches GitHub within that lease.
        wait_for(
            "the check run to be completed",
            check_run_completed,
            REPORT_LEASE.total_seconds() + 30,
        )
        assert platform.request(deployment["slug"]).text == "before\n"
    finally:
        if tag:
            kill_builds(tag.removeprefix("dev.slipway.revision="))  # nothing may outlive it


@pytest.mark.timeout(600)
def test_routes_and_a_preview_comment_outlive_caddy_dying_and_a_platform_restart(
    disruptable: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = disruptable
    repo, repository = connect_repository(
        platform, github, tmp_path / "restartable", static_site("still here")
    )
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    slug = deployment["slug"]
    assert _serves(platform, slug, "still here\n")
    prs = PullRequests(platform, github, repo, repository)
    head = prs.open(4, static_site("before the restart"))
    assert prs.settled(4, head)["state"] == "live"
    preview = prs.preview(4)
    prs.comment_saying(4, "✅ Live", f"`{head[:7]}`")

    # Caddy dies: `slipway up` starts it again with the routes from its database.
    caddy_pid = int((platform.data_dir / "caddy" / "caddy.pid").read_text())
    os.kill(caddy_pid, signal.SIGKILL)
    wait_for(
        "the route to come back after Caddy died",
        lambda: _serves(platform, slug, "still here\n"),
        30,
    )

    # The whole platform restarts on the same data dir: the apps kept running, and are routed
    # again as soon as the new router is up.
    platform.restart()
    wait_for(
        "the route to come back after a restart",
        lambda: _serves(platform, slug, "still here\n"),
        30,
    )
    wait_for(
        "the preview's route to come back after a restart",
        lambda: _serves(platform, preview["slug"], "before the restart\n"),
        30,
    )

    # A new commit on the pull request: the comment made before the restart is edited.
    before, head2 = prs.push(4, static_site("after the restart"))
    prs.send("synchronize", 4, before=before)
    assert prs.settled(4, head2)["state"] == "live"
    prs.comment_saying(4, "✅ Live", f"`{head2[:7]}`")
    assert len(prs.comments(4)) == 1
