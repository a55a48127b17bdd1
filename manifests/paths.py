"""Paths Slipway takes from a repository (slipway.toml, langgraph.json) or a recipe: each one is
checked to be a clean path of safe characters before it reaches a Dockerfile, a mount or an
environment variable, so no such path is ever parsed as more than a path."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

SAFE_PATH_PART = re.compile(r"(?!\.\.?$)[A-Za-z0-9._][A-Za-z0-9._-]*")
"""One component: letters, digits and `._-`, neither `.` nor `..`, not starting with a dash
(nothing a parser could take for an option, a separator or a new line)."""
SAFE_CHARACTERS = "letters, digits and ._- between slashes"


def is_clean_relative(path: str) -> bool:
    """A path inside the repository: relative, no `..`, only safe components (`.` alone, the
    repository root, is one too)."""
    if path in (".", "./"):
        return True
    parts = PurePosixPath(path).parts
    return (
        bool(parts)
        and not path.startswith("/")
        and "\\" not in path
        and all(SAFE_PATH_PART.fullmatch(part) for part in parts)
    )


def is_clean_absolute(path: str) -> bool:
    """An absolute path in an image, written out in full: `/`, then safe components."""
    parts = path.split("/")
    return (
        path.startswith("/")
        and len(parts) >= 2
        and all(SAFE_PATH_PART.fullmatch(part) for part in parts[1:])
    )
