"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A person signs in through the fake GitHub's OAuth page, sees their deployment, watches a
server-log line arrive live, opens a revision's build log, changes an env var (a new revision
goes live), rolls back, and moves through the page with the keyboard; a reader sees no write
buttons and a forged POST is refused.
Screenshots of the pages go to tmp_path, or to $SLIPWAY_DASHBOARD_SCREENSHOTS (docs/images is
refreshed that way).

Needs `chromium` (scripts/ensure-test-tools.sh installs it) and Playwright's Python client;
skipped, saying which is missing, where they are not installed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from app.kernel.models import RevisionState
from app.server.embedded import free_port
from tests.support.api_server import serve_api
from tests.support.browser import TIMEOUT_MS, needs_chromium
from tests.unit.dashboard_site import HeldOutputs, dashboard
from tests.unit.world import Platform

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's client is missing")
pytestmark = needs_chromium


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("SLIPWAY_DASHBOARD_SCREENSHOTS") or tmp_path / "shots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_a_person_signs_in_reads_a_build_log_changes_env_and_rolls_back_in_a_browser(
    platform: Platform, tmp_path: Path, browser: Any, shots: Path
) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    outputs = HeldOutputs()
    app, _ = dashboard(platform, tmp_path, public_url=public, run_revisions=True, outputs=outputs)
    deployment = platform.deployment()
    outputs.print(deployment.id, first, "listening on :8080")
    platform.github.sign_in_browser("octo")
    expect = sync_api.expect

    with serve_api(app, port):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{public}/dashboard/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.screenshot(path=str(shots / "dashboard-sign-in.png"))
        page.get_by_role("link", name="Sign in with GitHub").click()

        expect(page.get_by_role("heading", name="Deployments")).to_be_visible()
        expect(page.get_by_text("Signed in as")).to_contain_text("octo")
        row = page.get_by_role("row").filter(has_text="octo/web")
        expect(row).to_contain_text("http://web.localhost:8000")
        expect(row).to_contain_text("#1")
        page.screenshot(path=str(shots / "dashboard-deployments.png"), full_page=True)

        row.get_by_role("link", name="web", exact=True).click()
        expect(page.get_by_role("heading", name="Revisions")).to_be_visible()
        server_log = page.locator("#server-log")
        expect(server_log).to_contain_text("listening on :8080")
        outputs.print(deployment.id, first, "GET / 200 (printed after the page opened)")
        expect(server_log).to_contain_text("printed after the page opened")
        # The line rendered with the page is not sent again by the follow.
        assert server_log.inner_text().count("listening on :8080") == 1
        page.get_by_role("link", name="#1", exact=True).click()
        expect(page.get_by_role("heading", name="Build log")).to_be_visible()
        expect(page.locator("pre.log")).not_to_be_empty()
        page.screenshot(path=str(shots / "dashboard-revision.png"), full_page=True)
        page.go_back()

        page.get_by_label("Name").fill("GREETING")
        page.get_by_label("Value").fill("hello from the browser")
        page.get_by_role("button", name="Save and redeploy").click()
        expect(page.get_by_role("status")).to_contain_text("changed by octo")
        expect(page.get_by_role("cell", name="hello from the browser")).to_be_visible()
        expect(page.get_by_role("row").filter(has_text="#2")).to_contain_text("live")
        page.screenshot(path=str(shots / "dashboard-deployment.png"), full_page=True)

        page.get_by_role("button", name="Roll back to revision 1").click()
        expect(page.get_by_role("status")).to_contain_text("rollback of web to revision #1")
        expect(page.get_by_role("row").filter(has_text="#3")).to_contain_text("live")
        expect(page.get_by_role("cell", name="hello from the browser")).to_have_count(0)

        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        assert focused == "Skip to content"

    platform.github.assert_no_errors()


def test_a_reader_sees_no_write_buttons_and_a_forged_post_is_refused_in_a_browser(
    platform: Platform, tmp_path: Path, browser: Any
) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    deployment = platform.deployment()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    app, queue = dashboard(platform, tmp_path, public_url=public)
    platform.github.set_permission("octo/web", "reader", "read")
    platform.github.sign_in_browser("reader")
    expect = sync_api.expect

    with serve_api(app, port):
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{public}/dashboard/sign-in/github")
        page.goto(f"{public}/dashboard/deployments/{deployment.id}")
        expect(page.get_by_role("heading", name="Revisions")).to_be_visible()
        expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
        expect(page.get_by_role("button", name="Save and redeploy")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete web")).to_have_count(0)

        forged = page.request.post(
            f"{public}/dashboard/deployments/{deployment.id}/deploy", form={"ref": "main"}
        )
        assert forged.status == 403
    assert queue.jobs == []


def test_a_building_revisions_log_arrives_live_in_a_browser(
    platform: Platform, tmp_path: Path, browser: Any
) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    second = platform.push()  # queued: its page follows the build log
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    app, _ = dashboard(platform, tmp_path, public_url=public)
    platform.github.sign_in_browser("octo")
    expect = sync_api.expect

    with serve_api(app, port):
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{public}/dashboard/sign-in/github")
        page.goto(f"{public}/dashboard/revisions/{second}")
        log = page.locator("#build-log-text")
        expect(log).to_contain_text("(no build log yet)")

        built = threading.Thread(target=platform.pipeline.run, args=(second,))
        built.start()
        built.join(timeout=60)
        assert not built.is_alive()
        whole = page.request.get(f"{public}/dashboard/revisions/{second}/log").text()
        first_line = whole.splitlines()[0]

        # The page was not reloaded: the lines came over the followed stream.
        expect(log).to_contain_text(first_line)
        expect(log).not_to_contain_text("(no build log yet)")
