"""First run without an App: the setup token, the manifest, the one-time states, where
credentials come from, and the conversion against the fake GitHub (which then accepts the new
App's JWTs)."""

from __future__ import annotations

import html
import re
import sqlite3
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.di import Provide
from litestar.testing import create_test_client

from app.api.setup import TOKEN_COOKIE, SetupController, setup_page
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import GitHubAppRegistration
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.setup.credentials import (
    GitHubAppCredentials,
    GitHubAppMissing,
    GitHubAppUnreadable,
    LazyGitHubApp,
)
from app.setup.flow import (
    MAX_OPEN_STATES,
    STATE_LIFETIME,
    AppAlreadyConfigured,
    AppSetup,
    BadOrganization,
    ConvertedApp,
    ManifestCodeRefused,
    SetupStateRefused,
    SetupTokenRefused,
    TooManySetupPages,
    build_manifest,
    issue_state,
    load_manifest_template,
    new_app_url,
    spend_state,
)
from app.setup.manifests import GitHubManifestConverter
from app.setup.token import TOKEN_BYTES, SetupTokenFile, setup_token_path
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.apps import manifest_problems

PUBLIC_URL = "https://slipway.example.org"
SECRET_KEY = "unit-test-secret-key"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(autouse=True)
def no_slipway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("SLIPWAY_"):
            monkeypatch.delenv(name)


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", public_url=PUBLIC_URL, **overrides)


class RecordingConverter:
    """A ManifestConverter that hands out one App, or refuses every code."""

    def __init__(self, refuse: bool = False) -> None:
        self.codes: list[str] = []
        self.refuse = refuse

    def convert(self, code: str) -> ConvertedApp:
        self.codes.append(code)
        if self.refuse:
            raise ManifestCodeRefused("the code expired: start again from the setup page")
        return ConvertedApp(
            id=777,
            slug="slipway-octo",
            name="Slipway Octo",
            owner_login="octo",
            html_url="https://github.com/apps/slipway-octo",
            client_id="Iv23liabc",
            client_secret="client-secret-value",
            webhook_secret="webhook-secret-value",
            pem="-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-key\n-----END RSA PRIVATE KEY-----\n",
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_setup(
    tmp_path: Path,
    sessions: SessionFactory,
    clock: Clock,
    converter: RecordingConverter | None = None,
    **overrides: Any,
) -> tuple[AppSetup, GitHubAppCredentials]:
    config = settings(tmp_path, **overrides)
    token = SetupTokenFile(setup_token_path(config.data_dir))
    token.issue()  # as `slipway up` does on a start without an App
    box = SecretBox(SECRET_KEY)
    credentials = GitHubAppCredentials(config, sessions, box)
    setup = AppSetup(
        sessions=sessions,
        secrets=box,
        credentials=credentials,
        converter=converter or RecordingConverter(),
        manifest_template=load_manifest_template(),
        public_url=config.api_url,
        github_url=str(config.github_url),
        clock=clock,
        token=token,
    )
    return setup, credentials


def token_of(tmp_path: Path) -> str | None:
    """The token as the operator reads it from DATA_DIR/setup-token."""
    return SetupTokenFile(setup_token_path(tmp_path / "data")).read()


def state_of(action: str) -> str:
    return parse_qs(urlsplit(action).query)["state"][0]


# -- the setup token: who may create the App ---------------------------------------------


def setup_client(setup: AppSetup) -> Any:
    """The /setup pages over HTTP, cookies kept as a browser keeps them."""
    return create_test_client(
        base_url=PUBLIC_URL,  # https: the token's cookie is Secure
        route_handlers=[SetupController],
        dependencies={"app_setup": Provide(lambda: setup, sync_to_thread=False)},
    )


def test_setup_without_the_token_is_403_saying_where_the_token_is(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    setup, _ = make_setup(tmp_path, sessions, clock)
    with setup_client(setup) as stranger:
        for params in ({}, {"token": "guessed"}, {"token": token_of(tmp_path)[:-1]}):  # type: ignore[index]
            page = stranger.get("/setup", params=params)
            assert page.status_code == 403, page.text
            assert "DATA_DIR/setup-token" in page.text and "slipway up" in page.text
            assert "manifest" not in page.text and TOKEN_COOKIE not in page.cookies
    with pytest.raises(SetupTokenRefused, match="setup needs a token"):
        setup.start(None, None)


def test_a_stolen_state_without_the_token_stores_no_app(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    converter = RecordingConverter()
    setup, credentials = make_setup(tmp_path, sessions, clock, converter)
    token = token_of(tmp_path)
    state = state_of(setup.start(None, token).action)  # the holder's, seen on its way to GitHub

    with setup_client(setup) as stranger:
        refused = stranger.get("/setup/callback", params={"code": "abc123", "state": state})
        assert refused.status_code == 403, refused.text
    with pytest.raises(SetupTokenRefused):
        setup.complete("abc123", state, "guessed")

    assert converter.codes == [] and credentials.current() is None
    setup.complete("abc123", state, token)  # the holder's state was not spent by the stranger
    assert credentials.current() is not None


def test_anonymous_loads_do_not_lock_out_the_token_holder(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    setup, _ = make_setup(tmp_path, sessions, clock)
    with setup_client(setup) as stranger:
        for _ in range(MAX_OPEN_STATES + 20):
            assert stranger.get("/setup").status_code == 403
    with sqlite3.connect(tmp_path / "control-plane.db") as db:
        assert db.execute("SELECT count(*) FROM setup_states").fetchone() == (0,)
    with setup_client(setup) as holder:
        assert holder.get("/setup", params={"token": token_of(tmp_path)}).status_code == 200


def test_the_token_holder_goes_through_github_and_back_with_the_cookie(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    setup, credentials = make_setup(tmp_path, sessions, clock)
    token = token_of(tmp_path)
    with setup_client(setup) as browser:
        page = browser.get("/setup", params={"token": token})
        assert page.status_code == 200, page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "path=/setup" in cookie and "secure" in cookie
        action = re.search(r'<form id="create" action="([^"]+)"', page.text)
        assert action is not None
        # GitHub's redirect back carries code and state only; the cookie brings the token.
        state = state_of(html.unescape(action.group(1)))
        done = browser.get("/setup/callback", params={"code": "abc123", "state": state})
        assert done.status_code == 200, done.text
    assert credentials.current() is not None
    assert not setup_token_path(tmp_path / "data").exists()
    with setup_client(setup) as browser:
        assert browser.get("/setup", params={"token": token}).status_code == 404


def test_the_token_file_is_private_random_and_new_at_each_issue(tmp_path: Path) -> None:
    file = SetupTokenFile(setup_token_path(tmp_path))
    first, second = file.issue(), file.issue()
    assert first != second and file.read() == second
    assert not file.matches(first) and file.matches(second) and not file.matches(None)
    assert len(first) * 6 >= TOKEN_BYTES * 8 >= 128  # urlsafe base64: 6 bits a character
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["setup-token"]  # no partial file left
    file.spend()
    assert file.read() is None and not file.matches(second)


# -- the manifest ------------------------------------------------------------------------


def test_the_manifest_is_app_yml_pointed_at_the_public_url() -> None:
    manifest = build_manifest(load_manifest_template(), PUBLIC_URL + "/")
    assert manifest["url"] == PUBLIC_URL
    assert manifest["hook_attributes"] == {"url": f"{PUBLIC_URL}/webhooks/github", "active": True}
    assert manifest["redirect_url"] == f"{PUBLIC_URL}/setup/callback"
    assert manifest["default_permissions"]["checks"] == "write"
    assert manifest["default_permissions"]["contents"] == "read"
    assert set(manifest["default_events"]) == {"push", "pull_request", "check_run", "check_suite"}
    assert "example.com" not in str(manifest)
    assert manifest_problems(manifest) == []  # what GitHub checks, as the fake knows it


def test_the_form_goes_to_the_account_or_the_organisation_with_the_state() -> None:
    assert new_app_url("https://github.com/", "s1", None) == (
        "https://github.com/settings/apps/new?state=s1"
    )
    assert new_app_url("https://ghe.example.org", "s 2", "acme-corp") == (
        "https://ghe.example.org/organizations/acme-corp/settings/apps/new?state=s+2"
    )


def test_the_page_carries_the_manifest_in_the_form_without_javascript(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    setup, _ = make_setup(tmp_path, sessions, clock)
    page = setup_page(setup.start("acme", token_of(tmp_path))).content
    assert isinstance(page, str)
    assert "<script" not in page
    action = re.search(r'<form id="create" action="([^"]+)" method="post">', page)
    field = re.search(r'<input type="hidden" name="manifest" value="([^"]*)">', page)
    assert action is not None and field is not None
    assert html.unescape(action.group(1)).startswith(
        "https://github.com/organizations/acme/settings/apps/new?state="
    )
    manifest = html.unescape(field.group(1))
    assert f'"redirect_url": "{PUBLIC_URL}/setup/callback"' in manifest


def test_a_name_that_cannot_be_an_organisation_is_refused(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    setup, _ = make_setup(tmp_path, sessions, clock)
    with pytest.raises(BadOrganization, match="not a GitHub organisation name"):
        setup.start("../evil", token_of(tmp_path))
    assert (
        "/settings/apps/new" in setup.start("  ", token_of(tmp_path)).action
    )  # blank: the user's own account


# -- one-time states ---------------------------------------------------------------------


def test_a_state_is_good_once(sessions: SessionFactory, clock: Clock) -> None:
    with sessions() as session:
        state = issue_state(session, clock())
        spend_state(session, state, clock())
        with pytest.raises(SetupStateRefused, match="already used"):
            spend_state(session, state, clock())


def test_an_unknown_state_is_refused(sessions: SessionFactory, clock: Clock) -> None:
    with sessions() as session:
        issue_state(session, clock())
        with pytest.raises(SetupStateRefused, match="not one Slipway issued"):
            spend_state(session, "made-up", clock())


def test_a_state_expires_after_its_hour(sessions: SessionFactory, clock: Clock) -> None:
    with sessions() as session:
        state = issue_state(session, clock())
        clock.now += STATE_LIFETIME + timedelta(seconds=1)
        with pytest.raises(SetupStateRefused, match="expired"):
            spend_state(session, state, clock())


def test_only_hashes_of_states_are_stored(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    with sessions() as session:
        state = issue_state(session, clock())
    with sqlite3.connect(tmp_path / "control-plane.db") as db:
        stored = db.execute("SELECT state_hash FROM setup_states").fetchall()
    assert len(stored) == 1 and state not in str(stored)


# -- completing the setup ----------------------------------------------------------------


def test_the_callback_stores_the_app_encrypted_and_closes_the_setup(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    converter = RecordingConverter()
    setup, credentials = make_setup(tmp_path, sessions, clock, converter)
    assert credentials.current() is None
    token = token_of(tmp_path)
    state = state_of(setup.start(None, token).action)

    created = setup.complete("abc123", state, token)

    assert converter.codes == ["abc123"]
    assert created.install_url == "https://github.com/apps/slipway-octo/installations/new"
    found = credentials.current()
    assert found is not None and found.source == "setup"
    assert (found.app_id, found.webhook_secret) == (777, "webhook-secret-value")
    assert "webhook-secret-value" not in repr(found)
    with sqlite3.connect(tmp_path / "control-plane.db") as db:
        row = db.execute("SELECT * FROM github_apps").fetchall()
    for secret in ("client-secret-value", "webhook-secret-value", "not-a-real-key"):
        assert secret not in str(row)
    assert token_of(tmp_path) is None  # the token is spent with the App's arrival
    with pytest.raises(AppAlreadyConfigured):
        setup.start(None, token)
    with pytest.raises(AppAlreadyConfigured):
        setup.complete("abc123", state, token)


def test_a_refused_code_spends_the_state_and_a_new_start_works(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    setup, credentials = make_setup(tmp_path, sessions, clock, RecordingConverter(refuse=True))
    token = token_of(tmp_path)
    state = state_of(setup.start(None, token).action)
    with pytest.raises(ManifestCodeRefused, match="start again"):
        setup.complete("expired-code", state, token)
    assert credentials.current() is None
    assert state_of(setup.start(None, token).action) != state


def test_a_callback_without_state_or_code_is_refused(
    tmp_path: Path, sessions: SessionFactory, clock: Clock
) -> None:
    converter = RecordingConverter()
    setup, _ = make_setup(tmp_path, sessions, clock, converter)
    token = token_of(tmp_path)
    with pytest.raises(SetupStateRefused, match="no state"):
        setup.complete("abc", None, token)
    with pytest.raises(ManifestCodeRefused, match="no usable code"):
        setup.complete("../../x", state_of(setup.start(None, token).action), token)
    assert converter.codes == []


# -- where the credentials come from ---------------------------------------------------


def store_app(sessions: SessionFactory, app_id: int = 777) -> None:
    box = SecretBox(SECRET_KEY)
    with sessions() as session:
        session.add(
            GitHubAppRegistration(
                id=app_id,
                slug="stored",
                name="Stored",
                owner_login="octo",
                html_url="https://github.com/apps/stored",
                client_id="Iv23li",
                client_secret_encrypted=box.encrypt("cs"),
                webhook_secret_encrypted=box.encrypt("stored-secret"),
                private_key_encrypted=box.encrypt("stored-pem"),
            )
        )
        session.commit()


def test_app_settings_in_the_environment_win_over_the_stored_app(
    tmp_path: Path, sessions: SessionFactory, clock: Clock, app_key_pem: str
) -> None:
    store_app(sessions)
    setup, credentials = make_setup(
        tmp_path,
        sessions,
        clock,
        github_app_id=42,
        github_private_key=app_key_pem,
        github_webhook_secret="env-secret",
    )
    found = credentials.current()
    assert found is not None
    assert (found.app_id, found.webhook_secret, found.source) == (42, "env-secret", "environment")
    with pytest.raises(AppAlreadyConfigured):
        setup.start(None, token_of(tmp_path))


def test_without_an_app_the_credentials_say_where_to_make_one_and_find_it_later(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    credentials = GitHubAppCredentials(settings(tmp_path), sessions, SecretBox(SECRET_KEY))
    with pytest.raises(GitHubAppMissing, match=f"open {PUBLIC_URL}/setup"):
        credentials.require()
    assert credentials.cached() is None
    store_app(sessions)
    assert credentials.cached() is None  # the hot path never reads the database
    assert credentials.require().webhook_secret == "stored-secret"
    with sessions() as session:  # found once, kept: the row is not read again
        session.delete(session.get(GitHubAppRegistration, 777))
        session.commit()
    cached = credentials.cached()
    assert cached is not None and cached.app_id == 777


# -- against the fake GitHub -------------------------------------------------------------


@pytest.fixture
def fake(app_key_pem: str) -> Iterator[FakeGitHub]:
    with FakeGitHub(private_key_pem=app_key_pem) as github:
        yield github


def test_the_code_buys_the_app_once_and_its_key_signs_jwts_github_accepts(
    tmp_path: Path, sessions: SessionFactory, fake: FakeGitHub, app_key_pem: str
) -> None:
    manifest = build_manifest(load_manifest_template(), PUBLIC_URL)
    code = fake.create_app_from_manifest(manifest, organization="acme", private_key_pem=app_key_pem)
    converter = GitHubManifestConverter(fake.url)

    converted = converter.convert(code)

    assert converted.id == fake.app_id and converted.owner_login == "acme"
    assert converted.webhook_secret == fake.webhook_secret
    assert converted.pem == app_key_pem
    assert "BEGIN" not in repr(converted)
    with pytest.raises(ManifestCodeRefused, match="good once and for one hour"):
        converter.convert(code)
    assert fake.manifest_conversions == 1

    store_app(sessions, app_id=converted.id)
    box = SecretBox(SECRET_KEY)
    with sessions() as session:
        row = session.get(GitHubAppRegistration, converted.id)
        assert row is not None
        row.private_key_encrypted = box.encrypt(converted.pem)
        session.add(row)
        session.commit()
    fake.add_installation(9, "acme", account_type="Organization")
    lazy = LazyGitHubApp(
        GitHubAppCredentials(settings(tmp_path), sessions, box),
        fake.url,
        transport=httpx.HTTPTransport(),
    )
    assert lazy.installation_token(9).startswith("ghs_")
    fake.assert_no_errors()


def test_the_fake_refuses_a_manifest_github_would_refuse(fake: FakeGitHub) -> None:
    manifest = build_manifest(load_manifest_template(), PUBLIC_URL)
    manifest["default_events"] = [*manifest["default_events"], "installation"]
    del manifest["redirect_url"]
    with pytest.raises(ValueError, match="redirect_url") as refused:
        fake.create_app_from_manifest(manifest)
    assert "'installation' is not an event" in str(refused.value)


def test_an_app_stored_with_another_secret_key_says_how_to_recover(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    store_app(sessions)
    credentials = GitHubAppCredentials(settings(tmp_path), sessions, SecretBox("another-key"))

    with pytest.raises(GitHubAppUnreadable, match="restore that key"):
        credentials.require()


def test_open_setup_pages_are_bounded(sessions: SessionFactory, clock: Clock) -> None:
    with sessions() as session:
        for _ in range(MAX_OPEN_STATES):
            issue_state(session, clock())
        with pytest.raises(TooManySetupPages, match="use one of them"):
            issue_state(session, clock())


# -- what `slipway up` says --------------------------------------------------------------------


def announce(config: Settings, sessions: SessionFactory) -> None:
    """What `slipway up` does: the prepare child makes the link, the supervisor prints it."""
    from app.bootstrap import secret_box
    from app.server.prepare import setup_link
    from app.server.supervisor import Supervisor

    supervisor = Supervisor()
    supervisor.data_dir = config.data_dir
    config.data_dir.mkdir(parents=True, exist_ok=True)
    link = setup_link(config, sessions, secret_box(config))
    supervisor._announce({"info": {"api": config.api_url}, "setup_link": link})


def test_a_start_without_an_app_prints_the_link_with_a_new_token(
    tmp_path: Path, sessions: SessionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = settings(tmp_path, secret_key=SECRET_KEY)
    announce(config, sessions)
    first = token_of(tmp_path)
    announce(config, sessions)  # a restart: a token of its own

    printed = capsys.readouterr().out.splitlines()
    token = token_of(tmp_path)
    assert first is not None and token is not None and token != first
    assert printed[-1] == f"Slipway is up: to connect GitHub, open {PUBLIC_URL}/setup?token={token}"
    assert stat.S_IMODE(setup_token_path(tmp_path / "data").stat().st_mode) == 0o600


def test_a_start_with_an_app_spends_a_leftover_token(
    tmp_path: Path, sessions: SessionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = settings(tmp_path, secret_key=SECRET_KEY)
    SetupTokenFile(setup_token_path(config.data_dir)).issue()
    store_app(sessions)

    announce(config, sessions)

    assert token_of(tmp_path) is None
    assert "setup" not in capsys.readouterr().out
