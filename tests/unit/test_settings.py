"""Settings: a bad environment stops start-up with a message naming the variable to fix."""

from __future__ import annotations

import os
import re
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from app.bootstrap import replica_config
from app.kernel.settings import SettingsError, load_settings
from manifests.containers import Confinement, LogRotation


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app_key_pem: str) -> pytest.MonkeyPatch:
    """A complete, valid environment in an empty working directory (so no .env is read)."""
    for name in list(os.environ):
        if name.upper().startswith("SLIPWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLIPWAY_GITHUB_APP_ID", "1234")
    monkeypatch.setenv("SLIPWAY_GITHUB_PRIVATE_KEY", app_key_pem)
    monkeypatch.setenv("SLIPWAY_GITHUB_WEBHOOK_SECRET", "webhook-secret")
    return monkeypatch


def settings_error() -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


def test_a_missing_app_id_is_named(env: pytest.MonkeyPatch) -> None:
    env.delenv("SLIPWAY_GITHUB_APP_ID")
    message = settings_error()
    assert "SLIPWAY_GITHUB_APP_ID" in message
    assert "required" in message


def test_a_port_that_is_not_a_number_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_PORT", "eighty")
    message = settings_error()
    assert "SLIPWAY_PORT" in message
    assert "SLIPWAY_GITHUB_APP_ID" not in message


def test_every_bad_variable_is_named_in_one_message(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_PORT", "eighty")
    env.setenv("SLIPWAY_ROUTER_PORT", "70000")
    message = settings_error()
    assert "SLIPWAY_PORT" in message
    assert "SLIPWAY_ROUTER_PORT" in message


def test_half_an_app_in_the_environment_names_what_is_missing(env: pytest.MonkeyPatch) -> None:
    env.delenv("SLIPWAY_GITHUB_WEBHOOK_SECRET")
    env.delenv("SLIPWAY_GITHUB_PRIVATE_KEY")
    message = settings_error()
    assert "SLIPWAY_GITHUB_WEBHOOK_SECRET" in message
    assert "SLIPWAY_GITHUB_PRIVATE_KEY_PATH" in message
    assert "/setup" in message


def test_without_any_app_settings_the_platform_starts_for_setup(env: pytest.MonkeyPatch) -> None:
    for name in ("APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET"):
        env.delenv(f"SLIPWAY_GITHUB_{name}")
    settings = load_settings()
    assert not settings.github_app_in_env
    assert settings.private_key_pem is None
    assert str(settings.github_url) == "https://github.com/"


def test_the_github_web_url_is_a_setting_for_enterprise(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_GITHUB_URL", "https://github.example.com")
    assert str(load_settings().github_url).rstrip("/") == "https://github.example.com"


def test_without_any_private_key_both_ways_to_give_one_are_named(env: pytest.MonkeyPatch) -> None:
    env.delenv("SLIPWAY_GITHUB_PRIVATE_KEY")
    message = settings_error()
    assert re.search(r"SLIPWAY_GITHUB_PRIVATE_KEY(?!_PATH)", message)
    assert "SLIPWAY_GITHUB_PRIVATE_KEY_PATH" in message


def test_a_private_key_that_is_not_pem_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_GITHUB_PRIVATE_KEY", "ssh-rsa AAAAB3NzaC1yc2E this is a public key")
    message = settings_error()
    assert "SLIPWAY_GITHUB_PRIVATE_KEY" in message
    assert "PEM" in message


def test_a_private_key_file_that_does_not_exist_is_named(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "keys" / "slipway.private-key.pem"
    env.delenv("SLIPWAY_GITHUB_PRIVATE_KEY")
    env.setenv("SLIPWAY_GITHUB_PRIVATE_KEY_PATH", str(missing))
    message = settings_error()
    assert "SLIPWAY_GITHUB_PRIVATE_KEY_PATH" in message
    assert str(missing) in message


def test_a_private_key_file_that_is_not_pem_names_the_path_variable(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    public_key = tmp_path / "slipway.pub"
    public_key.write_text("ssh-rsa AAAAB3NzaC1yc2E not a private key\n")
    env.delenv("SLIPWAY_GITHUB_PRIVATE_KEY")
    env.setenv("SLIPWAY_GITHUB_PRIVATE_KEY_PATH", str(public_key))
    assert "SLIPWAY_GITHUB_PRIVATE_KEY_PATH" in settings_error()


def test_a_valid_environment_loads_with_the_control_plane_in_sqlite_under_data_dir(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("SLIPWAY_DATA_DIR", str(tmp_path / "state"))
    settings = load_settings()
    assert settings.github_app_id == 1234
    assert settings.github_webhook_secret is not None
    assert settings.github_webhook_secret.get_secret_value() == "webhook-secret"
    expected = (tmp_path / "state").resolve() / "slipway.db"
    assert settings.control_plane_url == f"sqlite:///{expected}"


def test_the_default_data_dir_is_dot_data_in_the_working_directory(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings()
    assert settings.control_plane_url == f"sqlite:///{tmp_path.resolve() / '.data' / 'slipway.db'}"


def test_an_explicit_database_url_is_used_as_the_control_plane(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_DATABASE_URL", "postgresql+psycopg://slipway@db.internal/slipway")
    assert load_settings().control_plane_url == "postgresql+psycopg://slipway@db.internal/slipway"


def test_a_private_key_can_come_from_a_file(
    env: pytest.MonkeyPatch, tmp_path: Path, app_key_pem: str
) -> None:
    key_file = tmp_path / "slipway.private-key.pem"
    key_file.write_text(app_key_pem)
    env.delenv("SLIPWAY_GITHUB_PRIVATE_KEY")
    env.setenv("SLIPWAY_GITHUB_PRIVATE_KEY_PATH", str(key_file))
    assert load_settings().private_key_pem == app_key_pem


def test_a_private_key_on_one_line_with_escaped_newlines_loads(
    env: pytest.MonkeyPatch, app_key_pem: str
) -> None:
    env.setenv("SLIPWAY_GITHUB_PRIVATE_KEY", app_key_pem.replace("\n", "\\n"))
    assert load_settings().private_key_pem == app_key_pem


def test_a_dot_env_file_in_the_working_directory_is_read(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.delenv("SLIPWAY_GITHUB_WEBHOOK_SECRET")
    (tmp_path / ".env").write_text("SLIPWAY_GITHUB_WEBHOOK_SECRET=from-dot-env\n")
    secret = load_settings().github_webhook_secret
    assert secret is not None and secret.get_secret_value() == "from-dot-env"


@pytest.mark.parametrize(
    ("router_port", "url"),
    [("8000", "http://shop.localhost:8000/"), ("80", "http://shop.localhost/")],
)
def test_deployment_urls_carry_the_router_port(
    env: pytest.MonkeyPatch, router_port: str, url: str
) -> None:
    env.setenv("SLIPWAY_ROUTER_PORT", router_port)
    assert load_settings().deployment_url("shop") == url


def test_the_base_domain_is_normalised(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_BASE_DOMAIN", "Apps.Example.COM.")
    env.setenv("SLIPWAY_ROUTER_PORT", "443")
    settings = load_settings()
    assert settings.hostname("shop") == "shop.apps.example.com"
    assert settings.deployment_url("shop") == "http://shop.apps.example.com:443/"


def test_a_base_domain_with_an_empty_label_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_BASE_DOMAIN", "apps..example.com")
    assert "SLIPWAY_BASE_DOMAIN" in settings_error()


def test_the_api_url_defaults_to_host_and_port(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_PORT", "9090")
    assert load_settings().api_url == "http://127.0.0.1:9090"
    env.setenv("SLIPWAY_PUBLIC_URL", "https://slipway.example.com/")
    assert load_settings().api_url == "https://slipway.example.com"


@pytest.mark.parametrize("secret", ["", "   ", "\t\n"])
def test_an_empty_webhook_secret_is_refused(env: pytest.MonkeyPatch, secret: str) -> None:
    env.setenv("SLIPWAY_GITHUB_WEBHOOK_SECRET", secret)
    message = settings_error()
    assert "SLIPWAY_GITHUB_WEBHOOK_SECRET" in message
    assert "empty" in message


def test_replicas_are_confined_by_default(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert replica_config(settings).confinement == Confinement(
        pids_limit=1024, logs=LogRotation(max_size="10m", max_files=3)
    )
    assert settings.container_network_pool == IPv4Network("172.16.0.0/16")


def test_the_confinement_settings_reach_the_replicas(env: pytest.MonkeyPatch) -> None:
    env.setenv("SLIPWAY_CONTAINER_PIDS_LIMIT", "256")
    env.setenv("SLIPWAY_CONTAINER_LOG_MAX_SIZE", "20M")
    env.setenv("SLIPWAY_CONTAINER_LOG_MAX_FILES", "5")
    env.setenv("SLIPWAY_CONTAINER_NETWORK_POOL", "172.20.0.0/20")

    settings = load_settings()

    confinement = replica_config(settings).confinement
    assert confinement.pids_limit == 256
    assert confinement.logs == LogRotation(max_size="20m", max_files=5)
    assert confinement.cap_drop == ("ALL",)
    assert settings.container_network_pool == IPv4Network("172.20.0.0/20")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SLIPWAY_CONTAINER_PIDS_LIMIT", "0", "greater than or equal to 1"),
        ("SLIPWAY_CONTAINER_LOG_MAX_SIZE", "lots", "a size such as"),
        ("SLIPWAY_CONTAINER_LOG_MAX_SIZE", "0m", "a size such as"),
        ("SLIPWAY_CONTAINER_LOG_MAX_FILES", "0", "greater than or equal to 1"),
        ("SLIPWAY_CONTAINER_NETWORK_POOL", "172.16.0.0/28", "at least one /27"),
        ("SLIPWAY_CONTAINER_NETWORK_POOL", "172.16.0.1/16", "IPv4 network"),
    ],
)
def test_a_bad_confinement_setting_is_named(
    env: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    env.setenv(variable, value)

    message = settings_error()

    assert f"{variable}: " in message
    assert says in message
