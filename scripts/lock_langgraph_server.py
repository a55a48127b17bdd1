"""Regenerate manifests/langgraph_server_lock/: the exact versions of everything each pinned
LangGraph server installs, which every LangGraph build is constrained to (`pip install -c`).

    PYTHONPATH=$PWD .venv/bin/python scripts/lock_langgraph_server.py

For each row of SERVER_RELEASES and each of its runtimes, pip resolves langgraph-api and the
runtime package (`pip install --dry-run --report`, for CPython 3.11 on manylinux x86_64, from
the index pip is configured with) and the versions it would install are written, one
`name==version` a line. Run it after changing SERVER_RELEASES; commit what it writes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from manifests.langgraph_image import SERVER_LOCK_DIR, SERVER_RELEASES, lock_file_name

SDIST_ONLY = ("forbiddenfruit",)
"""No wheel on PyPI (blockbuster, of the inmem runtime, needs it): built here first, as a build
in the image builds it from its sdist."""
PLATFORM_ARGS = (
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux_2_28_x86_64",
)
"""What a LangGraph build's image runs (CPython 3.11 on manylinux x86_64), not this machine:
pip picks the wheels that image would install. Wheels only, as the build installs them."""
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check")


def pip_for_builds(command: str, *args: str) -> list[str]:
    """`pip <command>` (install --dry-run, download) choosing what a LangGraph build's image
    would get. The lock here and the tests' wheelhouse (tests/support/wheelhouse.py) both use
    it, so the wheels the tests serve are the ones the lock was resolved for."""
    return [*PIP, command, *PLATFORM_ARGS, *args]


def wheels_of_sdists(into: Path, *options: str) -> list[str]:
    """`pip wheel` building SDIST_ONLY's wheels into a directory that pip_for_builds then finds
    them in (`--find-links`)."""
    return [*PIP, "wheel", *options, "--no-deps", "-w", str(into), *SDIST_ONLY]


def resolve(requirements: tuple[str, ...]) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        wheels = Path(scratch) / "wheels"
        subprocess.run(wheels_of_sdists(wheels, "--quiet"), check=True)
        subprocess.run(
            pip_for_builds(
                "install",
                "--find-links",
                str(wheels),
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--report",
                str(report),
                "--target",
                str(Path(scratch) / "target"),
                *requirements,
            ),
            check=True,
            timeout=900,
        )
        installed = json.loads(report.read_text())["install"]
    pins = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in installed
    }
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main() -> None:
    SERVER_LOCK_DIR.mkdir(exist_ok=True)
    for release in SERVER_RELEASES:
        for runtime in release.runtimes:
            pins = resolve(release.requirements(runtime))
            path = SERVER_LOCK_DIR / lock_file_name(release, runtime)
            path.write_text("\n".join(pins) + "\n", encoding="utf-8")
            print(f"{path}: {len(pins)} packages")


if __name__ == "__main__":
    main()
