"""Slipway on a machine for good: the systemd unit `service install` writes, as systemd itself
judges it, and `doctor` naming each problem it is shown."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.server.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def slipway(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        timeout=120,
        check=False,
    )


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
        "SLIPWAY_DATA_DIR": str(tmp_path / "data"),
        **{f"SLIPWAY_{k.upper()}": v for k, v in settings.items()},
    }


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/ensure-test-tools.sh installs it"
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_unit_service_install_writes_is_accepted_by_systemd_and_uninstall_removes_it(
    tmp_path: Path,
) -> None:
    units, env_file = tmp_path / "units", tmp_path / "etc" / "slipway.env"
    env = clean_env(tmp_path)

    ran = slipway(
        "service",
        "install",
        "--dir",
        str(units),
        "--env-file",
        str(env_file),
        env=env,
        cwd=tmp_path,
    )

    assert ran.returncode == 0, ran.stderr
    unit = units / "slipway.service"
    text = unit.read_text()
    assert "Restart=on-failure" in text and f"EnvironmentFile={env_file}" in text
    assert f'ExecStart="{sys.executable}" -m app.cli up' in text
    checked = verify(unit)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    # The settings file: made private, with the data dir this installation uses.
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"SLIPWAY_DATA_DIR={tmp_path / 'data'}" in env_file.read_text()

    # The check can fail: a unit whose program is not there is refused.
    broken = units / "broken.service"
    broken.write_text(text.replace(sys.executable, str(tmp_path / "no-python")))
    assert verify(broken).returncode != 0

    # An operator's edit of the settings survives a second install.
    env_file.write_text(env_file.read_text() + "SLIPWAY_BASE_DOMAIN=apps.example.com\n")
    assert (
        slipway(
            "service",
            "install",
            "--dir",
            str(units),
            "--env-file",
            str(env_file),
            env=env,
            cwd=tmp_path,
        ).returncode
        == 0
    )
    assert "apps.example.com" in env_file.read_text()

    removed = slipway("service", "uninstall", "--dir", str(units), env=env, cwd=tmp_path)
    assert removed.returncode == 0 and not unit.exists() and env_file.exists()

    # A unit someone else wrote is neither overwritten nor removed.
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    refused = slipway("service", "install", "--dir", str(units), env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "not written by Slipway" in refused.stderr
    assert (
        slipway("service", "uninstall", "--dir", str(units), env=env, cwd=tmp_path).returncode == 2
    )
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"


@pytest.fixture
def used_port() -> tuple[int, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener.getsockname()[1], listener


def test_doctor_names_a_stopped_engine_a_used_port_and_an_unreachable_public_url(
    tmp_path: Path, used_port: tuple[int, socket.socket]
) -> None:
    port, listener = used_port
    dead = tmp_path / "dead.sock"
    closed = free_port()
    env = clean_env(tmp_path, port=str(port), public_url=f"http://127.0.0.1:{closed}")
    env["DOCKER_HOST"] = f"unix://{dead}"

    with listener:
        ran = slipway("doctor", "--json", env=env, cwd=tmp_path)

    assert ran.returncode == 1, ran.stderr
    found = {f["check"]: f for f in json.loads(ran.stdout)}
    engine, api, public = found["Docker engine"], found["API port"], found["PUBLIC_URL"]
    assert engine["state"] == "FAIL" and str(dead) in engine["detail"] and engine["fix"]
    assert api["state"] == "FAIL" and f"127.0.0.1:{port} is in use" in api["detail"]
    assert "SLIPWAY_PORT" in api["fix"]
    assert public["state"] == "FAIL" and f"127.0.0.1:{closed}" in public["detail"]
    assert found["router port"]["state"] == "ok"
    assert all(f["fix"] for f in found.values() if f["state"] != "ok")

    # The same machine with the engine running and the port free: those checks pass.
    del env["DOCKER_HOST"]
    env["SLIPWAY_PORT"] = str(free_port())
    healthy = {
        f["check"]: f for f in json.loads(slipway("doctor", "--json", env=env, cwd=tmp_path).stdout)
    }
    assert healthy["Docker engine"]["state"] == "ok"
    assert healthy["BuildKit"]["state"] == "ok"
    assert healthy["API port"]["state"] == "ok"

    # For people: one line per check, the fix under each problem.
    shown = slipway("doctor", env={**env, "DOCKER_HOST": f"unix://{dead}"}, cwd=tmp_path)
    lines = shown.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "Docker engine" in line)
    assert lines[at].startswith("FAIL") and lines[at + 1].strip().startswith("fix: ")


class _Directory(BaseHTTPRequestHandler):
    """An ACME CA's directory, as far as `doctor` reads it."""

    def do_GET(self) -> None:
        body = json.dumps({"newOrder": "http://ca.test/new-order", "newNonce": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_doctor_with_automatic_https_names_an_unreachable_ca_and_challenge_ports(
    tmp_path: Path,
) -> None:
    closed = free_port()
    env = clean_env(
        tmp_path,
        acme_email="ops@example.com",
        acme_ca=f"http://127.0.0.1:{closed}/directory",
        router_http_port=str(free_port()),
        router_https_port=str(free_port()),
    )

    ran = slipway("doctor", "--json", env=env, cwd=tmp_path)

    found = {f["check"]: f for f in json.loads(ran.stdout)}
    ca, challenges = found["ACME CA"], found["ACME challenges"]
    assert ran.returncode == 1, ran.stderr
    assert ca["state"] == "FAIL" and f"127.0.0.1:{closed}" in ca["detail"]
    assert "SLIPWAY_ACME_CA" in ca["fix"]
    assert challenges["state"] == "warn" and "80 and 443" in challenges["fix"]
    assert found["router HTTPS port"]["state"] == "ok"

    # A CA that answers as one: the check passes.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Directory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env["SLIPWAY_ACME_CA"] = f"http://127.0.0.1:{server.server_address[1]}/directory"
        answers = {
            f["check"]: f
            for f in json.loads(slipway("doctor", "--json", env=env, cwd=tmp_path).stdout)
        }
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert answers["ACME CA"]["state"] == "ok", answers["ACME CA"]
