"""The dashboard in a real browser against the real platform: Debian's Chromium, headless,
driven by Playwright, on `slipway up` with its OAuth client (SLIPWAY_GITHUB_CLIENT_ID/SECRET).

A person with write access to one repository signs in through the fake GitHub's OAuth page,
sees that repository's deployment (and no other), opens it, reads a revision's build log from
BuildKit, watches a line the app prints after the page opened arrive live, changes an env var
through the form (a new revision goes live: the URL serves the new value) and rolls back with
the button (the old value is served again); after the page's reloads, the log still follows.

Needs `chromium` (scripts/ensure-test-tools.sh installs it) and Playwright's Python client;
skipped, saying which is missing, where they are not installed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.browser import TIMEOUT_MS, needs_chromium
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.images import PYTHON_IMAGE
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform, wait_for

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's client is missing")
pytestmark = needs_chromium
DEPLOY_SECONDS = 180.0
"""A new revision of the live commit (its image reused or rebuilt from cache) goes live in
seconds here; the deadline allows for a loaded 2-core host."""
LOGIN = "dash-octo"
FIRST_GREETING = "hello from revision 1"
NEW_GREETING = "hello from the browser"

GREETER_APP = r'''
"""Says its GREETING at / and prints a line for every request (its server log)."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING", "hello from revision 1")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = GREETING.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print("served " + self.path, flush=True)

    def log_message(self, *args):
        pass


print("greeter listening", flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''
GREETER_DOCKERFILE = f"""FROM {PYTHON_IMAGE}
COPY app.py /app/app.py
CMD ["python3", "-u", "/app/app.py"]
"""


def served(platform: RunningPlatform, slug: str) -> str | None:
    response = platform.request(slug, "/")
    return response.text if response.status_code == 200 else None


def reload_until(page: Any, what: str, shows: Callable[[], bool]) -> None:
    """Reload the page (it is rendered on the server) until it shows what a person waits for."""

    def reloaded() -> bool:
        page.reload()
        return shows()

    wait_for(what, reloaded, DEPLOY_SECONDS, every=1.0)


def test_a_person_signs_in_reads_a_build_log_follows_logs_changes_env_and_rolls_back(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory, browser: Any
) -> None:
    repo, repository = make_repository(
        "greeter", {"Dockerfile": GREETER_DOCKERFILE, "app.py": GREETER_APP}
    )
    full_name = repository["full_name"]
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, _ = platform.settle(full_name, repo.head, frozenset({"live"}))
    slug = deployment["slug"]
    assert served(platform, slug) == FIRST_GREETING
    github.set_permission(full_name, LOGIN, "write")
    github.sign_in_browser(LOGIN)
    expect = sync_api.expect
    dashboard = f"{platform.api_url}/dashboard/"

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)

    # Signing in: the platform's page, GitHub's OAuth page, back signed in as that person.
    page.goto(dashboard)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("link", name="Sign in with GitHub").click()
    expect(page.get_by_role("heading", name="Deployments")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text(LOGIN)

    # The list: this repository's deployment, active, live at revision 1; nobody else's.
    rows = page.get_by_role("row").filter(has=page.get_by_role("link", name=slug, exact=True))
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(full_name)
    expect(rows).to_contain_text("active")
    expect(rows).to_contain_text("#1")
    expect(page.get_by_role("table").get_by_role("row")).to_have_count(2)  # header + this one

    # The deployment, then revision 1's build log (BuildKit's own lines).
    rows.get_by_role("link", name=slug, exact=True).click()
    expect(page.get_by_role("heading", name="Revisions")).to_be_visible()
    page.get_by_role("link", name="#1", exact=True).click()
    expect(page.get_by_role("heading", name="Build log")).to_be_visible()
    build_log = page.locator("pre.log")
    expect(build_log).to_contain_text("COPY app.py /app/app.py")
    page.go_back()

    # Server logs, live: what the replica printed on its start, then a request's line printed
    # after the page opened.
    server_log = page.locator("#server-log")
    expect(server_log).to_contain_text("greeter listening")
    marker = f"/browser-{uuid.uuid4().hex[:8]}"
    assert platform.request(slug, marker).status_code == 200
    expect(server_log).to_contain_text(f"served {marker}")

    # An env var through the form: a new revision of the same commit goes live with it.
    page.get_by_label("Name").fill("GREETING")
    page.get_by_label("Value").fill(NEW_GREETING)
    page.get_by_role("button", name="Save and redeploy").click()
    expect(page.get_by_role("status")).to_contain_text(f"changed by {LOGIN}")
    expect(page.get_by_role("cell", name=NEW_GREETING)).to_be_visible()
    wait_for(
        "the URL to serve the new GREETING",
        lambda: served(platform, slug) == NEW_GREETING,
        DEPLOY_SECONDS,
        every=0.5,
    )
    second = page.get_by_role("row").filter(has=page.get_by_role("link", name="#2", exact=True))
    reload_until(page, "revision #2 shown live", lambda: "live" in second.inner_text())
    expect(second).to_contain_text(LOGIN)

    # Roll back to revision 1 with its button: its image and env again, the old value served.
    page.get_by_role("button", name="Roll back to revision 1").click()
    expect(page.get_by_role("status")).to_contain_text("rollback")
    wait_for(
        "the URL to serve revision 1's GREETING again",
        lambda: served(platform, slug) == FIRST_GREETING,
        DEPLOY_SECONDS,
        every=0.5,
    )
    third = page.get_by_role("row").filter(has=page.get_by_role("link", name="#3", exact=True))
    reload_until(page, "revision #3 shown live", lambda: "live" in third.inner_text())
    expect(third).to_contain_text("(rollback)")
    expect(page.get_by_role("cell", name=NEW_GREETING)).to_have_count(0)

    # Still live on the page reloaded after the rollback (each reload opened a new follow of
    # the viewer's few): a line printed by revision 3's replica.
    again = f"/after-rollback-{uuid.uuid4().hex[:8]}"
    assert platform.request(slug, again).status_code == 200
    expect(server_log).to_contain_text(f"served {again}")
    page.close()
    github.assert_no_errors()
