"""The CLI's stored token goes to the platform it was stored for, and nowhere else."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.cli import client
from app.cli.client import (
    OLD_TOKEN_VARIABLE,
    TOKEN_VARIABLE,
    URL_VARIABLE,
    ClientError,
    Login,
    find_login,
    save_login,
)
from tests.unit.cli_harness import Cli

STORED_URL = "https://slipway.example.org"
STORED_TOKEN = "slw_stored-token-value"


@pytest.fixture(autouse=True)
def no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (URL_VARIABLE, TOKEN_VARIABLE, OLD_TOKEN_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(client, "local_login", lambda: None)  # not on a platform's machine


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    path = tmp_path / "config" / "slipway" / "login.json"
    save_login(Login(url=STORED_URL, token=STORED_TOKEN), path)
    return path


class Recorder(BaseHTTPRequestHandler):
    """Someone else's server: it records the Authorization header it is sent."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        Recorder.seen.append(self.headers.get("Authorization"))
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def other_server() -> Iterator[str]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_stored_token_is_not_sent_to_another_url(slipway: Cli, other_server: str) -> None:
    save_login(Login(url=STORED_URL, token=STORED_TOKEN), slipway.login_path)

    ran = slipway("deployments", "list", "--json", "--url", other_server)

    assert ran.code == 4  # authentication: log in there, or give its token
    assert Recorder.seen == []  # not even a request without it
    assert f"no token for {other_server}" in ran.err
    assert f"slipway auth login {other_server}" in ran.err
    assert TOKEN_VARIABLE in ran.err and STORED_TOKEN not in ran.err


def test_a_token_given_for_the_other_url_is_the_one_sent(
    slipway: Cli, other_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_login(Login(url=STORED_URL, token=STORED_TOKEN), slipway.login_path)
    monkeypatch.setenv(TOKEN_VARIABLE, "slw_for-the-other-one")

    assert slipway("deployments", "list", "--json", "--url", other_server).code == 0

    assert Recorder.seen == ["Bearer slw_for-the-other-one"]


@pytest.mark.parametrize(
    "url", [STORED_URL, STORED_URL + "/", "HTTPS://Slipway.Example.org:443", None]
)
def test_the_stored_token_goes_to_its_own_url_however_it_is_written(
    stored: Path, url: str | None
) -> None:
    login = find_login(url, stored)
    assert login.token == STORED_TOKEN


@pytest.mark.parametrize(
    "url",
    [
        "http://slipway.example.org",  # another scheme: the token would cross in clear text
        "https://slipway.example.org.evil.test",
        "https://slipway.example.org:8443",
        "https://evil.test/?https://slipway.example.org",
        "https://slipway.example.org/other",
    ],
)
def test_a_url_that_only_looks_like_the_stored_one_gets_no_token(stored: Path, url: str) -> None:
    with pytest.raises(ClientError, match="no token for"):
        find_login(url, stored)


def test_the_url_from_the_environment_is_held_to_the_same_rule(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_VARIABLE, "https://elsewhere.example.net")
    with pytest.raises(
        ClientError, match=re.escape("stored login is for https://slipway.example.org")
    ):
        find_login(None, stored)
