"""Fixtures the integration tier's build tests share."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.images import DOCKER


@pytest.fixture
def tags() -> Iterator[list[str]]:
    """Image tags a test built: removed when it ends."""
    made: list[str] = []
    yield made
    for tag in made:
        subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True, check=False)
