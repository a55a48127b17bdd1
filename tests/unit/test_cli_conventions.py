"""The CLI's conventions, one test each: exit codes, no token in argv, completion, `--version`,
help and examples everywhere, NO_COLOR, and a clean Ctrl-C while waiting."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from app.cli.output import Column, Output
from tests.unit.cli_harness import Cli, commands
from tests.unit.slipway_api import ADMIN_TOKEN, READER_TOKEN, FakeApi, running_api

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["deployments", "launch", "web"],  # no such command
        ["deployments", "view"],  # its argument missing
        ["deployments", "list", "--colour"],  # no such option
        ["deployments", "create", "octo/web", "--branch", "main", "--name", "web", "--type", "x"],
        ["logs", "web#three"],  # not an address
        ["deployments", "rollback", "web"],  # a deployment, not one of its revisions
        ["env", "set", "web", "NO_EQUALS_SIGN"],
        ["completion", "powershell"],
    ],
)
def test_a_wrong_command_line_exits_2_and_asks_nothing_of_the_platform(
    slipway: Cli, fake_api: FakeApi, argv: list[str]
) -> None:
    slipway.use(fake_api)

    ran = slipway(*argv)

    assert ran.code == 2, ran
    assert ran.err.startswith("slipway: ") and "Traceback" not in ran.err
    assert fake_api.requests == []


def test_a_refused_or_missing_login_exits_4(slipway: Cli, fake_api: FakeApi) -> None:
    nobody = slipway("deployments", "list")
    assert nobody.code == 4 and "not logged in" in nobody.err and "auth login" in nobody.err

    slipway.use(fake_api, token="slw_revoked")
    unknown = slipway("deployments", "list")
    assert unknown.code == 4 and "unknown or was revoked (HTTP 401)" in unknown.err

    slipway.use(fake_api, token=READER_TOKEN)
    read_only = slipway("env", "set", "web", "A=1")
    assert read_only.code == 4 and "read-only" in read_only.err and "HTTP 403" in read_only.err
    assert fake_api.env["dep_web"]["vars"] == {}


def test_an_api_error_exits_1_with_the_apis_reason(slipway: Cli, fake_api: FakeApi) -> None:
    slipway.use(fake_api)

    missing = slipway("deployments", "rollback", "web#9")
    assert missing.code == 1 and "web has no revision #9" in missing.err

    fake_api.fail_at = "building"
    failed = slipway("deployments", "deploy", "web", "--wait")
    assert failed.code == 1 and "revision #4 failed: the build failed" in failed.err


@pytest.mark.parametrize("argv", [["--token", "slw_secret"], ["--token=slw_secret"]])
def test_a_token_on_the_command_line_is_refused_with_where_it_goes_instead(
    slipway: Cli, fake_api: FakeApi, argv: list[str]
) -> None:
    slipway.use(fake_api)

    ran = slipway("deployments", "list", *argv)

    assert ran.code == 2
    assert "SLIPWAY_TOKEN" in ran.err and "auth login URL --with-token" in ran.err
    assert "slw_secret" not in ran.err
    assert fake_api.requests == []


def test_no_command_has_an_option_that_takes_a_token() -> None:
    from app.cli.root import app

    for path, command in commands(app):
        if command.default_command is None:
            continue
        names = [n for a in command.assemble_argument_collection() for n in a.names]
        takes_a_token = [n for n in names if "token" in n.lower()]
        assert set(takes_a_token) <= {"--with-token", "--no-with-token"}, path  # a flag: stdin


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_a_completion_script_is_printed_for_each_shell(
    slipway: Cli, tmp_path: Path, shell: str
) -> None:
    ran = slipway("completion", shell)

    assert ran.code == 0 and ran.err == ""
    for word in ("deployments", "revisions", "rollback", "wait", "with-token"):
        assert word in ran.out, word
    script = tmp_path / f"slipway.{shell}"
    script.write_text(ran.out)
    if shutil.which(shell) is None:
        return  # the script's words are checked; running it needs the shell
    subprocess.run([shell, "-n", str(script)], check=True, timeout=30)
    if shell == "bash":
        completes = (
            f"source {script}; COMP_WORDS=(slipway deployments ro); COMP_CWORD=2; _slipway; "
            'echo "${COMPREPLY[@]}"'
        )
        shown = subprocess.run(
            ["bash", "-c", completes], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        assert shown.split() == ["rollback"]
    if shell == "zsh":  # found through fpath, as the help says to install it
        (tmp_path / "_slipway").write_text(ran.out)
        registers = (
            f"fpath=({tmp_path} $fpath); autoload -U compinit; "
            f"compinit -u -d {tmp_path}/.zcompdump; print ${{_comps[slipway]}}"
        )
        shown = subprocess.run(
            ["zsh", "-f", "-c", registers], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        assert shown.strip() == "_slipway"
    if shell == "fish":
        shown = subprocess.run(
            ["fish", "-c", f"source {script}; complete -C 'slipway deployments ro'"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert shown.startswith("rollback\t")


def test_version_prints_the_installed_version(slipway: Cli) -> None:
    ran = slipway("--version")

    assert ran.code == 0
    assert ran.out.strip() == f"slipway {version('slipway')}"


def test_every_command_has_help_an_example_and_documented_arguments(slipway: Cli) -> None:
    from app.cli.root import app

    for path, command in commands(app):
        ran = slipway(*path, "--help")
        assert ran.code == 0, path
        assert "Examples:\n  $ " in ran.out and f"slipway {' '.join(path)}" in ran.out, path
        if command.default_command is None:
            continue
        for argument in command.assemble_argument_collection():
            if argument.field_info.kind in (
                argument.field_info.POSITIONAL_ONLY,
                argument.field_info.VAR_POSITIONAL,
            ):
                assert argument.parameter.help, (path, argument.name)


def test_server_commands_are_listed_apart_from_client_commands(slipway: Cli) -> None:
    shown = slipway("--help").out

    client, server = shown.split("─ Using a platform ─")[1].split("─ Running a platform ─")
    server = server.split("─ Shell ─")[0]
    for name in ("up", "api", "worker", "migrate"):
        assert f"│ {name} " in server and f"│ {name} " not in client
    for name in ("deployments", "revisions", "logs", "env", "tokens", "auth"):
        assert f"│ {name} " in client


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [None, "1"])
def test_no_color_turns_colour_off_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    terminal = Terminal()

    Output(out=terminal).table([{"state": "failed"}], [Column("state")])

    assert "failed" in terminal.getvalue()
    assert ("\x1b[" in terminal.getvalue()) is (no_color is None)


def test_ctrl_c_while_waiting_exits_130_without_a_traceback(tmp_path: Path) -> None:
    with running_api() as api:
        api.add_deployment("web")
        api.hold = "building"  # the revision never ends: only Ctrl-C stops the waiting
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
            "SLIPWAY_API_URL": api.url,
            "SLIPWAY_TOKEN": ADMIN_TOKEN,
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "PYTHONPATH": str(ROOT),
        }
        waiting = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "deployments", "deploy", "web", "--wait"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert waiting.stdout is not None
            deadline = time.monotonic() + 60
            seen = ""
            while not seen.startswith("building") and time.monotonic() < deadline:
                seen = waiting.stdout.readline()
                assert seen or waiting.poll() is None, "it ended before waiting"
            assert seen.startswith("building")
            waiting.send_signal(signal.SIGINT)
            _, err = waiting.communicate(timeout=30)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()

    assert waiting.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "web#4 goes on" in err
