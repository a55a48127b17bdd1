"""The CLI's stored token goes to the platform it was stored for, and nowhere else."""

from __future__ import annotations

import argparse
import io
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app import client
from app.client import TOKEN_VARIABLE, URL_VARIABLE, ClientError, Login, find_login, save_login
from app.commands import Console, run_command

STORED_URL = "https://slipway.example.org"
STORED_TOKEN = "slw_stored-token-value"


@pytest.fixture(autouse=True)
def no_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (URL_VARIABLE, TOKEN_VARIABLE):
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


def command(url: str | None, token: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(command="deployments", url=url, token=token, json=True)


def test_a_stored_token_is_not_sent_to_another_url(
    stored: Path, other_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.commands.config_path", lambda environ=None: stored)
    err = io.StringIO()

    code = run_command(
        command(other_server), console=Console(out=io.StringIO(), err=err, json=True)
    )

    assert code == 1
    assert Recorder.seen == []  # not even a request without it
    assert f"no token for {other_server}" in err.getvalue()
    assert f"slipway login {other_server}" in err.getvalue()
    assert TOKEN_VARIABLE in err.getvalue() and STORED_TOKEN not in err.getvalue()


def test_a_token_given_for_the_other_url_is_the_one_sent(
    stored: Path, other_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.commands.config_path", lambda environ=None: stored)
    monkeypatch.setenv(TOKEN_VARIABLE, "slw_for-the-other-one")

    assert (
        run_command(
            command(other_server), console=Console(out=io.StringIO(), err=io.StringIO(), json=True)
        )
        == 0
    )

    assert Recorder.seen == ["Bearer slw_for-the-other-one"]


@pytest.mark.parametrize(
    "url", [STORED_URL, STORED_URL + "/", "HTTPS://Slipway.Example.org:443", None]
)
def test_the_stored_token_goes_to_its_own_url_however_it_is_written(
    stored: Path, url: str | None
) -> None:
    login = find_login(url, None, stored)
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
        find_login(url, None, stored)


def test_the_url_from_the_environment_is_held_to_the_same_rule(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_VARIABLE, "https://elsewhere.example.net")
    with pytest.raises(
        ClientError, match=re.escape("stored login is for https://slipway.example.org")
    ):
        find_login(None, None, stored)
