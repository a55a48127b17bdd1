"""The repository's own config, `slipway.toml`, optional at the repository root.

    [build]
    dockerfile = "Dockerfile"   # relative to the repository root
    context = "."               # build context, relative to the repository root
    langgraph_config_path = "langgraph.json"   # used when there is no Dockerfile

    [deploy]
    port = 8000                 # the port the app listens on (also given to it as PORT)
    health_path = "/"           # answered with any status below 500 once the app is up

    [previews]
    enabled = true              # a preview deployment for every pull request
    drafts = true               # draft pull requests too

Unknown keys are errors, so a typo is reported rather than silently ignored.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import ConfigError

CONFIG_FILE = "slipway.toml"


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a path inside the repository (no leading / and no ..)")
    return str(path)


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dockerfile: str = "Dockerfile"
    context: str = "."
    langgraph_config_path: str = "langgraph.json"
    """A LangGraph Server is built from this file when the commit has no Dockerfile (the name
    LangSmith Deployment gives the same setting)."""

    _check_paths = field_validator("dockerfile", "context", "langgraph_config_path")(_relative)


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int = Field(default=8000, ge=1, le=65535)
    health_path: str = "/"

    @field_validator("health_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("must start with / and contain no spaces, e.g. /healthz")
        return value


class PreviewsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    drafts: bool = True


class RepositoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    build: BuildConfig = Field(default_factory=BuildConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    previews: PreviewsConfig = Field(default_factory=PreviewsConfig)


PORT_LABEL = "dev.slipway.port"
HEALTH_PATH_LABEL = "dev.slipway.health-path"


def deploy_labels(deploy: DeployConfig) -> dict[str, str]:
    """How the image runs, kept on the image itself so a rollback needs no source."""
    return {PORT_LABEL: str(deploy.port), HEALTH_PATH_LABEL: deploy.health_path}


def deploy_config_of(labels: dict[str, str]) -> DeployConfig | None:
    """The deploy config an image was built with; None for one built without the labels."""
    if PORT_LABEL not in labels or HEALTH_PATH_LABEL not in labels:
        return None
    try:
        return DeployConfig(port=int(labels[PORT_LABEL]), health_path=labels[HEALTH_PATH_LABEL])
    except (ValueError, ValidationError):
        return None


def load_repository_config(source_dir: Path) -> RepositoryConfig:
    path = source_dir / CONFIG_FILE
    if not path.is_file():
        return RepositoryConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE} is not valid TOML: {exc}") from exc
    return parse_repository_config(text)


def parse_repository_config(text: str) -> RepositoryConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE} is not valid TOML: {exc}") from exc
    try:
        return RepositoryConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"{CONFIG_FILE} is invalid: {problems}") from exc
