"""Building a revision's image with BuildKit, keeping the whole log in a file per revision."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from builders.build_limits import BuildCgroup, BuildLimits, DiskGuard
from builders.cache_mounts import CacheMountRefused, cache_scope, namespace_cache_mounts
from builders.docker_cli import (
    BuildMethod,
    DockerCLI,
    StreamStopped,
    find_docker_cli,
    run_docker,
    stream_command,
)
from builders.engine_errors import NoSuchImage
from builders.errors import BuildCancelled, BuildError, EngineError
from manifests.errors import Annotation, ConfigError
from manifests.recipes import BuildPlan

PRUNE_TIMEOUT_SECONDS = 600
INFO_TIMEOUT_SECONDS = 30
OOM_EXIT = "]: exit code: 137"
"""How BuildKit reports a RUN step killed by SIGKILL (the OOM killer, at the build bound)."""
CACHE_NAMESPACE_ARG = "BUILDKIT_CACHE_MOUNT_NS"
"""Build argument the Dockerfile frontend prefixes every cache mount id with: it also covers
cache mounts a Dockerfile cannot show (ONBUILD triggers of a base image)."""


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    method: str
    seconds: float


RETAG_TIMEOUT_SECONDS = 60


class BuildKitBuilder:
    """The image builder port's real implementation."""

    def __init__(
        self,
        docker_binary: str | None = None,
        limits: BuildLimits | None = None,
        cgroup: BuildCgroup | None = None,
    ) -> None:
        self._docker_binary = docker_binary
        self._limits = limits
        self._cgroup = cgroup or BuildCgroup()
        self._engine_root: Path | None = None
        self._disk_guard: DiskGuard | None = None
        self._guard_lock = threading.Lock()

    @property
    def cli(self) -> DockerCLI:
        return find_docker_cli(self._docker_binary)

    def prune_cache(self, keep_bytes: int) -> None:
        """Shrink BuildKit's cache to `keep_bytes`, oldest first (the rest stays warm)."""
        cli = self.cli
        verb = ["buildx", "prune"] if cli.method is BuildMethod.buildx else ["builder", "prune"]
        argv = [cli.binary, *verb, "--force", "--keep-storage", str(keep_bytes)]
        try:
            run_docker(argv, timeout=PRUNE_TIMEOUT_SECONDS, env={"DOCKER_BUILDKIT": "1"})
        except EngineError as exc:
            raise BuildError(f"the build cache could not be pruned: {exc}") from exc

    def labels(self, image: str) -> dict[str, str] | None:
        """The image's labels; None when the engine has no such image."""
        argv = [self.cli.binary, "image", "inspect", "--format", "{{json .Config.Labels}}", image]
        try:
            inspected = run_docker(argv, timeout=RETAG_TIMEOUT_SECONDS)
        except NoSuchImage:
            return None
        except EngineError as exc:
            raise BuildError(f"the image {image} could not be inspected: {exc}") from exc
        labels = json.loads(inspected or "null") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def retag(self, source: str, tag: str) -> dict[str, str] | None:
        """`source` tagged `tag` too; its labels, or None when the engine has no such image."""
        labels = self.labels(source)
        if labels is None:
            return None
        try:
            run_docker([self.cli.binary, "tag", source, tag], timeout=RETAG_TIMEOUT_SECONDS)
        except NoSuchImage:
            return None  # removed since it was inspected
        except EngineError as exc:
            raise BuildError(f"the image {source} could not be tagged: {exc}") from exc
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
        redact: Callable[[str], str] | None = None,
    ) -> BuiltImage:
        """Every line reaches the log through `redact`: a build runs the tenant's code, which
        may print whatever it finds."""
        cli = self.cli
        # The image id comes back in a file: cheaper than asking the engine after the build.
        iidfile = log_path.with_suffix(".iid")
        iidfile.unlink(missing_ok=True)
        scoped = log_path.with_suffix(".Dockerfile")
        scope = cache_scope(plan.cache_scope) if plan.cache_scope else None
        if scope is not None:
            plan = _with_scoped_cache(plan, scope, scoped)
        argv, env = _build_command(cli, plan, tag, labels, iidfile, scope)
        started = time.monotonic()
        deadline = started + timeout_seconds
        limits = self._limits
        guard = self._guard()

        def should_stop() -> str | None:
            if cancelled():
                return "cancelled"
            if time.monotonic() > deadline:
                return "timeout"
            if guard is not None:
                guard.check()  # may kill a step that fills the disk, of this build or another
            return None

        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log:
            killed: list[str] = []

            def write(line: str) -> None:
                if OOM_EXIT in line:
                    killed.append(line)
                log.write((redact(line) if redact is not None else line) + "\n")
                log.flush()

            write(f"slipway: building {tag} with {cli.describe()}")
            write(f"slipway: recipe {plan.recipe}, Dockerfile {plan.dockerfile_path}")
            if limits is not None:
                problem = self._cgroup.apply(limits)
                write(
                    f"slipway: {problem}"
                    if problem is not None
                    else f"slipway: builds share at most {limits.cpus:g} CPU and "
                    f"{limits.memory_bytes // 1024**2} MiB of memory"
                )
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
            finally:
                scoped.unlink(missing_ok=True)
                scoped.with_name(f"{scoped.name}.dockerignore").unlink(missing_ok=True)
            seconds = time.monotonic() - started
            if code != 0:
                write(f"slipway: build failed (exit code {code}) after {seconds:.1f} s")
                if (
                    limits is not None
                    and killed
                    and guard is not None
                    and guard.killed_since(started)
                ):
                    reserve = limits.disk_reserve_bytes // 1024**2
                    write("slipway: a build step was stopped: it filled the disk")
                    raise BuildError(
                        f"a build step was stopped: it filled the disk (less than {reserve} MiB "
                        "left). Write less in RUN steps, or clean up in the same step"
                    )
                if limits is not None and killed:
                    # The kernel's v1 counters (failcnt, oom_kill) of the build cgroup stay at
                    # 0 here when a step's own cgroup is killed: SIGKILL is the sign.
                    megabytes = limits.memory_bytes // 1024**2
                    raise BuildError(
                        "a build step was killed (exit code 137): it most likely ran out of "
                        f"memory, as builds may use at most {megabytes} MiB "
                        "(SLIPWAY_BUILD_MEMORY_BYTES)"
                    )
                raise BuildError(f"the Docker build failed (exit code {code})")
            try:
                image_id = iidfile.read_text().strip()
                iidfile.unlink()
            except OSError as exc:
                raise BuildError(f"the build finished but reported no image id: {exc}") from exc
            write(f"slipway: built {tag} ({image_id[:19]}) in {seconds:.1f} s")
        return BuiltImage(tag=tag, image_id=image_id, method=cli.method.value, seconds=seconds)

    def _guard(self) -> DiskGuard | None:
        """One per builder: the builds of this process share it (see DiskGuard)."""
        if self._limits is None:
            return None
        with self._guard_lock:
            return self._make_guard(self._limits)

    def _make_guard(self, limits: BuildLimits) -> DiskGuard | None:
        if self._disk_guard is None:
            root = self._docker_root()
            if root is None:
                return None
            self._disk_guard = DiskGuard(root, limits.disk_reserve_bytes)
        return self._disk_guard

    def _docker_root(self) -> Path | None:
        """Where the engine keeps images and build snapshots, when it is on this machine."""
        if self._engine_root is None:
            try:
                info = run_docker(
                    [self.cli.binary, "info", "--format", "{{.DockerRootDir}}"],
                    timeout=INFO_TIMEOUT_SECONDS,
                )
            except EngineError:
                return None
            root = Path(info.strip())
            if not root.is_absolute() or not root.is_dir():
                return None
            self._engine_root = root
        return self._engine_root


def _with_scoped_cache(plan: BuildPlan, scope: str, path: Path) -> BuildPlan:
    """The plan with its Dockerfile's cache mounts under the repository's scope (written to
    `path`, outside the build context)."""
    text = plan.dockerfile.read_text(encoding="utf-8", errors="replace")
    try:
        scoped = namespace_cache_mounts(text, scope)
    except CacheMountRefused as refused:
        message = f"{plan.dockerfile_path}: {refused}"
        annotations = (
            (Annotation(plan.dockerfile_path, refused.line, refused.line, refused.message),)
            if plan.recipe == "dockerfile"
            else ()
        )
        raise ConfigError(message, annotations=annotations) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scoped, encoding="utf-8")
    # BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile before the context's.
    own_ignore = plan.dockerfile.with_name(f"{plan.dockerfile.name}.dockerignore")
    ignore = path.with_name(f"{path.name}.dockerignore")
    if own_ignore.is_file() and not own_ignore.is_symlink():
        shutil.copyfile(own_ignore, ignore)
    else:
        ignore.unlink(missing_ok=True)
    return replace(plan, dockerfile=path)


def _build_command(
    cli: DockerCLI,
    plan: BuildPlan,
    tag: str,
    labels: dict[str, str],
    iidfile: Path,
    scope: str | None = None,
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
        *(["--build-arg", f"{CACHE_NAMESPACE_ARG}={scope}"] if scope else []),
        str(plan.context_dir),
    ]
    if cli.method is BuildMethod.buildx:
        return [cli.binary, "buildx", "build", "--load", *common], {}
    return [cli.binary, "build", *common], {"DOCKER_BUILDKIT": "1"}
