"""The repository's own config, `slipway.toml`, optional at the repository root.

    [build]
    dockerfile = "Dockerfile"   # relative to the repository root
    context = "."               # build context, relative to the repository root
    langgraph_config_path = "langgraph.json"   # used when there is no Dockerfile

    [deploy]
    port = 8000                 # the port the app listens on (also given to it as PORT)
    health_path = "/"           # answered with any status below 500 once the app is up

    [previews]
    enabled = true              # preview deployments of pull requests
    drafts = true               # draft pull requests too
    trigger = "every-pr"        # or "label": only pull requests that carry `label`
    label = "preview"           # the label that asks for a preview (trigger = "label")
    idle_ttl = "3d"             # a preview unused this long is removed as on close (a new
                                # commit brings it back); days ("3d") or seconds ("30s")

    [scale]                     # production only; each key defaults to the platform's setting
    min = 2                     # replicas kept however quiet (default 1)
    max = 6                     # most replicas (the platform's SLIPWAY_AUTOSCALE_MAX_REPLICAS
                                # is the ceiling; asking for more gets that, with a note)
    target = 20                 # in-flight requests one replica is meant to carry

    [notify]
    urls = ["slack://…", "json://hooks.example.com/slipway"]   # apprise URLs (see
                                # manifests/notify_urls.py for what a repository may name)

Unknown keys are errors, so a typo is reported rather than silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from manifests.errors import Annotation, ConfigError
from manifests.notify_urls import check_tenant_url
from manifests.paths import SAFE_CHARACTERS, is_clean_relative

CONFIG_FILE = "slipway.toml"
MAX_LABEL_LENGTH = 50
"""GitHub's own limit on a label's name."""
IDLE_TTL = re.compile(r"(?P<amount>[1-9][0-9]{0,6})(?P<unit>[dhms])")
IDLE_TTL_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
MAX_IDLE_TTL_DAYS = 3650


def idle_ttl_seconds(idle_ttl: str, day_seconds: float = 86400.0) -> float:
    """`[previews] idle_ttl` in seconds: a day ("d") is the platform's idle-rule day
    (SLIPWAY_IDLE_DAY_SECONDS, 86400 unless an operator's tests shorten it), so an e2e test
    counts days in seconds as the idle rules do; hours, minutes and seconds are the clock's."""
    match = IDLE_TTL.fullmatch(idle_ttl)
    if match is None:
        raise ValueError(f"not a duration: {idle_ttl!r}")
    amount, unit = int(match["amount"]), match["unit"]
    if unit == "d":
        return amount * day_seconds
    return float(amount * {"h": 3600, "m": 60, "s": 1}[unit])


def describe_idle_ttl(idle_ttl: str) -> str:
    """ "3d" → "3 days", "1h" → "1 hour": for the pull request's comment."""
    match = IDLE_TTL.fullmatch(idle_ttl)
    if match is None:
        return idle_ttl
    amount, unit = int(match["amount"]), IDLE_TTL_UNITS[match["unit"]]
    return f"{amount} {unit if amount != 1 else unit[:-1]}"


def _relative(value: str) -> str:
    if not is_clean_relative(value):
        raise ValueError(
            f"must be a path inside the repository of {SAFE_CHARACTERS} (no leading /, no ..)"
        )
    return str(PurePosixPath(value))


# Each key's docstring is its description in docs/slipway.schema.json, which editors show
# beside the key (python -m scripts.reference writes the schema from these models).
DOCUMENTED = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class BuildConfig(BaseModel):
    """How the image is built."""

    model_config = DOCUMENTED

    dockerfile: str = "Dockerfile"
    """The Dockerfile, relative to the repository root."""
    context: str = "."
    """The build context, relative to the repository root."""
    langgraph_config_path: str = "langgraph.json"
    """A LangGraph Server is built from this file when the commit has no Dockerfile (the name
    LangSmith Deployment gives the same setting)."""

    _check_paths = field_validator("dockerfile", "context", "langgraph_config_path")(_relative)


class DeployConfig(BaseModel):
    """How the app runs."""

    model_config = DOCUMENTED

    port: int = Field(default=8000, ge=1, le=65535)
    """The port the app listens on, on 0.0.0.0; also given to it as PORT."""
    health_path: str = "/"
    """The path probed until the app answers it with any status below 500."""

    @field_validator("health_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("must start with / and contain no spaces, e.g. /healthz")
        return value


class PreviewsConfig(BaseModel):
    """Preview deployments of pull requests."""

    model_config = DOCUMENTED

    enabled: bool = True
    """A preview deployment for every pull request; false: none for this repository."""
    drafts: bool = True
    """Draft pull requests too; false: a draft waits until it is ready for review."""
    trigger: Literal["every-pr", "label"] = "every-pr"
    """`every-pr`: every pull request gets a preview. `label`: only a pull request that carries
    `label`, for as long as it carries it (taking the label off removes the preview as closing
    the pull request does; labelling it again brings a new one)."""
    label: str = "preview"
    """The label that asks for a preview when `trigger = "label"`, and that brings back a
    preview removed by `idle_ttl` under either trigger (matched as GitHub matches label names:
    case aside)."""
    idle_ttl: str | None = None
    """Remove a preview nobody used for this long (no request through the router, no trace),
    as closing the pull request removes it: "3d" (days), "12h", "30m" or "30s". A new commit
    pushed to the pull request, or `label` put on it (taken off and put on again if it carries
    it), brings it back. Left out: a preview stays as long as its pull request is open."""

    @field_validator("idle_ttl", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or IDLE_TTL.fullmatch(value) is None:
            raise ValueError(
                f"{value!r} is not a duration: a whole number and a unit, d (days), h (hours), "
                'm (minutes) or s (seconds), e.g. "3d" or "30s"'
            )
        if idle_ttl_seconds(value) > MAX_IDLE_TTL_DAYS * 86400:
            raise ValueError(
                f"{value!r} is longer than {MAX_IDLE_TTL_DAYS} days; leave idle_ttl out to "
                "keep previews while their pull request is open"
            )
        return value

    @field_validator("label")
    @classmethod
    def _label_name(cls, value: str) -> str:
        if not value.strip() or value != value.strip() or len(value) > MAX_LABEL_LENGTH:
            raise ValueError(
                f"must be a GitHub label's name: 1 to {MAX_LABEL_LENGTH} characters, "
                "no space at either end"
            )
        return value


class ScaleConfig(BaseModel):
    """How far a production deployment may scale; a key left out leaves the platform's setting.

    Whole numbers only (strict): `max = "4"` or `min = 1.5` is a mistake worth reporting.
    """

    model_config = DOCUMENTED

    min: int | None = Field(default=None, ge=1, strict=True)
    """Fewest replicas, however quiet (default 1)."""
    max: int | None = Field(default=None, ge=1, strict=True)
    """Most replicas; the platform's SLIPWAY_AUTOSCALE_MAX_REPLICAS is the ceiling, and asking
    for more gets that, with a note."""
    target: float | None = Field(default=None, gt=0, le=10_000, strict=True)
    """In-flight requests one replica is meant to carry: replaces the platform's
    SLIPWAY_AUTOSCALE_TARGET_CONCURRENCY for this repository, within the same limits."""

    @model_validator(mode="after")
    def _min_not_above_max(self) -> ScaleConfig:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min ({self.min}) is above max ({self.max}): min is the fewest replicas, "
                "max the most"
            )
        return self


MAX_NOTIFY_URLS = 10


class NotifyConfig(BaseModel):
    """Where this repository's deployments send notifications (a failed revision, a crash
    loop, unhealthy and recovered, a rollback, a delete), besides the operator's channels."""

    model_config = DOCUMENTED

    urls: list[str] = Field(default_factory=list, max_length=MAX_NOTIFY_URLS)
    """Apprise URLs: json:// or jsons:// webhooks, mailto:// or mailtos:// email, slack://,
    discord://, msteams://, tgram://, ntfy://, ... (docs/notifications.md lists the schemes a
    repository may use). Public hosts only. They carry tokens: Slipway stores them encrypted
    and never shows them."""

    @field_validator("urls")
    @classmethod
    def _allowed(cls, urls: list[str]) -> list[str]:
        checked = []
        for number, url in enumerate(urls, start=1):
            try:
                checked.append(check_tenant_url(url))
            except ValueError as exc:
                raise ValueError(f"URL {number}: {exc}") from None
        return checked


class RepositoryConfig(BaseModel):
    """slipway.toml, optional at the repository root: how Slipway builds and runs it."""

    model_config = DOCUMENTED

    build: BuildConfig = Field(default_factory=BuildConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    previews: PreviewsConfig = Field(default_factory=PreviewsConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    """Production only (development deployments and previews run one replica); each key
    optional."""
    notify: NotifyConfig = Field(default_factory=NotifyConfig)


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


SCALE_MIN_LABEL = "dev.slipway.scale-min"
SCALE_MAX_LABEL = "dev.slipway.scale-max"
SCALE_TARGET_LABEL = "dev.slipway.scale-target"


def scale_labels(scale: ScaleConfig) -> dict[str, str]:
    """The [scale] an image was built with, kept on it so a rollback scales as that commit
    asked; only the keys the repository set, so the others follow the platform's settings."""
    values = {SCALE_MIN_LABEL: scale.min, SCALE_MAX_LABEL: scale.max}
    labels = {key: str(value) for key, value in values.items() if value is not None}
    if scale.target is not None:
        labels[SCALE_TARGET_LABEL] = repr(scale.target)
    return labels


def scale_config_of(labels: dict[str, str]) -> ScaleConfig | None:
    """The [scale] an image was built with; None for one built without it (or with labels
    edited into nonsense), which leaves every bound to the platform's settings."""
    keys = (SCALE_MIN_LABEL, SCALE_MAX_LABEL, SCALE_TARGET_LABEL)
    min_replicas, max_replicas, target = (labels.get(key) for key in keys)
    if min_replicas is None and max_replicas is None and target is None:
        return None
    try:
        return ScaleConfig(
            min=None if min_replicas is None else int(min_replicas),
            max=None if max_replicas is None else int(max_replicas),
            target=None if target is None else float(target),
        )
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
        found = [
            (
                ".".join(str(p) for p in err["loc"]),
                err["msg"].removeprefix("Value error, "),
                _line_of(text, err["loc"]),
            )
            for err in exc.errors()
        ]
        problems = "; ".join(f"{where}: {message}" for where, message, _line in found)
        raise ConfigError(
            f"{CONFIG_FILE} is invalid: {problems}",
            annotations=tuple(
                Annotation(CONFIG_FILE, line, line, f"{where}: {message}")
                for where, message, line in found
            ),
        ) from exc


def _line_of(text: str, loc: tuple[int | str, ...]) -> int:
    """The line of the key at fault (its table's, or 1, when the key cannot be found): for the
    annotation GitHub shows beside it."""
    lines = text.splitlines()
    table = str(loc[0]) if loc else ""
    key = str(loc[-1]) if len(loc) > 1 else ""
    in_table = False
    table_line = 1
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped.strip("[] ") == table
            if in_table:
                table_line = number
            continue
        if in_table and key and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return table_line
