"""First run: `slipway up` with no App settings prints a setup link with a one-time token; only
its holder makes the App at /setup through GitHub's manifest flow, and the next push deploys,
with no restart in between."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.setup.flow import MAX_OPEN_STATES
from tests.support.apps import static_site
from tests.support.fake_github import FakeGitHub
from tests.support.platform import (
    ACCOUNT,
    INSTALLATION_ID,
    RunningPlatform,
    connect_repository,
    start_platform,
    wait_for,
)

FORM = re.compile(r'<form id="create" action="([^"]+)" method="post">')
MANIFEST_FIELD = re.compile(r'<input type="hidden" name="manifest" value="([^"]*)">')
INSTALL_LINK = re.compile(r'<a id="install" href="([^"]+)">')
SETUP_LINK = re.compile(r"open (http://\S+/setup\?token=(\S+))")


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A GitHub of its own: creating an App from the manifest makes this fake that App."""
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def first_run(
    tmp_path: Path, github: FakeGitHub, base_images: dict[str, str]
) -> Iterator[RunningPlatform]:
    platform = start_platform(tmp_path / "platform", github, app_settings=False)
    yield platform
    platform.stop_and_clean()


def test_the_app_is_made_at_setup_and_the_next_push_deploys_without_a_restart(
    first_run: RunningPlatform, github: FakeGitHub, tmp_path: Path
) -> None:
    platform = first_run
    setup_url = f"{platform.api_url}/setup"
    printed = wait_for(
        "`slipway up` to print the setup link with its token",
        lambda: SETUP_LINK.search(platform.log_path.read_text()),
        30,
    )
    token = printed.group(2)
    assert printed.group(1) == f"{setup_url}?token={token}"
    token_file = platform.data_dir / "setup-token"
    assert token_file.read_text().strip() == token and token_file.stat().st_mode & 0o777 == 0o600
    early = platform.send("ping", {"zen": "Keep it logically awesome."}, secret="anything")
    assert early.status_code == 503
    assert f"no GitHub App is configured yet: open {setup_url}" in early.text
    assert token not in early.text

    # A stranger who reaches the fresh install gets nowhere, and cannot use up the pages.
    with httpx.Client(timeout=10, trust_env=False) as stranger:
        for _ in range(MAX_OPEN_STATES + 1):
            refused = stranger.get(setup_url)
            assert refused.status_code == 403, refused.text
        assert "DATA_DIR/setup-token" in refused.text and "slipway up" in refused.text
        assert stranger.get(setup_url, params={"token": "guessed"}).status_code == 403
    assert platform.client.get(printed.group(1)).status_code == 200  # the holder is not locked out

    # A code GitHub no longer honours (or a made-up state) ends on a page that says so and
    # links back to the start.
    stale = FORM.search(platform.client.get(setup_url).text)
    assert stale is not None
    stale_state = parse_qs(urlsplit(html.unescape(stale.group(1))).query)["state"][0]
    expired = platform.client.get(
        f"{setup_url}/callback", params={"code": "0123abcd", "state": stale_state}
    )
    assert expired.status_code == 400
    assert "GitHub did not hand over the new App (HTTP 404)" in expired.text
    assert '<a href="/setup">Start again</a>' in expired.text
    with httpx.Client(
        timeout=10, trust_env=False
    ) as stranger:  # a state seen on its way, without the token
        stolen = stranger.get(f"{setup_url}/callback", params={"code": "1", "state": stale_state})
        assert stolen.status_code == 403, stolen.text
    forged = platform.client.get(f"{setup_url}/callback", params={"code": "1", "state": "forged"})
    assert forged.status_code == 400
    assert "this setup link is not one Slipway issued" in forged.text
    for_org = FORM.search(platform.client.get(setup_url, params={"organization": "acme"}).text)
    assert for_org is not None
    assert html.unescape(for_org.group(1)).startswith(
        f"{github.url}/organizations/acme/settings/apps/new?state="
    )

    # The setup page: a form that posts the manifest to GitHub, the state in its action.
    page = platform.client.get(setup_url)
    assert page.status_code == 200, page.text
    assert "Connect Slipway to GitHub" in page.text
    form, field = FORM.search(page.text), MANIFEST_FIELD.search(page.text)
    assert form is not None and field is not None, page.text
    action = html.unescape(form.group(1))
    assert action.startswith(f"{github.url}/settings/apps/new?state=")
    manifest = html.unescape(field.group(1))
    assert f'"url": "{platform.api_url}/webhooks/github"' in manifest

    # The browser posts the form; GitHub creates the App and sends the browser back.
    created = platform.client.post(action, data={"manifest": manifest})
    assert created.status_code == 302, created.text
    callback = created.headers["Location"]
    assert callback.startswith(f"{platform.api_url}/setup/callback?code=")
    assert parse_qs(urlsplit(callback).query)["state"] == parse_qs(urlsplit(action).query)["state"]

    done = platform.client.get(callback)
    assert done.status_code == 200, done.text
    assert "GitHub App created" in done.text
    install = INSTALL_LINK.search(done.text)
    assert install is not None
    assert html.unescape(install.group(1)) == f"{github.url}/apps/slipway/installations/new"
    assert github.manifest_conversions == 1
    secret = github.webhook_secret
    assert secret is not None
    for shown in (done.text, platform.log_path.read_text()):
        assert secret not in shown
        assert "PRIVATE KEY" not in shown

    # The App is installed; a push signed with its new secret deploys: the API checked the
    # signature and the worker signed App JWTs with the stored key, neither restarted.
    platform.app_id, platform.webhook_secret = github.app_id, secret
    github.add_installation(INSTALLATION_ID, ACCOUNT)
    repo, repository = connect_repository(
        platform, github, tmp_path / "first-site", static_site("made at setup")
    )
    pushed = platform.push(repository, INSTALLATION_ID, "0" * 40, repo.head)
    assert pushed.status_code == 202, pushed.text
    deployment, revision = platform.settle(repository["full_name"], repo.head)
    assert revision["state"] == "live", revision["error"]

    def serves() -> bool:
        try:
            return platform.request(deployment["slug"]).text == "made at setup\n"
        except httpx.HTTPError:
            return False

    wait_for("the deployment to serve the commit", serves, 30)

    # Setup is closed now: the token is spent and its link cannot be used again.
    assert not token_file.exists()
    assert platform.client.get(setup_url).status_code == 404
    again = platform.client.get(callback)
    assert again.status_code == 404
    assert "setup is closed" in again.text
    assert platform.send("ping", {"zen": "x"}, secret="not-the-secret").status_code == 401
    github.assert_no_errors()
