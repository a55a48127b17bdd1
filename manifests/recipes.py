"""How a repository becomes an image: a small strategy per kind, chosen from a table.

A Dockerfile wins when the commit has one; otherwise `langgraph.json` makes a LangGraph Server.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from manifests.config import CONFIG_FILE, DeployConfig, RepositoryConfig
from manifests.errors import Annotation, ConfigError
from manifests.langgraph import load_langgraph_project
from manifests.langgraph_image import (
    HEALTH_PATH,
    PIP_SECRET_ID,
    SERVER_PORT,
    LangGraphBuild,
    UnsupportedApiVersion,
    langgraph_dockerfile,
    server_release,
)

GENERATED_DOCKERFILE = "Dockerfile.slipway"
"""Written beside the source (never inside the build context, so COPY . cannot pick it up)."""
RECIPE_LABEL = "dev.slipway.recipe"
LANGGRAPH_RUNTIME_LABEL = "dev.slipway.langgraph-runtime"
STATE_DIR_LABEL = "dev.slipway.state-dir"
"""A directory of the image whose files are the app's state: kept on a volume of the
deployment's, so it outlives each replica (the inmem runtime's pickles)."""
INMEM_STATE_DIR = ".langgraph_api"
"""Where langgraph-runtime-inmem keeps threads, runs and checkpoints, under its working dir."""


@dataclass(frozen=True)
class BuildTarget:
    """What a recipe may need to know of where the image goes."""

    work_dir: Path
    """Private to this build and removed after it: generated files go here."""
    production: bool
    cache_scope: str | None = None
    """Builds share BuildKit cache mounts only within one scope: the repository's id."""


@dataclass(frozen=True)
class BuildPlan:
    """What the image builder needs: a context directory and a Dockerfile."""

    recipe: str
    context_dir: Path
    dockerfile: Path
    dockerfile_path: str
    """The Dockerfile as the user knows it, relative to the repository root (for messages)."""
    deploy: DeployConfig | None = None
    """How the image runs when the recipe decides it (None: the repository's slipway.toml)."""
    secrets: dict[str, Path] = field(default_factory=dict)
    """BuildKit secrets by id (files 0600 in the work dir): seen by RUN steps, in no layer."""
    labels: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    """Lines for the build log (warnings about the repository's config)."""
    cache_scope: str | None = None
    """See BuildTarget.cache_scope; None only where no tenant builds (tools, tests)."""


class Recipe(Protocol):
    name: str

    def plan(
        self, source_dir: Path, config: RepositoryConfig, target: BuildTarget
    ) -> BuildPlan | None:
        """A plan when this recipe applies to the source, None otherwise."""


class DockerfileRecipe:
    name = "dockerfile"

    def plan(
        self, source_dir: Path, config: RepositoryConfig, target: BuildTarget
    ) -> BuildPlan | None:
        dockerfile = source_dir / config.build.dockerfile
        if not dockerfile.is_file():
            return None
        context_dir = source_dir / config.build.context
        if not context_dir.is_dir():
            raise ConfigError(
                f"build context '{config.build.context}' (from {CONFIG_FILE}) is not a "
                "directory in the repository"
            )
        return BuildPlan(
            recipe=self.name,
            context_dir=context_dir,
            dockerfile=dockerfile,
            dockerfile_path=config.build.dockerfile,
        )


class LangGraphRecipe:
    """`langgraph.json` → a LangGraph Server image on the operator's base and package index."""

    name = "langgraph"

    def __init__(self, build: LangGraphBuild) -> None:
        self._build = build

    def plan(
        self, source_dir: Path, config: RepositoryConfig, target: BuildTarget
    ) -> BuildPlan | None:
        config_path = config.build.langgraph_config_path
        if not (source_dir / config_path).is_file():
            return None
        project = load_langgraph_project(source_dir, config_path)
        runtime = self._build.runtime_for(production=target.production)
        if runtime == "pg" and "app" in json.loads(project.server_env.get("LANGGRAPH_HTTP", "{}")):
            raise _custom_app_on_pg(source_dir, config_path)
        try:
            release = server_release(project.api_version, runtime)
        except UnsupportedApiVersion as exc:
            raise _unsupported_api_version(source_dir, config_path, exc) from None
        dockerfile = target.work_dir / GENERATED_DOCKERFILE
        dockerfile.write_text(
            langgraph_dockerfile(
                project,
                base_image=self._build.base_for(project),
                runtime=runtime,
                release=release,
            ),
            encoding="utf-8",
        )
        secrets: dict[str, Path] = {}
        pip = self._build.pip_for_builds()
        if pip.carries_credentials():
            # The build runs the tenant's code: it could print whatever it is given.
            raise ConfigError(
                "the package index URL carries credentials and no pass-through was set up to "
                "keep them out of the build (SLIPWAY_BUILD_PIP_INDEX_URL)"
            )
        pip_config = pip.config_file()
        if pip_config is not None:
            path = target.work_dir / "pip.conf"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(pip_config)
            secrets[PIP_SECRET_ID] = path
        notes = [f"langgraph.json: {warning}" for warning in project.warnings]
        notes.append(
            "langgraph: the server is "
            + ", ".join(release.requirements(runtime))
            + (f" (api_version {project.api_version!r})" if project.api_version else "")
        )
        if runtime != self._build.runtime:
            notes.append(
                f"langgraph: the {self._build.runtime} runtime is for development deployments "
                f"and previews only; this production deployment uses {runtime}"
            )
        return BuildPlan(
            recipe=self.name,
            context_dir=source_dir,
            dockerfile=dockerfile,
            dockerfile_path=f"{GENERATED_DOCKERFILE} (generated from {config_path})",
            deploy=DeployConfig(port=SERVER_PORT, health_path=HEALTH_PATH),
            secrets=secrets,
            labels={
                RECIPE_LABEL: self.name,
                LANGGRAPH_RUNTIME_LABEL: runtime,
                **(
                    {STATE_DIR_LABEL: f"{project.workdir}/{INMEM_STATE_DIR}"}
                    if runtime == "inmem"
                    else {}
                ),
            },
            notes=tuple(notes),
        )


def langgraph_runtime_of(labels: dict[str, str]) -> str | None:
    """The LangGraph runtime an image was built for (from its labels); None when it is not a
    LangGraph Server, so it needs no Redis of its own."""
    if labels.get(RECIPE_LABEL) != LangGraphRecipe.name:
        return None
    return labels.get(LANGGRAPH_RUNTIME_LABEL, "pg")


def _custom_app_on_pg(source_dir: Path, config_path: str) -> ConfigError:
    """langgraph-api 0.11.1 (the one langgraph-runtime-pg pins) runs the store middleware of
    an `http.app` at its lifespan start, before the runtime has opened its pool: the server
    then answers 500 to everything, /ok too. Said before a build, not after a health timeout."""
    text = (source_dir / config_path).read_text(encoding="utf-8", errors="replace")
    line = next((n for n, row in enumerate(text.splitlines(), 1) if '"app"' in row), 1)
    message = (
        "http.app (custom routes) does not start on the pg runtime that production deployments "
        "use: langgraph-api 0.11.1, which langgraph-runtime-pg needs, fails at start with it "
        "and answers 500 to every request. Remove http.app, or use it on a development "
        "deployment or preview with SLIPWAY_LANGGRAPH_RUNTIME=inmem"
    )
    return ConfigError(
        f"{config_path}: {message}",
        annotations=(Annotation(config_path, line, line, message, title="http.app on pg"),),
    )


def _unsupported_api_version(
    source_dir: Path, config_path: str, exc: UnsupportedApiVersion
) -> ConfigError:
    """Said before a build, on the line of `api_version`, with the versions that would do."""
    text = (source_dir / config_path).read_text(encoding="utf-8", errors="replace")
    line = next((n for n, row in enumerate(text.splitlines(), 1) if '"api_version"' in row), 1)
    message = f"{exc}. Change api_version, or remove it for the default"
    return ConfigError(
        f"{config_path}: {message}",
        annotations=(
            Annotation(config_path, line, line, message, title="api_version not available"),
        ),
    )


def state_dir_of(labels: dict[str, str]) -> str | None:
    """The directory an image keeps its state in, if any (see STATE_DIR_LABEL)."""
    return labels.get(STATE_DIR_LABEL) or None


def default_recipes(langgraph: LangGraphBuild | None = None) -> tuple[Recipe, ...]:
    """In order of precedence: a Dockerfile the user wrote beats a generated one."""
    return (DockerfileRecipe(), LangGraphRecipe(langgraph or LangGraphBuild()))


def plan_build(
    source_dir: Path,
    config: RepositoryConfig,
    target: BuildTarget | None = None,
    recipes: tuple[Recipe, ...] | None = None,
) -> BuildPlan:
    target = target or BuildTarget(work_dir=source_dir.parent, production=False)
    for recipe in recipes if recipes is not None else default_recipes():
        plan = recipe.plan(source_dir, config, target)
        if plan is not None:
            return replace(plan, cache_scope=target.cache_scope)
    raise ConfigError(
        f"no Dockerfile at '{config.build.dockerfile}' and no "
        f"'{config.build.langgraph_config_path}' in this commit: add a Dockerfile at the "
        f"repository root (or set [build] dockerfile in {CONFIG_FILE} to where it is), or a "
        "langgraph.json to deploy a LangGraph Server"
    )
