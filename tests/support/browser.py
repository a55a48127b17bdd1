"""Debian's Chromium, headless, driven by Playwright: the browser the dashboard's tests use in the
unit tier (against the API on fakes) and the e2e tier (against `slipway up`).

Each tier's conftest re-exports the `browser` fixture. A test module that uses it marks itself
`needs_chromium` and takes Playwright's client with `pytest.importorskip`, so it is skipped,
saying which is missing, where either is not installed (scripts/ensure-test-tools.sh installs
`chromium`); importing this module needs neither.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
TIMEOUT_MS = 15_000
"""How long a page waits for what a test expects of it: a page rendered on the server shows it
in well under a second; the rest allows for a loaded 2-core host."""
NO_SANDBOX = ["--no-sandbox"]
"""Chromium will not start its sandbox as root, nor without user namespaces, and a test
container may have neither."""


@pytest.fixture
def browser() -> Iterator[Any]:
    """One headless Chromium per test, closed at its end; pages are opened with `new_page`."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's client is missing")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=NO_SANDBOX
        )
        try:
            yield launched
        finally:
            launched.close()
