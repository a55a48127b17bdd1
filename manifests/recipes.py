"""How a repository becomes an image: a small strategy per kind, chosen from a table.

Today the only kind is a Dockerfile; `langgraph.json` and others join RECIPES as new entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.errors import ConfigError
from manifests.config import CONFIG_FILE, RepositoryConfig


@dataclass(frozen=True)
class BuildPlan:
    """What the image builder needs: a context directory and a Dockerfile inside the source."""

    recipe: str
    context_dir: Path
    dockerfile: Path
    dockerfile_path: str
    """The Dockerfile as the user names it, relative to the repository root (for messages)."""


class Recipe(Protocol):
    name: str

    def plan(self, source_dir: Path, config: RepositoryConfig) -> BuildPlan | None:
        """A plan when this recipe applies to the source, None otherwise."""


class DockerfileRecipe:
    name = "dockerfile"

    def plan(self, source_dir: Path, config: RepositoryConfig) -> BuildPlan | None:
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


RECIPES: tuple[Recipe, ...] = (DockerfileRecipe(),)


def plan_build(source_dir: Path, config: RepositoryConfig) -> BuildPlan:
    for recipe in RECIPES:
        plan = recipe.plan(source_dir, config)
        if plan is not None:
            return plan
    raise ConfigError(
        f"no Dockerfile at '{config.build.dockerfile}' in this commit: add one at the repository "
        f"root, or set [build] dockerfile in {CONFIG_FILE} to where it is"
    )
