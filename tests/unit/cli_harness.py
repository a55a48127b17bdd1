"""Running `slipway` in-process as a user would from a shell: argv in, exit code and the two
streams out, stdin given, a home of its own (no stored login unless a test makes one)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.cli import main
from app.cli.client import OLD_TOKEN_VARIABLE, TOKEN_VARIABLE, URL_VARIABLE
from tests.unit.slipway_api import ADMIN_TOKEN, FakeApi

if TYPE_CHECKING:  # the unit tier's conftest imports this module: no CLI library at import
    from cyclopts import App


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


class Cli:
    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], home: Path
    ) -> None:
        self._monkeypatch = monkeypatch
        self._capsys = capsys
        self.home = home
        self.login_path = home / "config" / "slipway" / "login.json"

    def __call__(self, *args: str, stdin: str = "") -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        captured = self._capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    def use(self, api: FakeApi, token: str = ADMIN_TOKEN) -> None:
        """Point at `api` with `token` through the environment, as a script would."""
        self._monkeypatch.setenv(URL_VARIABLE, api.url)
        self._monkeypatch.setenv(TOKEN_VARIABLE, token)

    def forget_environment(self) -> None:
        for name in (URL_VARIABLE, TOKEN_VARIABLE, OLD_TOKEN_VARIABLE):
            self._monkeypatch.delenv(name, raising=False)


def isolated_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    # Not on a platform's machine: no admin token found in a DATA_DIR.
    monkeypatch.setattr("app.cli.client.local_login", lambda: None)
    monkeypatch.setattr("app.cli.progress.WAIT_POLL_SECONDS", 0.01)
    cli = Cli(monkeypatch, capsys, home)
    cli.forget_environment()
    return cli


def commands(app: App, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], App]]:
    """Every command of the tree, groups and leaves, with its path (`("env", "set")`)."""
    for name in app:
        if name.startswith("-"):
            continue
        sub = app[name]
        yield (*path, name), sub
        yield from commands(sub, (*path, name))
