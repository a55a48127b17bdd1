"""The runtime's events on a real Docker engine: what the reconciler is told, and that a cut
stream is reopened with a resync (events sent meanwhile are lost)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.docker import DockerRuntime
from app.kernel.ports import ReplicaEvents
from app.replicas.engine_events import EngineEventFollower
from manifests.containers import DEPLOYMENT_LABEL
from tests.support.images import DOCKER, docker, ensure_busybox_image
from tests.support.platform import wait_for


class Recorded:
    def __init__(self) -> None:
        self.deployments: list[str] = []
        self.resyncs = 0
        self.lock = threading.Lock()

    def event(self, deployment_id: str) -> None:
        with self.lock:
            self.deployments.append(deployment_id)

    def resync(self) -> None:
        with self.lock:
            self.resyncs += 1


class Feeds(DockerRuntime):
    """The real runtime, keeping each stream it opened so the test can cut one."""

    opened: list[ReplicaEvents]

    def replica_events(self) -> ReplicaEvents:
        feed = super().replica_events()
        self.opened.append(feed)
        return feed


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "-f", name)


def labelled(containers: list[str], deployment_id: str) -> str:
    name = f"slipway-test-events-{uuid.uuid4().hex[:10]}"
    containers.append(name)
    docker(
        "run", "-d", "--name", name, "--label", f"{DEPLOYMENT_LABEL}={deployment_id}",
        "--network", "none", ensure_busybox_image(), "sleep", "300",
    )  # fmt: skip
    return name


def test_a_killed_container_is_reported_and_a_cut_stream_reopened_with_a_resync(
    tmp_path: Path, containers: list[str]
) -> None:
    runtime = Feeds(DOCKER, tmp_path / "run")
    runtime.opened = []
    seen = Recorded()
    follower = EngineEventFollower(runtime, seen.event, seen.resync, first_retry_seconds=0.1)
    follower.start()
    try:
        wait_for("the first stream and its resync", lambda: seen.resyncs == 1, timeout=30)
        first = f"dep_{uuid.uuid4().hex[:12]}"
        unlabelled = f"slipway-test-events-{uuid.uuid4().hex[:10]}"
        containers.append(unlabelled)
        docker("run", "-d", "--name", unlabelled, "--network", "none",
               ensure_busybox_image(), "sleep", "300")  # fmt: skip
        name = labelled(containers, first)
        docker("kill", name)
        docker("kill", unlabelled)
        wait_for(f"{first} reported dead", lambda: seen.deployments.count(first) >= 2, timeout=30)

        runtime.opened[0].close()  # the connection to the engine drops

        wait_for("the stream reopened and a resync asked for", lambda: seen.resyncs == 2, 30)
        second = f"dep_{uuid.uuid4().hex[:12]}"
        docker("kill", labelled(containers, second))
        wait_for(f"{second} reported", lambda: second in seen.deployments, timeout=30)
        assert all(seen.deployments)  # each read off the container's label
    finally:
        follower.stop()
    assert len(runtime.opened) == 2
