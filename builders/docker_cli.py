"""Finding a Docker CLI that can build with BuildKit, and running it: a command to its end
(`run_docker`, its failures typed), or a build with a streamed log.

Two ways to reach BuildKit, and Slipway supports both:
- `docker buildx build`: any client with the buildx plugin (Docker Desktop, docker-ce).
- `DOCKER_BUILDKIT=1 docker build`: the engine's embedded BuildKit, driven by a client older than
  23.0 (Debian's docker.io); newer clients without buildx refuse that and fall back to nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING

from builders.engine_errors import EngineUnreachable, cli_error
from builders.errors import BuildError, EngineError

if TYPE_CHECKING:
    from python_on_whales import DockerClient

PROBE_TIMEOUT_SECONDS = 10
FALLBACK_CLIENTS = ("docker", "/usr/bin/docker", "/usr/local/bin/docker")
"""Searched in order when SLIPWAY_DOCKER_BINARY is not set."""
EMBEDDED_BUILDKIT_MAX_CLIENT_MAJOR = 22
"""Clients up to 22.x still drive the engine's embedded BuildKit without buildx."""


class BuildMethod(StrEnum):
    buildx = "buildx"
    embedded = "embedded-buildkit"


@dataclass(frozen=True)
class DockerCLI:
    binary: str
    method: BuildMethod
    version: str

    def client(self) -> DockerClient:
        """python-on-whales' client of this CLI; imported here, not with the platform (its
        pydantic models are megabytes, and the platform's own calls go through `run_docker`
        and the Engine API)."""
        from python_on_whales import DockerClient

        return DockerClient(client_call=[self.binary])

    def describe(self) -> str:
        if self.method is BuildMethod.buildx:
            return f"BuildKit through `docker buildx build` ({self.binary}, client {self.version})"
        return (
            "the engine's embedded BuildKit through `DOCKER_BUILDKIT=1 docker build` "
            f"({self.binary}, client {self.version}; no buildx plugin found)"
        )


def _probe(binary: str) -> DockerCLI | None:
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        version = (
            subprocess.run(
                [path, "version", "--format", "{{.Client.Version}}"],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_SECONDS,
                check=False,
            ).stdout.strip()
            or "unknown"
        )
        buildx = subprocess.run(
            [path, "buildx", "version"],
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if buildx.returncode == 0:
        return DockerCLI(path, BuildMethod.buildx, version)
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) <= EMBEDDED_BUILDKIT_MAX_CLIENT_MAJOR:
        return DockerCLI(path, BuildMethod.embedded, version)
    return None


@cache
def find_docker_cli(preferred: str | None = None) -> DockerCLI:
    candidates: Sequence[str] = (preferred,) if preferred else FALLBACK_CLIENTS
    for binary in candidates:
        found = _probe(binary)
        if found is not None:
            return found
    raise BuildError(
        "no Docker CLI here can build with BuildKit: install the buildx plugin "
        "(docker-buildx-plugin), or point SLIPWAY_DOCKER_BINARY at a client that has it "
        f"(looked at: {', '.join(candidates)})"
    )


PLATFORM_PREFIX = "SLIPWAY_"
"""The platform's own settings (the App key, the webhook secret, the LangSmith key): the Docker
CLI needs none of them, so none is in its environment."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a Docker CLI child gets: this process's, without the platform's settings."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIX)}
    return {**inherited, **(extra or {})}


def run_docker(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> str:
    """Run one Docker CLI command to its end; its standard output, or the engine's refusal as
    its kind of EngineError (`builders.engine_errors`), as python-on-whales' `run` does."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineUnreachable(
            f"`{' '.join(argv[:3])}` got no answer from the Docker engine within {timeout:.0f} s"
        ) from exc
    except OSError as exc:
        raise EngineError(f"could not run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise cli_error(done.stderr or done.stdout)
    return done.stdout


class StreamStopped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def stream_command(
    argv: list[str],
    on_line: Callable[[str], None],
    *,
    env: dict[str, str] | None = None,
    should_stop: Callable[[], str | None] = lambda: None,
    poll_seconds: float = 0.5,
) -> int:
    """Run argv, handing each output line (stdout and stderr merged) to on_line.

    should_stop is polled while the command runs; when it returns a reason the whole process
    group is killed (a cancelled or timed-out build must not keep BuildKit busy) and
    StreamStopped is raised with that reason. Returns the exit code otherwise.
    """
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(env),
        start_new_session=True,
    )
    stopped: list[str] = []

    def watch() -> None:
        # Wakes the moment the command exits, so a finished build is never held back.
        while True:
            try:
                process.wait(timeout=poll_seconds)
                return
            except subprocess.TimeoutExpired:
                pass
            reason = should_stop()
            if reason is not None:
                stopped.append(reason)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert process.stdout is not None
    for raw in process.stdout:
        on_line(raw.decode("utf-8", errors="replace").rstrip("\n"))
    code = process.wait()
    watcher.join(timeout=poll_seconds * 2)
    if stopped:
        raise StreamStopped(stopped[0])
    return code
