"""The real `slipway` CLI, as a subprocess, against a running platform."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import notes_app
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform

PEM = (
    "-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\nWVphYmNkZWZnaGlqa2xtbm9w\n"
    "-----END PRIVATE KEY-----\n"
)


class Cli:
    def __init__(self, home: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
            "XDG_CONFIG_HOME": str(home / "config"),
            "HOME": str(home),
        }
        self.cwd = home

    def __call__(
        self, *args: str, stdin: str = "", ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=300,
            check=False,
        )
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads(self(*args, "--json", stdin=stdin).stdout)


@pytest.fixture
def cli(tmp_path: Path, platform: RunningPlatform) -> Cli:
    runner = Cli(tmp_path)
    runner("auth", "login", platform.api_url, "--with-token", stdin=platform.admin_token + "\n")
    return runner


def test_login_stores_the_token_for_this_user_only_and_refuses_a_bad_one(
    tmp_path: Path, platform: RunningPlatform
) -> None:
    cli = Cli(tmp_path)
    bad = cli("auth", "login", platform.api_url, "--with-token", stdin="slw_wrong\n", ok=False)
    assert bad.returncode == 4 and "unknown or was revoked" in bad.stderr
    assert not (tmp_path / "config" / "slipway" / "login.json").exists()

    cli("auth", "login", platform.api_url, "--with-token", stdin=platform.admin_token + "\n")

    stored = tmp_path / "config" / "slipway" / "login.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert isinstance(cli.json("deployments", "list"), list)
    assert "token 'admin' (read-write)" in cli("auth", "status").stdout
    cli("auth", "logout")
    assert not stored.exists()


def test_a_deployment_driven_from_the_cli(
    cli: Cli, platform: RunningPlatform, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("cli", notes_app("cli-1"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, first = platform.settle(repository["full_name"], repo.head)
    slug = deployment["slug"]

    table = cli("deployments", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "TYPE", "REPOSITORY"]
    assert any(line.startswith(slug + " ") for line in table.splitlines())

    # env and a multi-line secret from stdin (never argv); each change a revision.
    cli("env", "set", slug, "GREETING=hi there", "MODE=demo")
    cli("secrets", "set", slug, "TLS_KEY", stdin=PEM)
    shown = cli("env", "list", slug).stdout
    assert "GREETING=hi there" in shown and "TLS_KEY=<secret>" in shown
    assert "QUJDREVGR0hJ" not in shown
    env = cli.json("env", "list", slug)
    assert env == {
        "vars": {"GREETING": "hi there", "MODE": "demo"},
        "secrets": ["TLS_KEY"],
        "scope": "deployment",
        "previews": {"vars": {}, "secrets": []},
    }
    # --previews: what its previews get over that; no revision of production.
    said = cli("env", "set", slug, "--previews", "MODE=preview").stdout
    assert "next revision" in said
    assert "MODE=preview  # previews" in cli("env", "list", slug).stdout.splitlines()

    # deploy --wait: the phases live, exit 0 once live; the container has the secret intact.
    waited = cli("deployments", "deploy", slug, "--wait")
    phases = [line.split()[0] for line in waited.stdout.splitlines()[1:]]
    assert phases[-1] == "live" and "building" in phases
    assert platform.request(slug, "/env/TLS_KEY").text == PEM
    assert platform.request(slug, "/env/GREETING").text == "hi there"

    revisions = cli.json("revisions", "list", slug)
    newest = revisions[0]
    assert newest["state"] == "live" and newest["requested_by"] == "admin"
    assert cli("revisions", "list", slug).stdout.splitlines()[1].split()[0] == newest["revision"]
    assert "slipway: built" in cli("logs", newest["revision"], "--build").stdout  # web#N
    assert "slipway:" in cli("logs", newest["id"], "--build", "--follow").stdout  # ends: live

    # rollback to revision 1: its image and env (no GREETING), no build.
    rolled = cli("deployments", "rollback", f"{slug}#1", "--wait")
    assert rolled.stdout.splitlines()[-1].startswith("live")
    assert platform.request(slug, "/env/GREETING").status_code == 404
    assert f"version=cli-1 commit={first['commit_sha']}" in platform.request(slug).text

    # A build that fails: --wait exits 1 and says why.
    repo.checkout("broken", create=True)
    broken = repo.commit({"Dockerfile": "FROM scratch\nRUN false\n"})
    failed = cli("deployments", "deploy", slug, "--ref", broken, "--wait", ok=False)
    assert failed.returncode == 1 and "failed" in failed.stderr
    assert platform.request(slug, "/env/MODE").status_code == 404  # still the rollback

    # Tokens.
    made = cli("tokens", "create", "cli-ci", "--read-only").stdout.strip()
    assert made.startswith("slw_")
    listed = {t["name"]: t for t in cli.json("tokens", "list")}
    assert listed["cli-ci"]["read_only"] is True
    reader = Cli(cli.cwd)
    reader.env |= {"SLIPWAY_API_URL": platform.api_url, "SLIPWAY_TOKEN": made}
    assert reader("whoami").stdout.strip() == "cli-ci"
    refused = reader("env", "set", slug, "X=1", ok=False)
    assert refused.returncode == 4 and "read-only" in refused.stderr
    cli("tokens", "revoke", "cli-ci")
    revoked = reader("deployments", "list", ok=False)
    assert revoked.returncode == 4 and "revoked" in revoked.stderr

    # delete: the name must be typed.
    kept = cli("deployments", "delete", slug, stdin="not-it\n", ok=False)
    assert kept.returncode == 1 and platform.request(slug).status_code == 200
    cli("deployments", "delete", slug, stdin=slug + "\n")
    assert slug not in {d["slug"] for d in cli.json("deployments", "list")}
