"""The Dockerfile Slipway generates for a LangGraph repository, and the pip settings of its build.

`langgraph dockerfile` cannot be used as it is: its output starts FROM langchain/langgraph-api
and relies on that image's internals (uv, /api/constraints.txt). This one needs of its base only
`python` and `pip` on PATH (the official python:*-slim images), installs langgraph-api and the
runtime from the operator's package index, and orders layers so that a change to the graph's
code rebuilds only the last ones: server, then declared requirements, then `dockerfile_lines`,
then the source.

The server is pinned: each build installs exact versions of langgraph-api and of the runtime
package from SERVER_RELEASES (which `api_version` in langgraph.json chooses among), so two builds
of one commit get the same server whatever the index has gained since. The image's entry point
is langgraph_server_entry.py, copied in beside the server: langgraph-api's app with the fix that
makes crons fire on the pg runtime (the module says why).

The index settings reach pip as a BuildKit secret mounted at /etc/pip.conf for each `pip install`
only, so they land in no layer and no history line. They are not secret, though: the build runs
the tenant's `dockerfile_lines` and packages, which can read that mount. An index URL with the
operator's credentials therefore never reaches a build: `LangGraphBuild.gateway` turns it into
the URL of an authenticating pass-through on the host (builders/index_proxy.py).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from manifests.langgraph import APP_DIR, LangGraphProject

PIP_SECRET_ID = "slipway-pip-config"  # noqa: S105 - the name of a BuildKit secret
PIP_CONFIG_TARGET = "/etc/pip.conf"
"""pip's site-wide config file: read by any pip, whatever the base's layout."""
SERVER_PORT = 8000
"""langgraph-api's own images listen here; Slipway routes to it and gives it as PORT."""
HEALTH_PATH = "/ok"
"""langgraph-api's health endpoint (answers once the graphs are loaded)."""
SERVER_PACKAGE = "langgraph-api"
RUNTIMES = {"pg": "langgraph-runtime-pg", "inmem": "langgraph-runtime-inmem"}
"""LANGGRAPH_RUNTIME_EDITION → the package that implements it. pg keeps threads, runs,
checkpoints and the store in the deployment's database; inmem keeps them in files."""
DEFAULT_BASE_IMAGE = "python:{python_version}-slim-bookworm"
ENTRY_MODULE = "slipway_langgraph_server"
"""The module the image's uvicorn serves (`slipway_langgraph_server:app`): this package's
langgraph_server_entry.py, written into the server's site-packages."""
ENTRY_SOURCE = Path(__file__).with_name("langgraph_server_entry.py")
SERVER_LOCK_DIR = Path(__file__).with_name("langgraph_server_lock")
"""For each pinned server and runtime, the exact version of every package it installs
(scripts/lock_langgraph_server.py writes them): a build's server install is constrained to it."""
CONSTRAINTS_TARGET = "/etc/slipway/langgraph-server-constraints.txt"
"""Where the image keeps the constraints its server was installed with (a record, too)."""


@dataclass(frozen=True)
class ServerRelease:
    """A langgraph-api version and, for each runtime that works with it, the exact version of
    that runtime's package: what a build installs, `==` each."""

    api: str
    runtimes: Mapping[str, str]

    def requirements(self, runtime: str) -> tuple[str, str]:
        return (f"{SERVER_PACKAGE}=={self.api}", f"{RUNTIMES[runtime]}=={self.runtimes[runtime]}")

    def constraints(self, runtime: str) -> str:
        """`name==version` lines of everything this server installs on the runtime."""
        return (SERVER_LOCK_DIR / lock_file_name(self, runtime)).read_text(encoding="utf-8")


def lock_file_name(release: ServerRelease, runtime: str) -> str:
    return f"langgraph-api-{release.api}-{runtime}.txt"


SERVER_RELEASES = (
    ServerRelease("0.11.1", {"pg": "0.11.1.post1", "inmem": "0.31.4"}),
    ServerRelease("0.16.7", {"inmem": "0.36.7"}),
)
"""The servers Slipway builds, oldest first, each measured with its runtimes (crons included).
langgraph-runtime-pg 0.11.1.post1, the newest pg runtime published, requires
langgraph-api==0.11.1: production deployments (always pg) cannot run a newer server until a
newer pg runtime is published. The inmem runtime follows langgraph-api's releases."""
DEFAULT_API_VERSION = "0.11.1"
"""Without `api_version`, every runtime gets the server production can run, so a preview or a
development deployment behaves as production does."""
_API_VERSION = re.compile(r"(?P<compatible>~=\s*)?(?P<version>\d+(?:\.\d+){0,2})")


class UnsupportedApiVersion(ValueError):
    """langgraph.json's `api_version` names no server Slipway can build for the runtime."""


def server_release(api_version: str | None, runtime: str) -> ServerRelease:
    """The newest release matching `api_version` that has the runtime, as langgraph-cli reads
    the key: "0", "0.11" or "0.11.1" (that version or its newest patch), or "~=0.11.1" (PEP
    440's compatible release). None: DEFAULT_API_VERSION."""
    available = _available(runtime)
    if api_version is None:
        [release] = [r for r in SERVER_RELEASES if r.api == DEFAULT_API_VERSION]
        return release
    match = _API_VERSION.fullmatch(api_version.strip())
    if match is None:
        raise UnsupportedApiVersion(
            f"api_version {api_version!r} is not a version Slipway can read: use major, "
            f"major.minor, major.minor.patch or ~=major.minor[.patch] ({available})"
        )
    wanted = _parts(match.group("version"))
    if match.group("compatible"):
        if len(wanted) < 2:
            raise UnsupportedApiVersion(
                f"api_version {api_version!r}: ~= needs major.minor ({available})"
            )

        def matches(version: tuple[int, ...]) -> bool:
            return version >= wanted and version[: len(wanted) - 1] == wanted[:-1]
    else:

        def matches(version: tuple[int, ...]) -> bool:
            return version[: len(wanted)] == wanted

    candidates = [r for r in SERVER_RELEASES if matches(_parts(r.api))]
    fitting = [r for r in candidates if runtime in r.runtimes]
    if fitting:
        return max(fitting, key=lambda r: _parts(r.api))
    if candidates:
        raise UnsupportedApiVersion(
            f"api_version {api_version!r} does not run on the {runtime} runtime: "
            f"{_why_not(runtime)}; {available}"
        )
    raise UnsupportedApiVersion(
        f"api_version {api_version!r} is not one Slipway builds; {available}"
    )


def _available(runtime: str) -> str:
    fitting = [r.api for r in SERVER_RELEASES if runtime in r.runtimes]
    every = ", ".join(f"{r.api} ({' and '.join(sorted(r.runtimes))})" for r in SERVER_RELEASES)
    return f"the {runtime} runtime runs langgraph-api {' or '.join(fitting)} (all: {every})"


def _why_not(runtime: str) -> str:
    if runtime == "pg":
        return (
            "production deployments always use the pg runtime, and langgraph-runtime-pg "
            "requires langgraph-api==0.11.1"
        )
    return f"no {RUNTIMES[runtime]} release is known to work with it"


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class PipIndex:
    """Where builds get packages: a company mirror, or the tests' local wheel server."""

    index_url: str | None = field(default=None, repr=False)
    extra_index_url: str | None = field(default=None, repr=False)
    """Space-separated URLs, as pip takes them."""
    find_links: str | None = None
    trusted_host: str | None = None

    def config_file(self) -> str | None:
        """pip.conf text, or None when pip's (and the base image's) defaults apply."""
        values = {
            "index-url": self.index_url,
            "extra-index-url": self.extra_index_url,
            "find-links": self.find_links,
            "trusted-host": self.trusted_host,
        }
        lines = [f"{key} = {value}" for key, value in values.items() if value]
        if not lines:
            return None
        return "\n".join(["[global]", *lines, ""])

    def carries_credentials(self) -> bool:
        """Whether a URL has userinfo: such settings must not reach a build as they are."""
        urls = [u for u in [self.index_url, *(self.extra_index_url or "").split()] if u]
        return any(
            urlsplit(u).username is not None or urlsplit(u).password is not None for u in urls
        )


@dataclass(frozen=True)
class LangGraphBuild:
    """The operator's choices for every LangGraph build (SLIPWAY_LANGGRAPH_*, BUILD_PIP_*)."""

    base_image: str = DEFAULT_BASE_IMAGE
    """May name `{python_version}`, filled from langgraph.json."""
    runtime: str = "pg"
    pip: PipIndex = field(default_factory=PipIndex)
    gateway: Callable[[PipIndex], PipIndex] | None = field(default=None, compare=False, repr=False)
    """Turns the operator's index settings into those a build may see: URLs with credentials
    become URLs of the authenticating pass-through (builders/index_proxy.py)."""

    def pip_for_builds(self) -> PipIndex:
        return self.gateway(self.pip) if self.gateway is not None else self.pip

    def runtime_for(self, *, production: bool) -> str:
        """inmem loses state with its container: production deployments always get pg."""
        return "pg" if production else self.runtime

    def base_for(self, project: LangGraphProject) -> str:
        return self.base_image.replace("{python_version}", project.python_version)


def langgraph_dockerfile(
    project: LangGraphProject,
    *,
    base_image: str,
    runtime: str,
    release: ServerRelease | None = None,
) -> str:
    release = release or server_release(None, runtime)
    pip = f"RUN --mount=type=secret,id={PIP_SECRET_ID},target={PIP_CONFIG_TARGET} pip install"
    pip += " --no-cache-dir --disable-pip-version-check"
    lines = [
        f"# Generated by Slipway from {project.config_path}: a LangGraph Server "
        f"(langgraph-api {release.api}, {runtime} runtime).",
        f"FROM {base_image}",
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        *project.dockerfile_lines,
        _write_file_step(CONSTRAINTS_TARGET, release.constraints(runtime)),
        f"{pip} -c {CONSTRAINTS_TARGET} {' '.join(release.requirements(runtime))}",
        _entry_module_step(),
    ]
    requirements = [d.requirements for d in project.local_dependencies if d.requirements]
    for path in requirements:
        lines.append(f"COPY {json.dumps([path, f'{APP_DIR}/{path}'])}")
    declared = [
        *project.pypi_dependencies,
        *(r for d in project.local_dependencies for r in d.package_requirements),
    ]
    if requirements or declared:
        args = [arg for path in requirements for arg in ("-r", f"{APP_DIR}/{path}")]
        lines.append(f"{pip} {' '.join(shlex.quote(a) for a in [*args, *declared])}")
    lines.append(f"COPY . {APP_DIR}")
    packages = [f"{APP_DIR}/{d.path}" for d in project.local_dependencies if d.is_package]
    if packages:
        lines.append(f"{pip} --no-deps {' '.join(shlex.quote(p) for p in packages)}")
    env = {
        **project.env,
        **project.server_env,
        "LANGGRAPH_RUNTIME_EDITION": runtime,
        "PORT": str(SERVER_PORT),
    }
    roots = sorted({_join(d.import_root) for d in project.local_dependencies if not d.is_package})
    if roots:
        env["PYTHONPATH"] = ":".join(roots)
    lines += [f"ENV {name}={_env_value(value)}" for name, value in env.items()]
    lines += [
        f"WORKDIR {project.workdir}",
        f"EXPOSE {SERVER_PORT}",
        _json_instruction(
            "CMD",
            [
                "python",
                "-m",
                "uvicorn",
                f"{ENTRY_MODULE}:app",
                "--host",
                "0.0.0.0",  # noqa: S104 - inside the container; published on 127.0.0.1
                "--port",
                str(SERVER_PORT),
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def _entry_module_step() -> str:
    """A RUN writing the entry module into the site-packages of the server's Python (exec
    form, so no shell reads it; the Dockerfile frontend of Docker 20.10 has no heredocs)."""
    source = ENTRY_SOURCE.read_text(encoding="utf-8")
    code = (
        "import pathlib, sysconfig; "
        f"pathlib.Path(sysconfig.get_paths()['purelib'], {ENTRY_MODULE + '.py'!r})"
        f".write_text({source!r})"
    )
    return _json_instruction("RUN", ["python", "-c", code])


def _write_file_step(path: str, text: str) -> str:
    """A RUN writing Slipway's text to an absolute path of the image (exec form, as above)."""
    code = (
        f"import pathlib; target = pathlib.Path({path!r}); "
        "target.parent.mkdir(parents=True, exist_ok=True); "
        f"target.write_text({text!r})"
    )
    return _json_instruction("RUN", ["python", "-c", code])


def _join(path: str) -> str:
    return APP_DIR if path == "." else f"{APP_DIR}/{path}"


def _env_value(value: str) -> str:
    """A double-quoted Dockerfile ENV value: JSON and `$` survive as they are."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _json_instruction(name: str, argv: list[str]) -> str:
    return f"{name} {json.dumps(argv)}"
