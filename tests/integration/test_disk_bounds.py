"""On the real engine: anonymous volumes go with their container; the build cache is pruned."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from app.adapters.docker import DockerRuntime
from builders.images import BuildKitBuilder
from tests.support.images import DOCKER, ensure_busybox_image

pytestmark = pytest.mark.timeout(300)


def docker(*args: str) -> str:
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def test_a_removed_replica_takes_its_anonymous_volumes_with_it(tmp_path: Path) -> None:
    image = ensure_busybox_image()
    name = f"slipway-test-volume-{uuid.uuid4().hex[:8]}"
    container = docker("run", "-d", "--name", name, "-v", "/data", image, "sleep", "600")
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", container))
    [volume] = [m["Name"] for m in mounts if m["Type"] == "volume"]

    DockerRuntime(DOCKER, tmp_path / "run").remove(container)

    assert volume not in docker("volume", "ls", "-q").split()


def test_the_build_cache_is_pruned_down_to_the_limit(tmp_path: Path) -> None:
    image = ensure_busybox_image()
    marker = uuid.uuid4().hex
    (tmp_path / "Dockerfile").write_text(
        f"FROM {image}\nRUN echo {marker} > /layer && head -c 3000000 /dev/zero > /f\n"
    )
    tag = f"slipway-test/cache:{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [DOCKER, "build", "-q", "-t", tag, str(tmp_path)],
        env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=120,
    )
    docker("rmi", tag)  # its cache is now unused

    def this_tests_cache() -> list[dict[str, str]]:
        """Its own entries: the engine's cache is shared with whatever else builds meanwhile,
        so its total may not be 0 after a prune."""
        entries = json.loads(docker("system", "df", "-v", "--format", "{{json .BuildCache}}"))
        return [e for e in entries or [] if marker in e.get("Description", "")]

    assert this_tests_cache()

    BuildKitBuilder(DOCKER).prune_cache(0)

    assert this_tests_cache() == []
