"""requirements.lock, which `make deps` installs from, gives pyproject.toml what it asks for: a
dependency added or bumped without `make lock` fails here, not at a fresh clone's `make up`."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from scripts.lock import LOCK, PYPROJECT, lock_problems, read_lock

PYPROJECT_SAMPLE: dict[str, Any] = {
    "project": {
        "name": "slipway",
        "dependencies": ["litestar>=2.25,<3", "tomli>=2; python_version < '3.11'"],
        "optional-dependencies": {"dev": ["cyclopts>=3", "rich>=13"]},
    },
    "build-system": {"requires": ["setuptools>=68"]},
}
ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.7"}


def test_the_lock_pins_every_dependency_of_pyproject_in_its_range() -> None:
    pins = read_lock(LOCK.read_text())

    assert lock_problems(tomllib.loads(PYPROJECT.read_text()), pins) == []
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for pin in pins.values() for h in pin.hashes)


def test_a_dependency_missing_from_the_lock_or_pinned_out_of_range_is_named() -> None:
    pins = read_lock(
        "# requirements.lock\n"
        "litestar==3.0.0 \\\n"
        "    --hash=sha256:aa \\\n"
        "    --hash=sha256:bb\n"
        "    # via slipway\n"
        "Rich==14.0.0 --hash=sha256:cc  # a comment\n"
        "setuptools==84.2.1 --hash=sha256:dd\n"
    )

    problems = lock_problems(PYPROJECT_SAMPLE, pins, ENVIRONMENT)

    assert problems == [
        "pyproject.toml wants litestar<3,>=2.25, requirements.lock pins litestar==3.0.0: "
        "run `make lock` (or scripts/lock.py --upgrade-package litestar)",
        "pyproject.toml wants cyclopts>=3, which requirements.lock does not pin: run `make lock`",
    ]
    assert pins[canonicalize_name("litestar")].hashes == {"sha256:aa", "sha256:bb"}


def test_a_pin_without_a_hash_is_named() -> None:
    pins = read_lock(
        "litestar==2.25.0\ncyclopts==3.1.0 --hash=sha256:aa\nrich==14.0.0 --hash=sha256:bb\n"
    )

    problems = lock_problems(PYPROJECT_SAMPLE, pins, ENVIRONMENT)

    assert any("litestar==2.25.0 without a hash" in problem for problem in problems)
    assert any("setuptools>=68" in problem for problem in problems)


def test_a_range_in_the_lock_is_refused() -> None:
    with pytest.raises(ValueError, match=r"line 2: litestar>=2 is not an exact pin"):
        read_lock("# header\nlitestar>=2 --hash=sha256:aa\n")
