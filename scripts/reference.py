"""The reference pages written from code, so a setting or a `slipway.toml` key and its
documentation cannot drift apart.

    python -m scripts.reference           # (or `make docs`) write docs/configuration.md and
                                          # docs/slipway.schema.json
    python -m scripts.reference --check   # exit 1 naming each page that is not what it writes

`docs/configuration.md` is written from `app.kernel.settings.Settings` (each field's docstring
is its description) and `docs/slipway.schema.json` from `manifests.config.RepositoryConfig`;
tests/unit/test_docs.py fails when either file differs from what this module writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AnyHttpUrl, SecretStr
from pydantic.fields import FieldInfo

from app.kernel.settings import ENV_PREFIX, Settings
from manifests.config import CONFIG_FILE, RepositoryConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_PAGE = Path("docs/configuration.md")
SCHEMA_FILE = Path("docs/slipway.schema.json")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The dialect pydantic writes; editors need it named to validate with the right rules."""


class UndocumentedError(RuntimeError):
    """A setting cannot be documented (it has no docstring); the message names it."""


# -- docs/configuration.md -------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    title: str
    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def matches(self, field: str) -> bool:
        return field in self.names or field.startswith(self.prefixes)


SECTIONS = (
    Section("GitHub App", prefixes=("github_",)),
    Section(
        "Where state lives and the services Slipway runs",
        names=(
            "data_dir",
            "database_url",
            "redis_url",
            "postgres_admin_url",
            "postgres_container_host",
            "caddy_admin_url",
            "secret_key",
        ),
    ),
    Section(
        "Addresses",
        names=("host", "port", "base_domain", "public_url"),
        prefixes=("router_",),
    ),
    Section(
        "Work and capacity",
        names=(
            "api_workers",
            "worker_max_jobs",
            "max_concurrent_builds",
            "max_previews_per_repository",
            "recovery_seconds",
        ),
    ),
    Section(
        "LangGraph builds",
        prefixes=("langgraph_", "build_pip_", "build_index_proxy_"),
    ),
    Section(
        "Builds",
        names=("docker_binary", "keep_build_logs"),
        prefixes=("build_", "source_"),
    ),
    Section(
        "Replicas",
        names=("health_timeout_seconds", "holder_reserve"),
        prefixes=("container_",),
    ),
    Section(
        "Rollouts and autoscaling",
        names=("reconcile_resync_seconds", "drain_timeout_seconds"),
        prefixes=("autoscale_",),
    ),
    Section("Deployment databases", prefixes=("database_",)),
    Section(
        "Links, names and retention",
        names=("link_lifetime_days", "slug_hold_days", "delivery_payload_retention_days"),
        prefixes=("log_follow",),
    ),
    Section("Network policy", prefixes=("network_policy",)),
    Section("Notifications", prefixes=("notify",)),
)
"""Sections in page order; a field goes to the first that matches it, rows in the order the
Settings model declares them. A field no section matches goes to "Other settings"."""
OTHER = "Other settings"

PAGE_HEAD = f"""\
<!-- Written by `make docs` (python -m scripts.reference) from app/kernel/settings.py: edit the
docstrings there, then run it again. tests/unit/test_docs.py fails when this file differs. -->
# Configuration reference

Every setting is an environment variable with the `{ENV_PREFIX}` prefix, or a line of a `.env`
file in the directory Slipway starts in (the environment wins over `.env`). Settings are read
once, at start: change one, then restart `make up`. A missing or malformed value stops
start-up with a message naming the variable; `slipway check` validates the settings and exits.

"unset" means the setting has no value of its own: its description says what Slipway does
then. Secrets' values are never shown here. Sizes are in bytes, durations in seconds unless
the name says days.

"""


def settings_reference() -> str:
    """docs/configuration.md: one table per section, one row per setting."""
    sections: dict[str, list[str]] = {section.title: [] for section in SECTIONS}
    sections[OTHER] = []
    for name, field in Settings.model_fields.items():
        title = next((s.title for s in SECTIONS if s.matches(name)), OTHER)
        sections[title].append(_row(name, field))
    parts = [PAGE_HEAD]
    for title, rows in sections.items():
        if not rows:
            continue
        parts.append(f"## {title}\n\n| variable | type | default | what it does |\n")
        parts.append("| --- | --- | --- | --- |\n")
        parts.extend(rows)
        parts.append("\n")
    return "".join(parts).rstrip("\n") + "\n"


def _row(name: str, field: FieldInfo) -> str:
    if not field.description:
        raise UndocumentedError(
            f"{ENV_PREFIX}{name.upper()} has no docstring in app/kernel/settings.py: give "
            "the field one (it is the setting's description in docs/configuration.md)"
        )
    variable = f"`{ENV_PREFIX}{name.upper()}`"
    kind, bounds = _kind(field.annotation)
    bounds = [*bounds, *_bounds(field.metadata)]
    type_text = kind + (f" ({', '.join(bounds)})" if bounds else "")
    cells = [variable, type_text, _default(name, field), _text(field.description)]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |\n"


def _kind(annotation: Any) -> tuple[str, list[str]]:
    """A reader's name for a field's type, and any bounds carried inside its annotation."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(present) == 1:
            return _kind(present[0])
    if origin is Annotated:
        inner, *extras = get_args(annotation)
        kind, bounds = _kind(inner)
        for extra in extras:
            if isinstance(extra, FieldInfo):
                bounds = [*bounds, *_bounds(extra.metadata)]
        return kind, bounds
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation)), []
    if origin is tuple:
        (item, *_rest) = get_args(annotation)
        return ("comma-separated integers" if item is int else "comma-separated list"), []
    names: dict[Any, str] = {
        bool: "`true` or `false`",
        int: "integer",
        float: "number",
        str: "text",
        Path: "path",
        AnyHttpUrl: "URL",
        SecretStr: "secret",
        IPv4Network: "IPv4 network (CIDR)",
    }
    if annotation in names:
        return names[annotation], []
    raise UndocumentedError(f"no reader's name for the type {annotation!r}: add it to _kind")


def _bounds(metadata: Iterable[object]) -> list[str]:
    symbols = {
        annotated_types.Gt: ("gt", ">"),
        annotated_types.Ge: ("ge", "≥"),
        annotated_types.Lt: ("lt", "<"),
        annotated_types.Le: ("le", "≤"),
    }
    found = []
    for item in metadata:
        for kind, (attribute, symbol) in symbols.items():
            if isinstance(item, kind):
                found.append(f"{symbol} {_number(getattr(item, attribute))}")
    return found


def _default(name: str, field: FieldInfo) -> str:
    if _is_secret(field.annotation):
        return "—"  # a secret's value is never written into the documentation
    value = field.get_default(call_default_factory=True)
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        shown = f"`{_number(value)}`"
        if name.endswith("_bytes") and isinstance(value, int):
            shown += f" ({_size(value)})"
        return shown
    if isinstance(value, AnyHttpUrl):
        return f"`{str(value).rstrip('/')}`"
    return f"`{value}`"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _size(value: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor} {unit}"
    return f"{value} bytes"


def _text(description: str) -> str:
    """A docstring as one paragraph: its line breaks are the source's wrapping, not the
    reader's."""
    return re.sub(r"\s+", " ", description).strip()


def _cell(text: str) -> str:
    """Markdown for a table cell: outside `code`, <slug> would be taken for an HTML tag and
    *.domain for emphasis; a | anywhere would end the cell."""
    parts = re.split(r"(`[^`]*`)", text)
    for index in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[index] = re.sub(r"([<>*])", r"\\\1", parts[index])
    return "".join(parts).replace("|", "\\|")


# -- docs/slipway.schema.json ----------------------------------------------------------------


def repository_config_schema() -> str:
    """The JSON schema of slipway.toml, for editors (Taplo, Tombi, any JSON-schema aware one)."""
    schema = _for_toml(RepositoryConfig.model_json_schema())
    schema = {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": CONFIG_FILE}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _for_toml(node: Any) -> Any:
    """TOML has no null: a key that may be None is a key that may be left out, so the null
    branch and the null default go; descriptions lose the source's line wrapping."""
    if isinstance(node, list):
        return [_for_toml(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _for_toml(value) for key, value in node.items()}
    branches = node.get("anyOf")
    if isinstance(branches, list):
        kept = [branch for branch in branches if branch != {"type": "null"}]
        if len(kept) == 1:
            del node["anyOf"]
            node = {**kept[0], **node}
    if "default" in node and node["default"] is None:
        del node["default"]
    if isinstance(node.get("description"), str):
        node["description"] = _paragraphs(node["description"])
    return node


def _paragraphs(text: str) -> str:
    return "\n\n".join(_text(part) for part in re.split(r"\n\s*\n", text.strip()))


# -- writing and checking ----------------------------------------------------------------


def pages() -> dict[Path, str]:
    """Every generated file, by its path from the repository root, with what it must hold."""
    return {
        CONFIGURATION_PAGE: settings_reference(),
        SCHEMA_FILE: repository_config_schema(),
    }


def stale(root: Path = ROOT) -> list[Path]:
    """The generated files whose content is not what this module writes."""
    return [
        path
        for path, text in pages().items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.reference", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a page is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path} is out of date: run python -m scripts.reference", file=sys.stderr)
        return 1 if out_of_date else 0
    for path, text in pages().items():
        (ROOT / path).write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
