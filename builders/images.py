"""Building a revision's image with BuildKit, keeping the whole log in a file per revision."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.errors import BuildCancelled, BuildError
from builders.docker_cli import (
    BuildMethod,
    DockerCLI,
    StreamStopped,
    find_docker_cli,
    stream_command,
)
from manifests.recipes import BuildPlan

PRUNE_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    method: str
    seconds: float


RETAG_TIMEOUT_SECONDS = 60


class BuildKitBuilder:
    """The image builder port's real implementation."""

    def __init__(self, docker_binary: str | None = None) -> None:
        self._docker_binary = docker_binary

    @property
    def cli(self) -> DockerCLI:
        return find_docker_cli(self._docker_binary)

    def prune_cache(self, keep_bytes: int) -> None:
        """Shrink BuildKit's cache to `keep_bytes`, oldest first (the rest stays warm)."""
        cli = self.cli
        verb = ["buildx", "prune"] if cli.method is BuildMethod.buildx else ["builder", "prune"]
        argv = [cli.binary, *verb, "--force", "--keep-storage", str(keep_bytes)]
        env = {"DOCKER_BUILDKIT": "1"}
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=PRUNE_TIMEOUT_SECONDS,
                check=False,
                env={**os.environ, **env},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"the build cache could not be pruned: {exc}") from exc
        if result.returncode != 0:
            raise BuildError(f"the build cache could not be pruned: {result.stderr.strip()}")

    def labels(self, image: str) -> dict[str, str] | None:
        inspect = subprocess.run(
            [self.cli.binary, "image", "inspect", "--format", "{{json .Config.Labels}}", image],
            capture_output=True,
            text=True,
            timeout=RETAG_TIMEOUT_SECONDS,
            check=False,
        )
        if inspect.returncode != 0:
            if "no such image" in inspect.stderr.lower():
                return None
            raise BuildError(f"the image {image} could not be inspected: {inspect.stderr.strip()}")
        labels = json.loads(inspect.stdout or "null") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def retag(self, source: str, tag: str) -> dict[str, str] | None:
        binary = self.cli.binary
        labels = self.labels(source)
        if labels is None:
            return None
        tagged = subprocess.run(
            [binary, "tag", source, tag],
            capture_output=True,
            text=True,
            timeout=RETAG_TIMEOUT_SECONDS,
            check=False,
        )
        if tagged.returncode != 0:
            if "no such image" in tagged.stderr.lower():
                return None
            raise BuildError(f"the image {source} could not be tagged: {tagged.stderr.strip()}")
        return labels

    def build(
        self,
        plan: BuildPlan,
        tag: str,
        labels: dict[str, str],
        log_path: Path,
        *,
        cancelled: Callable[[], bool],
        timeout_seconds: float,
    ) -> BuiltImage:
        cli = self.cli
        # The image id comes back in a file: cheaper than asking the engine after the build.
        iidfile = log_path.with_suffix(".iid")
        iidfile.unlink(missing_ok=True)
        argv, env = _build_command(cli, plan, tag, labels, iidfile)
        started = time.monotonic()
        deadline = started + timeout_seconds

        def should_stop() -> str | None:
            if cancelled():
                return "cancelled"
            if time.monotonic() > deadline:
                return "timeout"
            return None

        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log:

            def write(line: str) -> None:
                log.write(line + "\n")
                log.flush()

            write(f"slipway: building {tag} with {cli.describe()}")
            write(f"slipway: recipe {plan.recipe}, Dockerfile {plan.dockerfile_path}")
            try:
                code = stream_command(argv, write, env=env, should_stop=should_stop)
            except StreamStopped as stop:
                if stop.reason == "cancelled":
                    write("slipway: build stopped: a newer revision superseded this one")
                    raise BuildCancelled("a newer revision superseded this one") from None
                write(f"slipway: build stopped after {timeout_seconds:.0f} s")
                raise BuildError(
                    f"the build took longer than {timeout_seconds:.0f} s and was stopped"
                ) from None
            except OSError as exc:
                raise BuildError(f"could not run {cli.binary}: {exc}") from exc
            seconds = time.monotonic() - started
            if code != 0:
                write(f"slipway: build failed (exit code {code}) after {seconds:.1f} s")
                raise BuildError(f"the Docker build failed (exit code {code})")
            try:
                image_id = iidfile.read_text().strip()
                iidfile.unlink()
            except OSError as exc:
                raise BuildError(f"the build finished but reported no image id: {exc}") from exc
            write(f"slipway: built {tag} ({image_id[:19]}) in {seconds:.1f} s")
        return BuiltImage(tag=tag, image_id=image_id, method=cli.method.value, seconds=seconds)


def _build_command(
    cli: DockerCLI, plan: BuildPlan, tag: str, labels: dict[str, str], iidfile: Path
) -> tuple[list[str], dict[str, str]]:
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    secret_args = [
        arg for key, path in plan.secrets.items() for arg in ("--secret", f"id={key},src={path}")
    ]
    common = [
        "--progress=plain",
        "--file",
        str(plan.dockerfile),
        "--tag",
        tag,
        "--iidfile",
        str(iidfile),
        *label_args,
        *secret_args,
        str(plan.context_dir),
    ]
    if cli.method is BuildMethod.buildx:
        return [cli.binary, "buildx", "build", "--load", *common], {}
    return [cli.binary, "build", *common], {"DOCKER_BUILDKIT": "1"}
