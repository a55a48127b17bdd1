"""Replicas under real load (hey → Caddy → Docker): autoscaling, rollouts, replacements.

The platform here ticks every second and its windows are seconds long, so what takes minutes
with the defaults (a 60 s stable window, a 30 min scale-down delay) is seen in a test.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import slow_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.images import DOCKER
from tests.support.load import start_load
from tests.support.platform import (
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

SCALE_DOWN_DELAY_SECONDS = 12
STABLE_WINDOW_SECONDS = 6


@pytest.fixture(scope="module")
def fast_scaling(
    tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    running = start_platform(
        tmp_path_factory.mktemp("replicas-platform"),
        github,
        health_timeout_seconds="30",
        autoscale_tick_seconds="1",
        autoscale_stable_window_seconds=str(STABLE_WINDOW_SECONDS),
        autoscale_panic_window_seconds="3",
        autoscale_scale_down_delay_seconds=str(SCALE_DOWN_DELAY_SECONDS),
        drain_timeout_seconds="10",
    )
    yield running
    running.stop_and_clean()


def deploy(
    platform: RunningPlatform, github: FakeGitHub, path: Path, files: dict[str, str | bytes]
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    repo, repository = connect_repository(platform, github, path, files)
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]
    return repo, repository, deployment


def scaling(platform: RunningPlatform, deployment_id: str) -> dict[str, Any]:
    return dict(platform.api(f"/api/deployments/{deployment_id}/scaling"))


def ready(platform: RunningPlatform, deployment_id: str) -> int:
    return int(scaling(platform, deployment_id)["current"])


def host(platform: RunningPlatform, slug: str) -> str:
    return f"{slug}.localhost:{platform.router_port}"


def endpoints(platform: RunningPlatform, deployment_id: str) -> set[str]:
    view = platform.api(f"/api/deployments/{deployment_id}")
    return {r["endpoint"] for r in view["replicas"] if r["state"] == "ready"}


def test_load_scales_production_up_over_every_replica_and_back_after_the_delay(
    fast_scaling: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = fast_scaling
    _, _, deployment = deploy(platform, github, tmp_path / "busy", slow_app("one"))
    deployment_id, slug = deployment["id"], deployment["slug"]
    assert ready(platform, deployment_id) == 1

    # 38 in flight at 10 per replica asks for 4 with room: on a busy machine the router sees
    # fewer in flight than hey keeps open, and an average below 30 would ask for 3 before the
    # load ends, starting the delay early (a CI run saw exactly that with 35).
    load = start_load(
        platform.router_port, host(platform, slug), "/?ms=300", seconds=25, concurrency=38
    )
    try:
        wait_for(
            "4 ready replicas under 38 in flight", lambda: ready(platform, deployment_id) >= 4, 30
        )
        serving = endpoints(platform, deployment_id)
        busy: set[str] = set()
        for _ in range(20):
            busy |= {address for address, n in platform.in_flight().items() if n > 0}
            time.sleep(0.1)
    finally:
        load.wait()
    stopped = time.monotonic()
    print(f"\nload: {load.summary()}")
    assert load.failed == 0, load.summary()
    view = scaling(platform, deployment_id)
    assert view["current"] == 4 and view["desired"] == 4, view
    assert len(serving) == 4, serving
    assert serving <= busy, (serving, busy)  # the load is spread over all of them
    reasons = {d["reason"] for d in view["decisions"]}
    assert reasons & {"scale-up", "panic"}, view["decisions"]

    # The load is gone: the count holds for the delay, then comes back to one.
    while time.monotonic() - stopped < SCALE_DOWN_DELAY_SECONDS - 2:
        view = scaling(platform, deployment_id)
        assert view["current"] == 4, view["decisions"][-12:]
        time.sleep(0.5)
    wait_for(
        "one replica after the scale-down delay",
        lambda: ready(platform, deployment_id) == 1,
        SCALE_DOWN_DELAY_SECONDS + STABLE_WINDOW_SECONDS + 20,
    )
    wait_for("the others stopped", lambda: len(running_containers(deployment_id)) == 1, 20)
    assert "scale-down" in {d["reason"] for d in scaling(platform, deployment_id)["decisions"]}


def test_a_rollout_under_steady_load_fails_no_request(
    fast_scaling: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = fast_scaling
    repo, repository, deployment = deploy(platform, github, tmp_path / "steady", slow_app("old"))
    slug = deployment["slug"]
    assert platform.request(slug, "/").text.startswith("version=old ")

    load = start_load(
        platform.router_port, host(platform, slug), seconds=20, concurrency=20, rate_per_worker=10
    )
    try:
        time.sleep(2)  # part of the load before the push: this is the timeline, not a wait
        first = repo.head
        second = repo.commit({"VERSION": "new\n"}, "new version")
        platform.push(repository, INSTALLATION_ID, first, second)
        _, revision = platform.settle(repository["full_name"], second)
        assert revision["state"] == "live", revision["error"]
        assert platform.request(slug, "/").text.startswith("version=new ")
    finally:
        load.wait()
    print(f"\nrollout under load: {load.summary()}")
    assert load.requests > 1000, load.summary()
    assert load.failed == 0, load.summary()


def test_a_killed_replica_is_replaced_and_the_others_keep_serving(
    fast_scaling: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = fast_scaling
    _, _, deployment = deploy(
        platform, github, tmp_path / "sturdy", slow_app("one", scale="min = 2")
    )
    deployment_id, slug = deployment["id"], deployment["slug"]
    wait_for(
        "two ready replicas ([scale] min = 2)", lambda: ready(platform, deployment_id) == 2, 30
    )
    [victim, survivor] = running_containers(deployment_id)

    load = start_load(
        platform.router_port, host(platform, slug), seconds=10, concurrency=10, rate_per_worker=10
    )
    try:
        time.sleep(2)  # the kill lands in the middle of the load
        subprocess.run([DOCKER, "kill", victim], check=True, capture_output=True)
        wait_for(
            "a replacement",
            lambda: (
                victim not in running_containers(deployment_id)
                and len(running_containers(deployment_id)) == 2
                and ready(platform, deployment_id) == 2
            ),
            30,
        )
    finally:
        load.wait()
    print(f"\nkilled one of two replicas under load: {load.summary()}")
    assert survivor in running_containers(deployment_id)
    assert load.failed == 0, load.summary()
    decisions = scaling(platform, deployment_id)["decisions"]
    assert "replica died" in {d["reason"] for d in decisions}


def test_a_development_deployment_stays_at_one_replica_under_load(
    fast_scaling: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = fast_scaling
    _, repository, _ = deploy(platform, github, tmp_path / "dev", slow_app("dev"))
    created = platform.call(
        "POST",
        "/api/deployments",
        json={"repository": repository["full_name"], "branch": "main", "name": "dev-under-load"},
    )
    assert created.status_code == 202, created.text
    accepted = created.json()
    assert accepted["deployment"]["type"] == "development"
    platform.wait_state(accepted["revision"]["id"], {"live", "failed"})
    deployment_id = accepted["deployment"]["id"]

    load = start_load(
        platform.router_port,
        host(platform, "dev-under-load"),
        "/?ms=300",
        seconds=8,
        concurrency=35,
    )
    seen = set()
    while load.process.poll() is None:
        seen.add(ready(platform, deployment_id))
        time.sleep(0.5)
    load.wait()
    assert seen == {1}, seen
    assert scaling(platform, deployment_id)["policy"]["max_replicas"] == 1
    assert len(running_containers(deployment_id)) == 1


def running_containers(deployment_id: str) -> list[str]:
    """The deployment's running replica containers, oldest first."""
    out = subprocess.run(
        [
            DOCKER,
            "ps",
            "--no-trunc",
            "--filter",
            f"label=dev.slipway.deployment={deployment_id}",
            "--filter",
            "label=dev.slipway.revision",
            "--format",
            "{{.ID}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return list(reversed(out))
