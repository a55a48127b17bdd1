"""Images made on this machine from one of its own binaries: no registry needs to be reachable.

An air-gapped host (or this project's test machines) cannot pull a base image, so the images
the platform itself runs are made here: `FROM scratch` with the binary and the few shared
libraries the dynamic loader maps for it, copied from the host. They need no base image, build
in about a second, and weigh a few MB.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builders.docker_cli import run_docker
from builders.engine_errors import NoSuchImage
from builders.errors import EngineError

log = logging.getLogger(__name__)

BUILD_TIMEOUT_SECONDS = 120
DOCKER_TIMEOUT_SECONDS = 30
_LIBRARY = re.compile(r"(/\S+)\s+\(0x[0-9a-f]+\)")
"""An `ldd` line naming a resolved library: `libc.so.6 => /lib/.../libc.so.6 (0x...)`."""


def shared_libraries(binary: Path, *, instead: str) -> list[Path]:
    """Absolute paths of what the dynamic loader maps for `binary` (itself included).

    `instead` tells the operator what to do when they cannot be listed."""
    result = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=False, timeout=10
    )
    if result.returncode != 0:
        raise EngineError(
            f"cannot list the libraries of {binary} (ldd: {result.stderr.strip()}): {instead}"
        )
    return [Path(match.group(1)) for match in _LIBRARY.finditer(result.stdout)]


@dataclass(frozen=True)
class HostImageRecipe:
    """One image: a host binary at `path` in the image, its libraries, and how it runs."""

    tag: str
    binary: Path
    path: str
    """Where the binary lands in the image (its directory goes on PATH)."""
    labels: dict[str, str]
    cmd: tuple[str, ...]
    instead: str
    """What the operator can do when the image cannot be made (name an image of their own)."""


def dockerfile(recipe: HostImageRecipe, libraries: list[Path]) -> str:
    lines = ["FROM scratch", f"COPY binary {recipe.path}"]
    lines += [f"COPY lib{index} {library}" for index, library in enumerate(libraries)]
    lines += [f"ENV PATH={Path(recipe.path).parent}"]
    lines += [f"LABEL {key}={value}" for key, value in recipe.labels.items()]
    cmd = ", ".join(f'"{word}"' for word in recipe.cmd)
    lines += [f"CMD [{cmd}]"]
    return "\n".join(lines) + "\n"


class HostImage:
    """Hands out the image's tag, building it the first time the engine lacks it."""

    def __init__(self, docker_binary: str, recipe: Callable[[], HostImageRecipe]) -> None:
        self._docker = docker_binary
        self._recipe = recipe
        self._ready: str | None = None
        self._lock = threading.Lock()

    def tag(self) -> str:
        with self._lock:
            if self._ready is None:
                recipe = self._recipe()
                if not self._exists(recipe.tag):
                    self._build(recipe)
                self._ready = recipe.tag
            return self._ready

    def _exists(self, tag: str) -> bool:
        try:
            run_docker(
                [self._docker, "image", "inspect", "--format", "{{.Id}}", tag],
                timeout=DOCKER_TIMEOUT_SECONDS,
            )
        except NoSuchImage:
            return False
        return True

    def _build(self, recipe: HostImageRecipe) -> None:
        libraries = shared_libraries(recipe.binary, instead=recipe.instead)
        with tempfile.TemporaryDirectory(prefix="slipway-image-") as tmp:
            context = Path(tmp)
            shutil.copy2(recipe.binary, context / "binary")
            for index, library in enumerate(libraries):
                shutil.copy2(library, context / f"lib{index}")  # follows links: the real file
            (context / "Dockerfile").write_text(dockerfile(recipe, libraries), encoding="utf-8")
            try:
                run_docker(
                    [self._docker, "build", "--quiet", "--tag", recipe.tag, str(context)],
                    env={"DOCKER_BUILDKIT": "1"},
                    timeout=BUILD_TIMEOUT_SECONDS,
                )
            except EngineError as exc:
                raise type(exc)(
                    f"could not build the image {recipe.tag}: {exc}; {recipe.instead}"
                ) from exc
        log.info("image built", extra={"image": recipe.tag, "libraries": len(libraries)})
