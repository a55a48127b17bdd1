"""The CLI's commands against a platform's API (a stand-in over HTTP): what a user types,
what they see, and what reaches the platform."""

from __future__ import annotations

import json
import stat

import pytest

from tests.unit.cli_harness import Cli
from tests.unit.slipway_api import ADMIN_TOKEN, READER_TOKEN, FakeApi

PEM = (
    "-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\nWVphYmNkZWZnaGlqa2xtbm9w\n"
    "-----END PRIVATE KEY-----\n"
)


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


def test_the_revisions_table_shows_the_address_that_logs_takes(
    slipway: Cli, fake_api: FakeApi
) -> None:
    slipway.use(fake_api)

    table = rows(slipway("revisions", "list", "web").out)

    assert table[0][:3] == ["REVISION", "STATE", "COMMIT"]
    assert [row[0] for row in table[1:]] == ["web#3", "web#2", "web#1"]
    shown = table[2][0]  # web#2, copied from the table
    assert slipway("logs", shown, "--build").out == "building web#2\nslipway: built\n"


def test_a_revision_address_names_the_same_revision_in_every_command(
    slipway: Cli, fake_api: FakeApi
) -> None:
    slipway.use(fake_api)

    assert "live_revision:    web#3" in slipway("deployments", "view", "web").out
    viewed = json.loads(slipway("revisions", "view", "web#2", "--json").out)
    assert viewed["id"] == "rev_web02" and viewed["revision"] == "web#2"
    by_id = json.loads(slipway("revisions", "view", "rev_web01", "--json").out)
    assert by_id["revision"] == "web#1"
    newest = json.loads(slipway("revisions", "view", "web", "--json").out)
    assert newest["revision"] == "web#3"
    assert "building web#3" in slipway("logs", "web", "--build").out  # a bare name: its newest
    assert "building web#1" in slipway("logs", "dep_web#1", "--build").out  # deployment by id
    assert "building web#2" in slipway("logs", "web", "--build", "2").out

    rolled = slipway("deployments", "rollback", "web#1")

    assert rolled.code == 0
    assert ("POST", "/api/deployments/dep_web/rollback", {"revision": 1}) in fake_api.requests
    assert rolled.out.startswith("revision web#4 (rev_web04): rollback to revision #1")


def test_deploy_wait_shows_each_phase_until_live(slipway: Cli, fake_api: FakeApi) -> None:
    slipway.use(fake_api)

    waited = slipway("deployments", "deploy", "web", "--ref", "v1.2.0", "--wait")

    assert waited.code == 0
    lines = waited.out.splitlines()
    assert lines[0] == "revision web#4 (rev_web04): deploy of v1.2.0"
    assert [line.split()[0] for line in lines[1:]] == ["queued", "building", "deploying", "live"]
    assert lines[-1] == "live  slipway: built"


def test_json_keeps_stdout_for_the_data(slipway: Cli, fake_api: FakeApi) -> None:
    slipway.use(fake_api)

    listed = json.loads(slipway("deployments", "list", "--json").out)
    assert [d["slug"] for d in listed] == ["web"]
    waited = slipway("deployments", "deploy", "web", "--wait", "--json")
    assert json.loads(waited.out)["state"] == "live"  # the phases went to stderr
    assert "revision web#4" in waited.err
    revisions = json.loads(slipway("revisions", "list", "web", "--json").out)
    assert revisions[0]["revision"] == "web#4" and revisions[0]["id"] == "rev_web04"


def test_env_and_a_multi_line_secret_from_stdin(slipway: Cli, fake_api: FakeApi) -> None:
    slipway.use(fake_api)

    assert slipway("env", "set", "web", "GREETING=hi there", "MODE=demo").code == 0
    assert slipway("secrets", "set", "web", "TLS_KEY", stdin=PEM).code == 0
    assert slipway("secrets", "set", "web", "API_KEY", stdin="sk-123\n").code == 0

    shown = slipway("env", "list", "web").out
    assert shown.splitlines() == [
        "GREETING=hi there",
        "MODE=demo",
        "TLS_KEY=<secret>",
        "API_KEY=<secret>",
    ]
    sent = [body["secrets"] for method, _, body in fake_api.requests if "secrets" in body]
    assert sent == [{"TLS_KEY": PEM}, {"API_KEY": "sk-123"}]  # line breaks kept; echo's dropped
    assert slipway("secrets", "list", "web").out.split() == ["TLS_KEY", "API_KEY"]

    assert slipway("env", "unset", "web", "MODE", "TLS_KEY").code == 0
    assert json.loads(slipway("env", "list", "web", "--json").out) == {
        "vars": {"GREETING": "hi there"},
        "secrets": ["API_KEY"],
    }
    empty = slipway("secrets", "set", "web", "EMPTY", stdin="")
    assert empty.code == 1 and "no value for EMPTY" in empty.err


def test_previews_env_is_set_with_previews_and_listed_after_production(
    slipway: Cli, fake_api: FakeApi
) -> None:
    slipway.use(fake_api)
    assert slipway("env", "set", "web", "MODE=live").code == 0

    changed = slipway("env", "set", "web", "--previews", "MODE=sandbox")
    secret = slipway("secrets", "set", "web", "--previews", "API_KEY", stdin="sk-test\n")
    unset = slipway("env", "unset", "web", "--previews", "NOPE")

    assert changed.code == secret.code == unset.code == 0
    assert "previews" in changed.out
    scoped = [body for method, _, body in fake_api.requests if method == "PATCH"][1:]
    assert [body.get("scope") for body in scoped] == ["previews"] * 3
    assert scoped[1]["secrets"] == {"API_KEY": "sk-test"}
    assert slipway("env", "list", "web").out.splitlines() == [
        "MODE=live",
        "MODE=sandbox  # previews",
        "API_KEY=<secret>  # previews",
    ]
    assert slipway("secrets", "list", "web").out.splitlines() == ["API_KEY  # previews"]


def test_delete_needs_the_name_typed(slipway: Cli, fake_api: FakeApi) -> None:
    slipway.use(fake_api)

    kept = slipway("deployments", "delete", "web", stdin="not-it\n")
    assert kept.code == 1 and "did not match" in kept.err
    assert "dep_web" in fake_api.deployments

    deleted = slipway("deployments", "delete", "web", stdin="web\n")
    assert deleted.code == 0 and "web is being deleted" in deleted.out
    assert "dep_web" not in fake_api.deployments


def test_domains_are_added_listed_with_the_record_to_create_and_removed(
    slipway: Cli, fake_api: FakeApi
) -> None:
    slipway.use(fake_api)
    web = fake_api.add_deployment("web")
    fake_api.add_deployment("shop")

    added = slipway("domains", "add", "web", "App.Example.com")
    assert added.code == 0, added.err
    assert added.out == "app.example.com: pending-dns\n"
    assert "app.example.com  CNAME  web.localhost" in added.err
    assert ("POST", f"/api/deployments/{web['id']}/domains", {"domain": "App.Example.com"}) in (
        fake_api.requests
    )
    table = rows(slipway("domains", "list", "web").out)
    assert table[0] == ["DOMAIN", "STATE", "URL", "REASON"]
    assert table[-1] == ["app.example.com", "pending-dns", "http://app.example.com:8000/", "-"]
    listed = json.loads(slipway("domains", "list", "web", "--json").out)
    assert [d["domain"] for d in listed] == ["app.example.com"]

    apex = slipway("domains", "add", "web", "example.com")
    assert apex.code == 0 and apex.out == "example.com: pending-dns\n"
    assert apex.err.endswith(
        "www.example.com is a name of its own and is not served: add it too if it should serve "
        "this app (slipway domains add web www.example.com)\n"
    )
    assert "www.example.com is a name of its own" in slipway("domains", "list", "web").err
    assert slipway("domains", "remove", "web", "example.com").code == 0

    taken = slipway("domains", "add", "shop", "app.example.com")
    assert taken.code != 0 and "another deployment" in taken.err

    removed = slipway("domains", "remove", "web", "app.example.com")
    assert removed.code == 0 and "app.example.com removed" in removed.err
    assert json.loads(slipway("domains", "list", "web", "--json").out) == []
    assert slipway("domains", "remove", "web", "app.example.com").code != 0


def test_tokens_are_made_listed_and_revoked(slipway: Cli, fake_api: FakeApi) -> None:
    slipway.use(fake_api)

    made = slipway("tokens", "create", "ci", "--read-only")
    assert made.out == "slw_new-ci\n"  # stdout holds the token alone, for `> token.txt`
    assert "shown this once" in made.err
    listed = {t["name"]: t for t in json.loads(slipway("tokens", "list", "--json").out)}
    assert listed["ci"]["read_only"] is True
    table = rows(slipway("tokens", "list").out)
    assert table[-1][:2] == ["ci", "yes"]

    assert slipway("tokens", "revoke", "ci").out == "token ci revoked\n"
    slipway.use(fake_api, token="slw_new-ci")
    assert slipway("deployments", "list").code == 4


def test_login_checks_the_token_stores_it_for_this_user_and_logout_forgets_it(
    slipway: Cli, fake_api: FakeApi
) -> None:
    refused = slipway("auth", "login", fake_api.url, "--with-token", stdin="slw_wrong\n")
    assert refused.code == 4 and "unknown or was revoked" in refused.err
    assert not slipway.login_path.exists()

    logged_in = slipway("auth", "login", fake_api.url, "--with-token", stdin=READER_TOKEN + "\n")
    assert logged_in.code == 0
    assert f"logged in to {fake_api.url} as token 'reader' (read-only)" in logged_in.out
    assert stat.S_IMODE(slipway.login_path.stat().st_mode) == 0o600

    status = slipway("auth", "status")
    assert status.code == 0
    assert status.out.splitlines() == [
        fake_api.url,
        "  logged in with token 'reader' (read-only)",
        f"  token from {slipway.login_path}",
    ]
    assert slipway("whoami").out == "reader\n"
    assert json.loads(slipway("whoami", "--json").out)["read_only"] is True
    slipway.use(fake_api, ADMIN_TOKEN)  # the environment's token wins over the stored one
    assert json.loads(slipway("auth", "status", "--json").out)["token_source"] == "SLIPWAY_TOKEN"
    slipway.forget_environment()

    logged_out = slipway("auth", "logout")
    assert logged_out.code == 0 and f"logged out of {fake_api.url}" in logged_out.out
    assert not slipway.login_path.exists()
    again = slipway("auth", "status")
    assert again.code == 4 and "not logged in" in again.err
    assert slipway("auth", "logout").code == 4


def test_the_old_name_of_the_token_variable_still_works(
    slipway: Cli, fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_API_URL", fake_api.url)
    monkeypatch.setenv("SLIPWAY_API_TOKEN", ADMIN_TOKEN)

    assert slipway("whoami").out == "admin\n"


SERVER_LOG_LINE = {
    "at": "2026-12-07T10:00:00.123456789Z",
    "revision_id": "rev_web03",
    "revision": 3,
    "replica": "web-3-a1",
    "stream": "stdout",
    "text": "GET / 200",
}
"""One server-log line as the API answers it (the logs tests vary its text, time, stream)."""


def test_logs_prints_the_server_logs_and_passes_the_filters_on(
    slipway: Cli, fake_api: FakeApi
) -> None:
    slipway.use(fake_api)
    line = SERVER_LOG_LINE
    fake_api.server_logs["dep_web"] = [line, {**line, "text": "Traceback (most recent call)"}]

    shown = slipway("logs", "web", "--grep", "Traceback", "--since", "10m")

    assert shown.code == 0
    assert shown.out == "2026-12-07T10:00:00.123Z #3 web-3-a1 Traceback (most recent call)\n"
    assert fake_api.server_log_queries[-1] == {"q": "Traceback", "since": "10m"}
    one_revision = slipway("logs", "web#3", "--json")
    assert [row["text"] for row in json.loads(one_revision.out)] == [
        "GET / 200",
        "Traceback (most recent call)",
    ]
    assert fake_api.server_log_queries[-1] == {"revision": "rev_web03"}
    misplaced = slipway("logs", "web", "3")
    assert misplaced.code == 2 and "--build" in misplaced.err


def test_logs_follow_prints_each_line_as_the_platform_streams_it(
    slipway: Cli, fake_api: FakeApi
) -> None:
    slipway.use(fake_api)
    line = SERVER_LOG_LINE
    fake_api.server_logs["dep_web"] = [
        line,
        {**line, "at": "2026-12-07T10:00:01.5Z", "text": "GET /x 500"},
        {**line, "text": "Traceback (most recent call)", "stream": "stderr"},
    ]

    followed = slipway("logs", "web", "-f", "--grep", "GET", "--since", "10m")

    assert followed.code == 0
    assert followed.out == (
        "2026-12-07T10:00:00.123Z #3 web-3-a1 GET / 200\n"
        "2026-12-07T10:00:01.5Z #3 web-3-a1 GET /x 500\n"
    )
    assert fake_api.server_log_queries[-1] == {"follow": "true", "q": "GET", "since": "10m"}
    as_json = slipway("logs", "web#3", "--follow", "--json").out.splitlines()
    assert [json.loads(row)["text"] for row in as_json] == [
        "GET / 200",
        "GET /x 500",
        "Traceback (most recent call)",
    ]
    assert fake_api.server_log_queries[-1] == {"follow": "true", "revision": "rev_web03"}
