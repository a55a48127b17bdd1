"""The image of a replica's holder: a process that does nothing but keep the replica's network
namespace, and so its address, alive (as a Kubernetes pod's pause container does).

Made on this machine (`builders.host_image`) from the host's own `sleep`: 2 MB, no registry.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from builders.host_image import HostImage, HostImageRecipe
from manifests.containers import HOLDER_ROLE, ROLE_LABEL

IMAGE_REPOSITORY = "slipway/holder"


def sleep_binary() -> Path:
    found = shutil.which("sleep")
    return Path(found) if found else Path("/bin/sleep")


def recipe() -> HostImageRecipe:
    """Tagged after the binary's content: a host upgrade builds a new image."""
    binary = sleep_binary()
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    return HostImageRecipe(
        tag=f"{IMAGE_REPOSITORY}:{digest}",
        binary=binary,
        path="/bin/sleep",
        labels={ROLE_LABEL: HOLDER_ROLE},
        cmd=("sleep", "infinity"),
        instead="replicas need the host's sleep (GNU coreutils) to hold their addresses",
    )


def holder_image(docker_binary: str) -> HostImage:
    return HostImage(docker_binary, recipe)
