"""A LangGraph deployment's own Redis on the real engine: the local Valkey image, started on the
deployment's network only, with its password, reused, restarted, recreated and torn down."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.docker import DockerRuntime
from builders.valkey_image import ValkeyImage, local_tag
from manifests.containers import (
    DEPLOYMENT_LABEL,
    Confinement,
    deployment_network,
    redis_name,
    redis_spec,
)
from tests.support.images import DOCKER, docker, ensure_busybox_image
from tests.support.platform import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


@pytest.fixture
def deployment_id(tmp_path: Path) -> Iterator[str]:
    deployment_id = f"dep_test{uuid.uuid4().hex[:8]}"
    yield deployment_id
    DockerRuntime(DOCKER, tmp_path / "cleanup").remove_labelled(DEPLOYMENT_LABEL, deployment_id)


def redis_answers(network: str, host: str, password: str) -> str:
    """What a client on `network` hears after AUTH + PING (busybox nc, no Redis client)."""
    result = subprocess.run(
        [
            DOCKER,
            "run",
            "--rm",
            "--network",
            network,
            ensure_busybox_image(),
            "sh",
            "-c",
            f"printf 'AUTH {password}\\r\\nPING\\r\\n' | nc -w 2 {host} 6379",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout


def crash(name: str) -> None:
    """SIGKILL the container's first process from the host, as an OOM kill or a crash does."""
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", name))
    os.kill(pid, signal.SIGKILL)


def test_the_local_image_serves_redis_on_the_deployment_network_only(
    tmp_path: Path, deployment_id: str
) -> None:
    image = ValkeyImage(DOCKER).redis()
    assert image == local_tag()
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
    assert size < 20 * 1024**2, size

    runtime = DockerRuntime(DOCKER, tmp_path / "run")
    network = deployment_network(deployment_id)
    runtime.ensure_network(network.name, network.labels)
    password = secrets.token_urlsafe(24)
    spec = redis_spec(
        deployment_id=deployment_id, image=image, password=password, confinement=Confinement()
    )
    assert runtime.ensure_service(spec) is True
    name = redis_name(deployment_id)

    def pong() -> bool:
        return "+PONG" in redis_answers(network.name, name, password)

    wait_for("the deployment's Redis to answer", pong, 30, every=0.2)
    assert "+PONG" not in redis_answers(network.name, name, "wrong-password")
    assert "+PONG" not in redis_answers("bridge", name, password)  # not from another network

    inspected = json.loads(docker("inspect", name))[0]
    assert password not in json.dumps(inspected)  # not in argv, env or labels
    host_config = inspected["HostConfig"]
    assert not host_config["PortBindings"] and not inspected["NetworkSettings"]["Ports"]
    assert host_config["Memory"] == spec.limits.memory_bytes
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"

    # A running one is reused; a crashed one comes back by itself; a removed one is recreated.
    # (A crash, not `docker kill`: the engine counts that as a manual stop and never restarts.)
    assert runtime.ensure_service(spec) is False
    container_id = inspected["Id"]
    crash(name)

    def restarted() -> bool:
        state = json.loads(docker("inspect", name))[0]["State"]
        return bool(state["Running"]) and "+PONG" in redis_answers(network.name, name, password)

    wait_for("the engine to restart the crashed Redis", restarted, 60, every=0.5)
    docker("rm", "-f", name)
    assert runtime.ensure_service(spec) is True
    assert json.loads(docker("inspect", name))[0]["Id"] != container_id
    wait_for("the recreated Redis to answer", pong, 30, every=0.2)

    # Teardown finds it by the deployment label, the image (shared) stays.
    runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)
    gone = subprocess.run([DOCKER, "inspect", name], capture_output=True, check=False)
    assert gone.returncode != 0
    assert docker("image", "inspect", "--format", "{{.Id}}", image).strip()
