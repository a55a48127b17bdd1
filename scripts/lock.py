#!/usr/bin/env python3
"""Pin every package Slipway runs and is tested with into requirements.lock, with its hashes.

`make deps` installs from the lock with `pip install --require-hashes --no-deps`, so a fresh
clone gets the versions the tests passed with, and a file that changed on an index since is
refused. `--no-deps`, since the lock holds the whole resolved set (`--verify` checks it for each
target) and pip 23.2 refuses, in hash mode, a dependency named with extras (pypa/pip#9644).
pip-tools and uv are not at hand here; pip itself resolves (`pip install --dry-run --report`)
and the hashes come from the indexes pip is configured with (`pip config list`), for every file
of a pinned version that a Linux CPython >= 3.11 on x86_64 or aarch64 could install: a lock
resolved on one machine installs on Debian 12 (3.11), Ubuntu 24.04 (3.12) or Debian 13 (3.13).

    python scripts/lock.py                       # after pyproject.toml changed (make lock)
    python scripts/lock.py --upgrade-package X   # move X (and what must move with it)
    python scripts/lock.py --upgrade             # newest versions pyproject.toml allows
    python scripts/lock.py --verify              # also resolve the lock for every target
    python scripts/lock.py --check               # pyproject.toml's wants met by the lock?

Pins already in the lock are kept unless asked to move, as pip-compile does: adding one
dependency changes the lines of that dependency only. Run it with the Python Slipway's floor
(3.11), which resolves the backports newer Pythons do without.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import platform
import re
import ssl
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.tags import Tag
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        NormalizedName,
        canonicalize_name,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import Version
except ModuleNotFoundError as missing:  # a venv before its first `make deps`
    raise SystemExit(
        "scripts/lock.py needs `packaging`: run `make deps` once, then `make lock`"
    ) from missing

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
PYPI = "https://pypi.org/simple"
TARGET_PYTHONS = ((3, 11), (3, 12), (3, 13))
TARGET_ARCHES = ("x86_64", "aarch64")
TARGET_GLIBC = (2, 36)  # Debian 12's; the binary wheels Slipway needs ask for 2.28
HEADER = """\
# requirements.lock: every package Slipway runs and is tested with, pinned with its hashes.
# Generated from pyproject.toml by `make lock` (scripts/lock.py); do not edit by hand.
# `make deps` installs it: pip install --require-hashes --no-deps -r requirements.lock, then
# pip install --no-deps --no-build-isolation -e .
# Resolved on CPython {python} ({machine}); the hashes cover Linux CPython >= 3.11 on
# x86_64 and aarch64.
"""


@dataclass
class Pin:
    name: str
    version: Version
    hashes: set[str] = field(default_factory=set)
    via: set[str] = field(default_factory=set)

    @property
    def key(self) -> NormalizedName:
        return canonicalize_name(self.name)


# --- What pyproject.toml asks for, and whether the lock gives it ------------------------------


def project_requirements(pyproject: Mapping[str, Any]) -> list[Requirement]:
    """Runtime, every optional group (the dev tools) and the build backend `-e .` needs."""
    project = pyproject.get("project", {})
    texts: list[str] = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        texts.extend(group)
    texts.extend(pyproject.get("build-system", {}).get("requires", []))
    return [Requirement(text) for text in texts]


def read_lock(text: str) -> dict[NormalizedName, Pin]:
    """`name==version --hash=sha256:...` entries, continued over lines ending in a backslash."""
    pins: dict[NormalizedName, Pin] = {}
    for number, line in _logical_lines(text):
        words = line.split()
        try:
            requirement = Requirement(words[0])
        except InvalidRequirement as error:
            raise ValueError(f"requirements.lock line {number}: {error}") from error
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise ValueError(f"requirements.lock line {number}: {words[0]} is not an exact pin")
        hashes = {w.removeprefix("--hash=") for w in words[1:] if w.startswith("--hash=")}
        pin = Pin(requirement.name, Version(specs[0].version), hashes)
        pins[pin.key] = pin
    return pins


def lock_problems(
    pyproject: Mapping[str, Any],
    pins: Mapping[NormalizedName, Pin],
    environment: Mapping[str, str] | None = None,
) -> list[str]:
    """What keeps the lock from giving pyproject.toml what it asks for, each with its remedy."""
    env = {key: str(value) for key, value in (environment or default_environment()).items()}
    problems: list[str] = []
    for requirement in project_requirements(pyproject):
        if requirement.marker is not None and not requirement.marker.evaluate({**env, "extra": ""}):
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(
                f"pyproject.toml wants {requirement}, which requirements.lock does not pin: "
                "run `make lock`"
            )
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(
                f"pyproject.toml wants {requirement}, requirements.lock pins "
                f"{pin.name}=={pin.version}: run `make lock` "
                f"(or scripts/lock.py --upgrade-package {pin.name})"
            )
    problems.extend(
        f"requirements.lock pins {pin.name}=={pin.version} without a hash: run `make lock`"
        for pin in pins.values()
        if not pin.hashes
    )
    return problems


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    buffered, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()  # pip's comments
        if not buffered:
            start = number
        if line.endswith("\\"):
            buffered += line[:-1] + " "
            continue
        buffered += line
        if buffered.strip():
            yield start, buffered.strip()
        buffered = ""
    if buffered.strip():
        yield start, buffered.strip()


# --- Resolving with pip ----------------------------------------------------------------------


def resolve(pyproject: Mapping[str, Any], keep: Iterable[Pin]) -> dict[str, Any]:
    """pip's installation report for the project with its extras, on an empty environment."""
    project = pyproject["project"]
    extras = ",".join(project.get("optional-dependencies", {}))
    build = pyproject.get("build-system", {}).get("requires", [])
    with tempfile.TemporaryDirectory(prefix="slipway-lock-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{pin.name}=={pin.version}\n" for pin in keep))
        report = Path(tmp) / "report.json"
        result = _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "--constraint",
            str(constraints),
            f"{ROOT}[{extras}]" if extras else str(ROOT),
            *build,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"pip could not resolve pyproject.toml's dependencies:\n{_errors(result.stderr)}\n"
                "If a pin kept from requirements.lock is in the way, move it: "
                "scripts/lock.py --upgrade-package NAME (or --upgrade for all)."
            )
        loaded: dict[str, Any] = json.loads(report.read_text())
        return loaded


def pins_from(report: Mapping[str, Any], pyproject: Mapping[str, Any]) -> list[Pin]:
    """One pin per package the report installs, with the hash of the file pip chose here and
    what asks for it (the `# via` lines a reviewer reads a lock's diff with)."""
    project = canonicalize_name(pyproject["project"]["name"])
    build = {canonicalize_name(Requirement(r).name) for r in pyproject["build-system"]["requires"]}
    environment = report.get("environment", {})
    items = [i for i in report["install"] if canonicalize_name(i["metadata"]["name"]) != project]
    pins = {
        canonicalize_name(i["metadata"]["name"]): Pin(
            i["metadata"]["name"], Version(i["metadata"]["version"]), _report_hashes(i)
        )
        for i in items
    }
    for name in build & pins.keys():
        pins[name].via.add(f"{pyproject['project']['name']} (build)")
    extras = {project: set(pyproject["project"].get("optional-dependencies", {}))}
    parents = [(project, pyproject["project"]["name"], _project_requires(pyproject))] + [
        (key, pins[key].name, list(i["metadata"].get("requires_dist", [])))
        for i in items
        for key in [canonicalize_name(i["metadata"]["name"])]
    ]
    for _ in range(2):  # extras asked for by a package's dependents, then its own dependencies
        for key, name, requires in parents:
            for text in requires:
                requirement = Requirement(text)
                child = canonicalize_name(requirement.name)
                if child not in pins or not _applies(requirement, environment, extras.get(key)):
                    continue
                pins[child].via.add(canonicalize_name(name))
                extras.setdefault(child, set()).update(requirement.extras)
    return sorted(pins.values(), key=lambda pin: pin.key)


def _project_requires(pyproject: Mapping[str, Any]) -> list[str]:
    project = pyproject["project"]
    requires = list(project.get("dependencies", []))
    for extra, group in project.get("optional-dependencies", {}).items():
        for text in group:
            requirement = Requirement(text)
            marker = f"({requirement.marker}) and " if requirement.marker else ""
            requirement.marker = None
            requires.append(f"{requirement}; {marker}extra == '{extra}'")
    return requires


def _applies(
    requirement: Requirement, environment: Mapping[str, str], extras: set[str] | None
) -> bool:
    if requirement.marker is None:
        return True
    return any(
        requirement.marker.evaluate({**environment, "extra": extra})
        for extra in ["", *(extras or ())]
    )


def _report_hashes(item: Mapping[str, Any]) -> set[str]:
    hashes = item.get("download_info", {}).get("archive_info", {}).get("hashes", {})
    return {f"sha256:{hashes['sha256']}"} if "sha256" in hashes else set()


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )


# --- Hashes of every file a target could install ---------------------------------------------


@dataclass(frozen=True)
class Sources:
    indexes: tuple[str, ...]
    find_links: tuple[str, ...]
    cert: str | None = None  # pip's `cert`: the CA bundle a company index is signed with


def pip_sources() -> Sources:
    """The indexes and find-links pip reads on this machine (its files and PIP_* variables)."""
    result = _pip("config", "list")
    values: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, sep, quoted = line.partition("=")
        if not sep:
            continue
        option = key.rsplit(".", 1)[-1]
        values.setdefault(option, []).extend(str(ast.literal_eval(quoted)).split())
    indexes = values.get("index-url") or [PYPI]
    return Sources(
        indexes=tuple(dict.fromkeys([*indexes, *values.get("extra-index-url", [])])),
        find_links=tuple(dict.fromkeys(values.get("find-links", []))),
        cert=values["cert"][-1] if values.get("cert") else None,
    )


def add_published_hashes(pins: list[Pin], sources: Sources) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = pool.map(lambda pin: published_hashes(pin, sources), pins)
        for pin, hashes in zip(pins, found, strict=True):
            pin.hashes |= hashes


def published_hashes(pin: Pin, sources: Sources) -> set[str]:
    links: list[tuple[str, str | None]] = []
    for index in sources.indexes:
        links.extend(_index_links(f"{index.rstrip('/')}/{pin.key}/", sources.cert))
    for location in sources.find_links:
        links.extend(_find_links(location, pin))
    wheels: set[str] = set()
    sdists: set[str] = set()
    for filename, digest in links:
        kind = _fits(filename, pin)
        if digest is None or kind is None:
            continue
        (wheels if kind == "wheel" else sdists).add(f"sha256:{digest}")
    return wheels or sdists  # an sdist only for what has no wheel a target can install


def _fits(filename: str, pin: Pin) -> str | None:
    """`wheel` or `sdist` when the file is of the pinned version and a target could use it."""
    try:
        if filename.endswith(".whl"):
            name, version, _, tags = parse_wheel_filename(filename)
            fits = any(_target_tag(tag) for tag in tags)
            kind = "wheel"
        else:
            name, version = parse_sdist_filename(filename)
            fits, kind = True, "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return kind if fits and name == pin.key and version == pin.version else None


def _target_tag(tag: Tag) -> bool:
    if tag.platform != "any" and not (
        tag.platform.startswith(("manylinux", "linux_")) and tag.platform.endswith(TARGET_ARCHES)
    ):
        return False
    if tag.interpreter.startswith("py3"):
        return True
    if not tag.interpreter.startswith("cp3") or not tag.interpreter[3:].isdigit():
        return False
    minor = int(tag.interpreter[3:])
    floor = min(TARGET_PYTHONS)[1]
    return tag.abi == "abi3" or (minor >= floor and not tag.abi.endswith("t"))


def _index_links(url: str, cert: str | None) -> list[tuple[str, str | None]]:
    """(filename, sha256) of a project page of a simple index: PEP 691 JSON or PEP 503 HTML."""
    try:
        if url.startswith("file:"):
            path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
            body, kind = (path / "index.html").read_bytes(), "text/html"
        else:
            parts = urllib.parse.urlsplit(url)
            headers = {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
            if parts.username is not None:  # https://user:token@mirror/simple, as pip takes it
                login = f"{urllib.parse.unquote(parts.username)}:"
                login += urllib.parse.unquote(parts.password or "")
                headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
                url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            request = urllib.request.Request(url, headers=headers)  # noqa: S310
            context = ssl.create_default_context(cafile=cert)
            with urllib.request.urlopen(  # noqa: S310 (the indexes pip is configured with)
                request, timeout=120, context=context
            ) as response:
                body, kind = response.read(), response.headers.get("Content-Type", "")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise
    if "json" in kind:
        return [
            (f["filename"], f.get("hashes", {}).get("sha256")) for f in json.loads(body)["files"]
        ]
    return [
        (urllib.parse.unquote(href.split("#")[0].rsplit("/", 1)[-1]), digest or None)
        for href, digest in re.findall(
            r'<a\s[^>]*href="([^"#]+(?:#sha256=([0-9a-f]{64}))?[^"]*)"', body.decode()
        )
    ]


def _find_links(location: str, pin: Pin) -> Iterator[tuple[str, str | None]]:
    """Files of a find-links directory, hashed here (pip hashes them the same way)."""
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(location).path))
    if not path.is_dir():
        return
    for file in sorted(path.iterdir()):
        if _fits(file.name, pin) is not None:
            yield file.name, hashlib.sha256(file.read_bytes()).hexdigest()


# --- Writing, and checking the lock on every target -------------------------------------------


def render(pins: Iterable[Pin]) -> str:
    lines = [
        HEADER.format(
            python=platform.python_version(), machine=f"{sys.platform} {platform.machine()}"
        )
    ]
    for pin in pins:
        hashes = sorted(pin.hashes)
        lines.append(f"{pin.key}=={pin.version} \\")
        lines.extend(f"    --hash={h} \\" for h in hashes[:-1])
        lines.append(f"    --hash={hashes[-1]}")
        lines.extend(f"    # via {parent}" for parent in sorted(pin.via))
    return "\n".join(lines) + "\n"


def verify(lock: Path) -> list[str]:
    """Resolve the lock's pins as pip would on each target, with their dependencies: anything
    pip would add there is missing from the lock, and every file it would choose must be one
    the lock has a hash for.

    Without `--require-hashes`, which pip 23.2 cannot apply to a dependency named with extras
    (`hishel[async,httpx]` from githubkit; pypa/pip#9644): `make deps` installs with `--no-deps`
    for the same reason, so this is where a lock short of a dependency is caught."""
    pins = read_lock(lock.read_text())
    targets = [(python, arch) for python in TARGET_PYTHONS for arch in TARGET_ARCHES]
    with tempfile.TemporaryDirectory(prefix="slipway-lock-") as tmp:
        pinned = Path(tmp) / "pins.txt"
        pinned.write_text("".join(f"{pin.key}=={pin.version}\n" for pin in pins.values()))
        with ThreadPoolExecutor(max_workers=3) as pool:
            found = pool.map(lambda target: _verify_target(pinned, pins, *target), targets)
            return [problem for problems in found for problem in problems]


def _verify_target(
    pinned: Path, pins: Mapping[NormalizedName, Pin], python: tuple[int, int], arch: str
) -> list[str]:
    target = f"CPython {python[0]}.{python[1]} on {arch}"
    glibc_major, glibc_minor = TARGET_GLIBC
    platforms = [f"manylinux_{glibc_major}_{m}_{arch}" for m in range(glibc_minor, 4, -1)]
    platforms += [f"manylinux2014_{arch}", f"linux_{arch}"]
    with tempfile.TemporaryDirectory(prefix="slipway-lock-") as tmp:
        report = Path(tmp) / "report.json"
        result = _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "--target",
            str(Path(tmp) / "target"),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            f"{python[0]}.{python[1]}",
            *[arg for p in platforms for arg in ("--platform", p)],
            "--requirement",
            str(pinned),
        )
        if result.returncode != 0:
            return [f"{target}: {_errors(result.stderr)}"]
        installed = json.loads(report.read_text())["install"]
    problems = []
    for item in installed:
        name, version = item["metadata"]["name"], Version(item["metadata"]["version"])
        pin = pins.get(canonicalize_name(name))
        chosen = item["download_info"]["url"].rsplit("/", 1)[-1]
        if pin is None or pin.version != version:
            problems.append(f"{target}: pip would add {name}=={version}, which the lock lacks")
        elif not _report_hashes(item) or not _report_hashes(item) <= pin.hashes:
            problems.append(f"{target}: pip would install {chosen}, not hashed in the lock")
    print(f"lock: {target}: {len(installed)} packages, {len(problems)} problems", file=sys.stderr)
    return problems


def _errors(stderr: str) -> str:
    """pip's complaint without its notes on indexes that lack the project."""
    return "\n".join(line for line in stderr.splitlines() if "is ignored:" not in line).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--upgrade", action="store_true", help="drop every pin kept so far")
    parser.add_argument(
        "--upgrade-package", action="append", default=[], metavar="NAME", help="drop NAME's pin"
    )
    parser.add_argument("--verify", action="store_true", help="resolve the lock on each target")
    parser.add_argument(
        "--check", action="store_true", help="only check the lock against pyproject"
    )
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(PYPROJECT.read_text())
    current = read_lock(LOCK.read_text()) if LOCK.exists() else {}
    if args.check:
        problems = lock_problems(pyproject, current)
        for problem in problems:
            print(f"lock: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if not args.upgrade:
        moving = {canonicalize_name(name) for name in args.upgrade_package}
        keep = [pin for key, pin in current.items() if key not in moving]
    else:
        keep = []
    print(f"lock: resolving pyproject.toml, {len(keep)} pins kept ...", file=sys.stderr)
    pins = pins_from(resolve(pyproject, keep), pyproject)
    add_published_hashes(pins, pip_sources())
    unhashed = [f"{pin.name}=={pin.version}" for pin in pins if not pin.hashes]
    if unhashed:
        raise SystemExit(f"lock: no index gave a sha256 for {', '.join(unhashed)}")
    LOCK.write_text(render(pins))
    _summarise(current, {pin.key: pin for pin in pins})
    problems = lock_problems(pyproject, read_lock(LOCK.read_text()))
    if args.verify:
        problems += verify(LOCK)
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _summarise(before: Mapping[NormalizedName, Pin], after: Mapping[NormalizedName, Pin]) -> None:
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            print(f"lock: + {new.name}=={new.version}", file=sys.stderr)
        elif new is None and old is not None:
            print(f"lock: - {old.name}=={old.version}", file=sys.stderr)
        elif old is not None and new is not None and old.version != new.version:
            print(f"lock: {new.name} {old.version} -> {new.version}", file=sys.stderr)
    print(f"lock: {LOCK.name}: {len(after)} packages", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
