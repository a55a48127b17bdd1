"""A worker killed mid-build: the revision ends failed, nothing it started is left running."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from app.rollout.recovery import kill_builds
from tests.support.apps import static_site
from tests.support.fake_github import FakeGitHub
from tests.support.platform import (
    INSTALLATION_ID,
    connect_repository,
    remove_docker_objects,
    start_platform,
    wait_for,
)

RECOVERY_SECONDS = "5"


def builds_of(tag: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    return True
            except OSError:
                continue
    return False


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_build_leaves_a_failed_revision_and_nothing_running(
    tmp_path: Path, github: FakeGitHub, base_images: dict[str, str]
) -> None:
    platform = start_platform(tmp_path / "platform", github, recovery_seconds=RECOVERY_SECONDS)
    deployment_ids: list[str] = []
    tag = ""
    try:
        repo, repository = connect_repository(
            platform, github, tmp_path / "killed", static_site("before")
        )
        first = repo.head
        platform.push(repository, INSTALLATION_ID, "0" * 40, first)
        deployment, live = platform.settle(repository["full_name"], first)
        deployment_ids.append(deployment["id"])
        assert live["state"] == "live", live["error"]

        # A build that takes long enough to be killed in the middle of.
        slow = static_site("after", extra_run=f"RUN echo {uuid.uuid4().hex} && sleep 60\n")
        second = repo.commit(slow, "slow build")
        platform.push(repository, INSTALLATION_ID, first, second)
        building = platform.settle(repository["full_name"], second, frozenset({"building"}))[1]
        tag = f"dev.slipway.revision={building['id']}"  # on the build's command line
        wait_for("the docker build to run", lambda: builds_of(tag), 60)
        pid = wait_for("the worker process", platform.worker_pid, 10)

        os.kill(pid, signal.SIGKILL)  # the supervisor starts a new worker

        failed = platform.wait_state(building["id"], {"failed"}, timeout=90)
        assert failed["error"] == "the worker stopped during its build; push again or press Re-run"
        wait_for("the orphaned docker build to be gone", lambda: not builds_of(tag), 30)

        def check_run_completed() -> bool:
            runs = [r for r in github.check_runs(repository["full_name"]) if r.head_sha == second]
            return (
                bool(runs) and runs[-1].status == "completed" and (runs[-1].conclusion == "failure")
            )

        wait_for("the check run to be completed", check_run_completed, 30)
        assert platform.request(deployment["slug"]).text == "before\n"
    finally:
        platform.stop()
        if tag:
            kill_builds(tag.removeprefix("dev.slipway.revision="))  # nothing may outlive it
        remove_docker_objects(deployment_ids)
