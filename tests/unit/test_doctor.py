"""`slipway doctor`'s checks of DNS, disk and the GitHub App, on a fake resolver, a temporary
DATA_DIR and the fake GitHub: each problem named, with its one-line fix. (The engine, ports,
PUBLIC_URL and ACME checks run against real parts in tests/integration/test_service.py.)"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.kernel.crypto import SecretBox
from app.kernel.db import migrate
from app.kernel.settings import Settings
from app.server import doctor
from app.server.doctor import FAIL, OK, WARN, AppOnGitHub, Finding, check_app, check_disk, check_dns
from app.setup.flow import load_manifest_template
from tests.support.fake_github import FakeGitHub

PUBLIC_URL = "https://slipway.example.com"
SECRET_KEY = "doctor-secret-key-" + "x" * 20


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", public_url=PUBLIC_URL, **overrides)


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


# -- DNS -----------------------------------------------------------------------------------
class _Zone:
    """A resolver that knows some names; the others do not resolve, as getaddrinfo says."""

    def __init__(self, records: dict[str, list[str]], wildcard: list[str] | None = None) -> None:
        self.records, self.wildcard = records, wildcard
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        if name in self.records:
            return self.records[name]
        if self.wildcard is not None and name.endswith(".apps.example.org"):
            return self.wildcard
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_dns_names_the_base_domain_and_its_wildcard_record_each_with_its_record_to_create(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, base_domain="apps.example.org")
    found = _by_check(check_dns(settings, _Zone({"apps.example.org": ["203.0.113.7"]})))

    assert found["DNS apps.example.org"] == Finding("DNS apps.example.org", OK, "203.0.113.7")
    wildcard = found["DNS *.apps.example.org"]
    assert wildcard.state == FAIL
    assert "does not resolve: Name or service not known" in wildcard.detail
    assert wildcard.fix == (
        "create an A (or AAAA) record *.apps.example.org pointing at this machine's public address"
    )

    zone = _Zone({}, wildcard=["203.0.113.7"])
    found = _by_check(check_dns(settings, zone))
    assert found["DNS apps.example.org"].state == FAIL
    assert "record apps.example.org pointing" in found["DNS apps.example.org"].fix
    assert found["DNS *.apps.example.org"].state == OK
    # The wildcard is probed with a name nobody made: a random label under the domain.
    [probe] = [name for name in zone.asked if name != "apps.example.org"]
    assert probe.startswith("slipway-doctor-") and probe.endswith(".apps.example.org")


def test_dns_on_localhost_warns_that_deployments_answer_on_this_machine_only(
    tmp_path: Path,
) -> None:
    def never(name: str) -> list[str]:
        raise AssertionError("localhost is not looked up")

    [finding] = check_dns(_settings(tmp_path, base_domain="localhost"), never)
    assert finding.state == WARN and "this machine only" in finding.detail
    assert finding.fix == "set SLIPWAY_BASE_DOMAIN to a domain whose records point here"


# -- disk ----------------------------------------------------------------------------------
def test_disk_is_measured_where_data_dir_will_be_and_low_space_fails_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)  # DATA_DIR not made yet: its nearest existing parent
    free = shutil.disk_usage(tmp_path).free
    found = _by_check(check_disk(settings))["disk (DATA_DIR)"]
    assert found.state == OK and found.detail.endswith(f" GiB free at {tmp_path}")

    monkeypatch.setattr(doctor, "MIN_FREE_DISK_BYTES", free * 4)
    low = _by_check(check_disk(settings))["disk (DATA_DIR)"]
    assert low.state == FAIL
    assert low.fix == (
        "free space: `docker system prune`, fewer backups (SLIPWAY_BACKUP_KEEP), or a larger disk"
    )


# -- the GitHub App ------------------------------------------------------------------------
NEEDED = load_manifest_template()


def _as_made() -> AppOnGitHub:
    """An App as /setup makes it from app.yml for PUBLIC_URL."""
    return AppOnGitHub(
        webhook_url=PUBLIC_URL + "/webhooks/github",
        permissions={"metadata": "read", **NEEDED["default_permissions"]},
        events=list(NEEDED["default_events"]),
    )


def test_no_app_anywhere_fails_with_the_setup_link(tmp_path: Path) -> None:
    def never(*args: object) -> AppOnGitHub:
        raise AssertionError("no App: GitHub is not asked")

    [finding] = check_app(_settings(tmp_path), read=never)
    assert finding.check == "GitHub App" and finding.state == FAIL
    assert f"{PUBLIC_URL}/setup?token=" in finding.fix


@pytest.fixture
def env_app(tmp_path: Path, app_key_pem: str) -> Settings:
    return _settings(
        tmp_path,
        github_app_id=4242,
        github_private_key=app_key_pem,
        github_webhook_secret="w" * 32,
    )


def test_an_app_as_setup_made_it_passes_every_app_check(env_app: Settings) -> None:
    asked: list[int] = []

    def read(settings: Settings, app_id: int, key: str) -> AppOnGitHub:
        asked.append(app_id)
        assert "PRIVATE KEY" in key
        return _as_made()

    found = check_app(env_app, read=read)
    assert [(f.check, f.state) for f in found] == [
        ("GitHub App", OK),
        ("GitHub App webhook", OK),
        ("GitHub App permissions", OK),
        ("GitHub App events", OK),
    ]
    assert asked == [4242]


def test_a_moved_webhook_a_missing_permission_and_event_are_each_named_with_the_fix(
    env_app: Settings,
) -> None:
    made = _as_made()
    granted = {**made.permissions, "checks": "read"}  # write needed
    del granted["deployments"]
    changed = AppOnGitHub(
        webhook_url="https://old.example.net/webhooks/github",
        permissions=granted,
        events=[e for e in made.events if e != "check_suite"],
    )

    found = _by_check(check_app(env_app, read=lambda *args: changed))

    webhook = found["GitHub App webhook"]
    assert webhook.state == FAIL
    assert webhook.detail == (
        f"GitHub delivers to https://old.example.net/webhooks/github, not "
        f"{PUBLIC_URL}/webhooks/github"
    )
    assert webhook.fix.startswith(f"set the Webhook URL to {PUBLIC_URL}/webhooks/github on the")
    permissions = found["GitHub App permissions"]
    assert permissions.state == FAIL
    assert permissions.detail == "not granted: checks: write, deployments: write"
    assert permissions.fix.startswith("grant checks: write, deployments: write on the App's page")
    events = found["GitHub App events"]
    assert events.state == FAIL and events.detail == "not subscribed: check_suite"
    assert "\n" not in webhook.fix + permissions.fix + events.fix


def test_github_not_answering_leaves_the_app_settings_unchecked_with_a_warning(
    env_app: Settings,
) -> None:
    def down(*args: object) -> AppOnGitHub:
        raise ConnectionError("connection refused")

    found = _by_check(check_app(env_app, read=down))
    assert found["GitHub App"].state == OK
    unchecked = found["GitHub App settings"]
    assert unchecked.state == WARN and "did not answer: connection refused" in unchecked.detail
    assert unchecked.fix == "check SLIPWAY_GITHUB_API_URL and this machine's way out to it"


@pytest.fixture
def github(app_key_pem: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(private_key_pem=app_key_pem).start()
    try:
        yield fake
    finally:
        fake.stop()


def test_a_stored_app_is_read_from_github_with_its_stored_key(
    tmp_path: Path, app_key_pem: str, github: FakeGitHub
) -> None:
    """The App /setup stored: its key opens with SECRET_KEY, GitHub (the fake, over HTTP) is
    asked as the App; its webhook URL moved on GitHub is then named."""
    settings = _settings(tmp_path, github_api_url=github.url, secret_key=SECRET_KEY)
    settings.data_dir.mkdir()
    migrate(settings.control_plane_url, settings.data_dir)
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.control_plane_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO github_apps (id, slug, name, owner_login, html_url, client_id, "
                "client_secret_encrypted, webhook_secret_encrypted, private_key_encrypted, "
                "created_at) VALUES (:id, 'slipway-octo', 'Slipway', 'octo', "
                "'https://github.com/apps/slipway-octo', 'Iv1', 'x', 'x', :key, :now)"
            ),
            {
                "id": github.app_id,
                "key": SecretBox(SECRET_KEY).encrypt(app_key_pem),
                "now": datetime.now(UTC).replace(tzinfo=None),
            },
        )
    engine.dispose()
    github.hook_url = PUBLIC_URL + "/webhooks/github"

    found = _by_check(doctor.check_app(settings))
    assert found["GitHub App"].detail == "App slipway-octo made at /setup"
    assert {k: f.state for k, f in found.items()} == {
        "GitHub App": OK,
        "GitHub App webhook": OK,
        "GitHub App permissions": OK,
        "GitHub App events": OK,
    }, found

    github.hook_url = "https://elsewhere.example.net/webhooks/github"
    github.app_events = [e for e in github.app_events if e != "pull_request"]
    found = _by_check(doctor.check_app(settings))
    assert found["GitHub App webhook"].state == FAIL
    assert found["GitHub App events"].detail == "not subscribed: pull_request"

    other_key = _settings(tmp_path, github_api_url=github.url, secret_key="another-" + "k" * 30)
    found = _by_check(doctor.check_app(other_key))
    assert found["GitHub App settings"].state == WARN
    assert "does not open with this SECRET_KEY" in found["GitHub App settings"].detail
    github.assert_no_errors()
