"""A LangGraph repository: `langgraph.json` read and checked before any build.

The file is validated by langgraph-cli's own `validate_config` (the rules LangGraph's tools
apply), then Slipway checks what that function leaves to build time: that every graph path
exists inside the repository and names a module-level attribute, that `python_version` is one
an image can be built for, and that local dependencies exist. Every problem found becomes an
annotation on the line of `langgraph.json` (or of the graph file) it is about, so a user sees
it on the commit in GitHub instead of in a build log.

Paths are mapped the way the CLI maps them for its images, onto one layout: the repository is
copied to APP_DIR, so `./agent.py:graph` beside `langgraph.json` becomes
`/deps/app/agent.py:graph` in LANGSERVE_GRAPHS.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dotenv import dotenv_values

from manifests.errors import Annotation, ConfigError
from manifests.paths import SAFE_CHARACTERS, is_clean_relative

LANGGRAPH_CONFIG = "langgraph.json"
APP_DIR = "/deps/app"
"""Where the repository is copied in the image (the CLI's /deps/<name> layout, one name)."""
SUPPORTED_PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
"""What langgraph-api supports (the CLI's minimum is 3.11) and official slim images exist for."""
JAVASCRIPT_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".tsx", ".jsx")
PATH_KEYS = (("auth", "path"), ("encryption", "path"), ("priority", "path"))
"""Import paths besides the graphs that name a local file, as (section, key)."""
SERVER_ENV = (
    ("store", "LANGGRAPH_STORE"),
    ("auth", "LANGGRAPH_AUTH"),
    ("encryption", "LANGGRAPH_ENCRYPTION"),
    ("priority", "LANGGRAPH_PRIORITY"),
    ("http", "LANGGRAPH_HTTP"),
    ("webhooks", "LANGGRAPH_WEBHOOKS"),
    ("checkpointer", "LANGGRAPH_CHECKPOINTER"),
    ("ui", "LANGGRAPH_UI"),
    ("ui_config", "LANGGRAPH_UI_CONFIG"),
)
"""Config sections and the variable langgraph-api reads each from, as the CLI's images set
them (`_build_runtime_env_vars` in langgraph_cli/config.py); LANGSERVE_GRAPHS comes last."""
UNSUPPORTED = {
    "source": "uv-based source management is not supported yet: list `dependencies` instead",
    "node_version": "JavaScript graphs are not supported yet",
    "pip_config_file": "the operator's package index settings are used for every build",
}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class LocalDependency:
    """A dependency entry starting with "." (a directory of the repository)."""

    path: str
    """Relative to the repository root, POSIX ('.' for the root)."""
    is_package: bool
    """Has a pyproject.toml or setup.py: pip installs it; otherwise it goes on PYTHONPATH."""
    requirements: str | None = None
    """Its requirements.txt, relative to the repository root, when it is not a package."""
    package_requirements: tuple[str, ...] = ()
    """[project].dependencies of its pyproject.toml, installed before the source is copied so
    that a code change does not reinstall them."""
    import_root: str = "."
    """What goes on PYTHONPATH for a directory: its parent when it is a flat package (has an
    __init__.py), itself otherwise (the CLI's flat and src layouts)."""


@dataclass(frozen=True)
class LangGraphProject:
    config_path: str
    """Relative to the repository root."""
    python_version: str
    pypi_dependencies: tuple[str, ...]
    local_dependencies: tuple[LocalDependency, ...]
    dockerfile_lines: tuple[str, ...]
    server_env: dict[str, str]
    """LANGSERVE_GRAPHS and the other variables langgraph-api reads its config from."""
    env: dict[str, str] = field(repr=False)
    """The `env` of langgraph.json (inline, or read from the .env file it names)."""
    workdir: str = APP_DIR
    warnings: tuple[str, ...] = ()
    """Said in the build log: unknown keys, ignored settings."""
    api_version: str | None = None
    """langgraph.json's `api_version`: which langgraph-api the image runs (the recipe checks it
    against the runtime, which it alone knows)."""


class _Problems:
    """Collects every problem of one langgraph.json, so a user fixes them all in one push."""

    def __init__(self, config_path: str, text: str) -> None:
        self.config_path = config_path
        self.text = text
        self.annotations: list[Annotation] = []

    def add(self, message: str, *, line: int | None = None, path: str | None = None) -> None:
        self.annotations.append(
            Annotation(
                path=path or self.config_path,
                start_line=line or 1,
                end_line=line or 1,
                message=message,
                title=f"{self.config_path} is invalid" if path is None else None,
            )
        )

    def line_of(self, *needles: str) -> int:
        """The first line holding the first needle found (a JSON key or value); 1 if none."""
        for needle in needles:
            at = self.text.find(needle)
            if at >= 0:
                return self.text.count("\n", 0, at) + 1
        return 1

    def key_line(self, key: str) -> int:
        return self.line_of(json.dumps(key) + ":", json.dumps(key))

    def raise_if_any(self) -> None:
        if not self.annotations:
            return
        first = self.annotations[0]
        more = len(self.annotations) - 1
        summary = f"{first.path}:{first.start_line}: {first.message}"
        if more:
            summary += (
                f" (and {more} more problem{'s' if more > 1 else ''}, annotated on the commit)"
            )
        raise ConfigError(summary, annotations=tuple(self.annotations))


def has_langgraph_config(source_dir: Path, config_path: str) -> bool:
    return (source_dir / config_path).is_file()


def load_langgraph_project(source_dir: Path, config_path: str) -> LangGraphProject:
    """Read and check the repository's langgraph.json; ConfigError with annotations if wrong."""
    file = source_dir / config_path
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{config_path} is not UTF-8 text",
            annotations=(Annotation(config_path, 1, 1, "not UTF-8 text"),),
        ) from None
    problems = _Problems(config_path, text)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", line=exc.lineno
        )
        problems.raise_if_any()
    if not isinstance(raw, dict):
        problems.add('must be a JSON object such as {"graphs": {...}, "dependencies": ["."]}')
        problems.raise_if_any()
    _check_shapes(raw, problems)
    problems.raise_if_any()
    for key, reason in UNSUPPORTED.items():
        if key in raw:
            problems.add(f"`{key}`: {reason}", line=problems.key_line(key))
    problems.raise_if_any()
    # Here, not at the top: langgraph-cli and click (~3 MiB) would otherwise stay in every
    # platform process at rest (the settings import this module), used only for LangGraph builds.
    import click
    from langgraph_cli.config import get_unknown_keys, validate_config

    try:
        config: dict[str, Any] = dict(validate_config(raw, source_path=file))
    except (click.UsageError, ValueError) as exc:
        message = exc.format_message() if isinstance(exc, click.UsageError) else str(exc)
        culprit = next((k for k in raw if k in message), None)
        problems.add(message.strip(), line=problems.key_line(culprit) if culprit else 1)
        problems.raise_if_any()
        raise AssertionError("unreachable: a problem was added") from exc
    warnings = [*get_unknown_keys(raw)]
    if raw.get("base_image"):
        warnings.append(
            "`base_image` is ignored: the operator's SLIPWAY_LANGGRAPH_BASE_IMAGE is used"
        )

    root = source_dir.resolve()
    config_dir = PurePosixPath(config_path).parent
    python_version = str(config.get("python_version") or SUPPORTED_PYTHON_VERSIONS[0])
    if python_version not in SUPPORTED_PYTHON_VERSIONS:
        problems.add(
            f"python_version {python_version!r} is not supported: use one of "
            f"{', '.join(SUPPORTED_PYTHON_VERSIONS)}",
            line=problems.key_line("python_version"),
        )

    api_version = config.get("api_version")
    if api_version is not None and not isinstance(api_version, str):
        problems.add(
            'api_version must be a string such as "0.11"', line=problems.key_line("api_version")
        )

    locals_ = _local_dependencies(root, config_dir, config["dependencies"], problems)
    graphs: dict[str, Any] = {}
    for graph_id, spec in config["graphs"].items():
        import_path = spec["path"] if isinstance(spec, dict) else spec
        line = problems.line_of(json.dumps(import_path), json.dumps(graph_id))
        mapped = _graph_path(root, config_dir, graph_id, import_path, locals_, problems, line)
        graphs[graph_id] = {**spec, "path": mapped} if isinstance(spec, dict) else mapped
    for section, key in PATH_KEYS:
        value = (config.get(section) or {}).get(key)
        if isinstance(value, str):
            line = problems.line_of(json.dumps(value))
            mapped = _local_import(root, config_dir, f"{section}.{key}", value, problems, line)
            config[section] = {**config[section], key: mapped}
    checkpointer = config.get("checkpointer")
    if isinstance(checkpointer, dict) and isinstance(checkpointer.get("path"), str):
        value = checkpointer["path"]
        mapped = _local_import(
            root,
            config_dir,
            "checkpointer.path",
            value,
            problems,
            problems.line_of(json.dumps(value)),
        )
        config["checkpointer"] = {**checkpointer, "path": mapped}
    http = config.get("http")
    if isinstance(http, dict) and isinstance(http.get("app"), str):
        value = http["app"]
        mapped = _local_import(
            root, config_dir, "http.app", value, problems, problems.line_of(json.dumps(value))
        )
        config["http"] = {**http, "app": mapped}
    env = _env(root, config_dir, config.get("env"), problems, warnings)
    problems.raise_if_any()

    server_env = {
        name: json.dumps(config[key]) for key, name in SERVER_ENV if config.get(key) is not None
    }
    server_env["LANGSERVE_GRAPHS"] = json.dumps(graphs)
    return LangGraphProject(
        config_path=config_path,
        python_version=python_version,
        pypi_dependencies=tuple(d for d in config["dependencies"] if not d.startswith(".")),
        local_dependencies=tuple(locals_),
        dockerfile_lines=tuple(config.get("dockerfile_lines") or ()),
        server_env=server_env,
        env=env,
        workdir=_in_image(config_dir),
        warnings=tuple(warnings),
        api_version=api_version,
    )


# -- checks -----------------------------------------------------------------------------------
def _check_shapes(raw: dict[str, Any], problems: _Problems) -> None:
    """The types Slipway relies on, checked before the CLI's validation indexes into them."""
    graphs = raw.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        problems.add(
            '`graphs` must map graph ids to import paths, e.g. {"agent": "./agent.py:graph"}',
            line=problems.key_line("graphs"),
        )
    else:
        for graph_id, spec in graphs.items():
            path = spec.get("path") if isinstance(spec, dict) else spec
            if not isinstance(path, str):
                problems.add(
                    f"graph {graph_id!r} must be an import path string or an object with a "
                    '"path", e.g. "./agent.py:graph"',
                    line=problems.line_of(json.dumps(graph_id)),
                )
    for key in ("dependencies", "dockerfile_lines"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.add(f"`{key}` must be a list of strings", line=problems.key_line(key))
    if "python_version" in raw and not isinstance(raw["python_version"], str):
        problems.add(
            '`python_version` must be a string such as "3.11"',
            line=problems.key_line("python_version"),
        )
    env = raw.get("env")
    if env is not None and not isinstance(env, str | dict):
        problems.add(
            "`env` must be the path of a .env file or an object of variables",
            line=problems.key_line("env"),
        )
    for key in ("store", "auth", "encryption", "priority", "http", "webhooks", "checkpointer"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], dict):
            problems.add(f"`{key}` must be an object", line=problems.key_line(key))


OUTSIDE = f"is outside the repository, or its path has other characters than {SAFE_CHARACTERS}"


def _inside(root: Path, config_dir: PurePosixPath, relative: str) -> PurePosixPath | None:
    """The repository-relative path of `relative` (from langgraph.json's folder), or None
    when it leaves the repository or is not a clean path of safe characters (it is written
    into the generated Dockerfile and the server's env)."""
    resolved = (root / config_dir / relative).resolve()
    try:
        inside = resolved.relative_to(root).as_posix()
    except ValueError:
        return None
    return PurePosixPath(inside) if is_clean_relative(inside) else None


def _local_dependencies(
    root: Path, config_dir: PurePosixPath, dependencies: list[str], problems: _Problems
) -> list[LocalDependency]:
    found: list[LocalDependency] = []
    for dependency in dependencies:
        if not dependency.startswith("."):
            continue
        line = problems.line_of(json.dumps(dependency))
        path = _inside(root, config_dir, dependency)
        if path is None:
            problems.add(
                f"local dependency {dependency!r} {OUTSIDE}: only its own clean directories "
                "can be built",
                line=line,
            )
            continue
        directory = root / path
        if not directory.is_dir():
            what = "is a file, not a directory" if directory.exists() else "does not exist"
            problems.add(
                f"local dependency {dependency!r} {what} in this commit ({path})", line=line
            )
            continue
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() or (directory / "setup.py").is_file():
            found.append(
                LocalDependency(
                    path=str(path),
                    is_package=True,
                    package_requirements=_pyproject_requirements(root, pyproject, problems),
                )
            )
            continue
        requirements = directory / "requirements.txt"
        flat = (directory / "__init__.py").is_file()
        found.append(
            LocalDependency(
                path=str(path),
                is_package=False,
                requirements=str(path / "requirements.txt") if requirements.is_file() else None,
                import_root=str(path.parent) if flat else str(path),
            )
        )
    return found


def _pyproject_requirements(root: Path, pyproject: Path, problems: _Problems) -> tuple[str, ...]:
    if not pyproject.is_file():
        return ()
    relative = pyproject.relative_to(root).as_posix()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        match = re.search(r"line (\d+)", str(exc))
        problems.add(
            f"not valid TOML: {exc}", path=relative, line=int(match.group(1)) if match else 1
        )
        return ()
    dependencies = (data.get("project") or {}).get("dependencies") or []
    return tuple(str(d) for d in dependencies if isinstance(d, str))


def _graph_path(
    root: Path,
    config_dir: PurePosixPath,
    graph_id: str,
    import_path: str,
    local_dependencies: list[LocalDependency],
    problems: _Problems,
    line: int,
) -> str:
    module, _, attribute = import_path.partition(":")
    if not module or not attribute:
        problems.add(
            f"graph {graph_id!r}: {import_path!r} must be <file or module>:<attribute>, "
            'e.g. "./agent.py:graph"',
            line=line,
        )
        return import_path
    if module.endswith(JAVASCRIPT_SUFFIXES):
        problems.add(f"graph {graph_id!r}: JavaScript graphs are not supported yet", line=line)
        return import_path
    if "/" not in module and "\\" not in module:
        return import_path  # a module of an installed package: importable only in the image
    path = _inside(root, config_dir, module)
    if path is None or not (root / path).is_file():
        where = OUTSIDE if path is None else f"does not exist ({path})"
        problems.add(f"graph {graph_id!r}: the file {module!r} {where}", line=line)
        return import_path
    if not any(dep.path == "." or path.is_relative_to(dep.path) for dep in local_dependencies):
        problems.add(
            f"graph {graph_id!r}: {path} is in no local dependency: add its directory "
            '(e.g. ".") to `dependencies`',
            line=line,
        )
    _check_attribute(root, path, attribute, graph_id, problems, line)
    return f"{APP_DIR}/{path}:{attribute}"


def _check_attribute(
    root: Path,
    path: PurePosixPath,
    attribute: str,
    graph_id: str,
    problems: _Problems,
    line: int,
) -> None:
    """The file must bind `attribute` at module level; read with ast, never executed."""
    try:
        tree = ast.parse((root / path).read_bytes(), filename=str(path))
    except SyntaxError as exc:
        problems.add(f"graph {graph_id!r}: {path} does not parse", line=line)
        problems.add(f"syntax error: {exc.msg}", path=str(path), line=exc.lineno or 1)
        return
    names = _module_names(tree)
    if names is None or attribute in names:
        return
    defined = ", ".join(sorted(names)[:8]) or "nothing"
    problems.add(f"graph {graph_id!r}: {path} has no attribute {attribute!r}", line=line)
    problems.add(
        f"graph {graph_id!r} in {problems.config_path} names `{attribute}`, which this file "
        f"does not define at module level (it defines: {defined})",
        path=str(path),
        line=1,
    )


def _module_names(tree: ast.Module) -> set[str] | None:
    """Names bound at module level; None when a star import makes that unknowable."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return None
    for node in tree.body:
        for bound in _bound(node):
            names.add(bound)
    return names


def _bound(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
        inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
        for handler in getattr(node, "handlers", []):
            inner += handler.body
        return [name for child in inner for name in _bound(child)]
    return []


def _local_import(
    root: Path,
    config_dir: PurePosixPath,
    what: str,
    value: str,
    problems: _Problems,
    line: int,
) -> str:
    module, sep, attribute = value.partition(":")
    if not sep or not module.startswith("."):
        return value
    path = _inside(root, config_dir, module)
    if path is None or not (root / path).is_file():
        where = OUTSIDE if path is None else f"does not exist ({path})"
        problems.add(f"`{what}`: the file {module!r} {where}", line=line)
        return value
    return f"{APP_DIR}/{path}:{attribute}"


def _env(
    root: Path,
    config_dir: PurePosixPath,
    env: object,
    problems: _Problems,
    warnings: list[str],
) -> dict[str, str]:
    if env is None:
        return {}
    line = problems.key_line("env")
    if isinstance(env, str):
        path = _inside(root, config_dir, env)
        if path is None or not (root / path).is_file():
            warnings.append(
                f"`env`: {env} is not in this commit; set variables with `slipway env set` "
                "(they reach every revision, secrets too)"
            )
            return {}
        values = {k: v for k, v in dotenv_values(root / path).items() if v is not None}
    else:
        assert isinstance(env, dict)
        values = {str(k): v for k, v in env.items()}
    result: dict[str, str] = {}
    for name, value in values.items():
        if not ENV_NAME.fullmatch(name):
            problems.add(f"`env`: {name!r} is not a valid variable name", line=line)
        elif not isinstance(value, str | int | float | bool) or "\n" in str(value):
            problems.add(f"`env`: {name} must be a one-line string", line=line)
        else:
            result[name] = str(value)
    return result


def _in_image(config_dir: PurePosixPath) -> str:
    return APP_DIR if str(config_dir) == "." else f"{APP_DIR}/{config_dir}"
