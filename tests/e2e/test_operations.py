"""Operating deployments through the authenticated API on the real platform: tokens, env vars
and secrets, a deployment of another branch, rollback and delete."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.e2e.pull_requests import connects
from tests.support.apps import notes_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA
from tests.support.images import DOCKER
from tests.support.platform import INSTALLATION_ID, RepoFactory, RunningPlatform, wait_for

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)
SECRET = "sk-e2e-7c1d9a0b3f5e"
ROUTES = [
    ("GET", "/api/deployments"),
    ("POST", "/api/deployments"),
    ("GET", "/api/deployments/dep_x"),
    ("DELETE", "/api/deployments/dep_x"),
    ("GET", "/api/deployments/dep_x/revisions"),
    ("POST", "/api/deployments/dep_x/revisions"),
    ("POST", "/api/deployments/dep_x/rollback"),
    ("GET", "/api/deployments/dep_x/env"),
    ("PATCH", "/api/deployments/dep_x/env"),
    ("GET", "/api/revisions/rev_x"),
    ("GET", "/api/revisions/rev_x/logs"),
    ("GET", "/api/tokens"),
    ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/someone"),
]
READS = {"GET"}


HOSTILE_LABEL = 'dev.slipway.state-dir="/x,type=bind,source=/,target=/host"'
DEPLOYMENT = "dev.slipway.deployment"


def docker_ps(label_filter: str) -> list[str]:
    return subprocess.run(
        [DOCKER, "ps", "-q", "--filter", label_filter],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()


def docker_mounts(container: str) -> list[dict[str, Any]] | None:
    found = subprocess.run(
        [DOCKER, "inspect", "--format", "{{json .Mounts}}", container],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return json.loads(found.stdout) if found.returncode == 0 else None


def new_token(platform: RunningPlatform, name: str, *, read_only: bool = False) -> str:
    response = platform.call("POST", "/api/tokens", json={"name": name, "read_only": read_only})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_every_api_route_wants_a_valid_token_and_read_only_tokens_only_read(
    platform: RunningPlatform,
) -> None:
    reader = new_token(platform, "e2e-reader", read_only=True)
    revoked = new_token(platform, "e2e-revoked")
    assert platform.call("DELETE", "/api/tokens/e2e-revoked").status_code == 200

    for method, path in ROUTES:
        bare = platform.client.request(method, f"{platform.api_url}{path}", json={})
        assert bare.status_code == 401, (method, path, bare.text)
        assert bare.headers["www-authenticate"].startswith("Bearer")
        for token in ("slw_not-a-token", revoked):
            refused = platform.call(method, path, token=token, json={})
            assert refused.status_code == 401, (method, path, refused.text)
        as_reader = platform.call(method, path, token=reader, json={})
        if method in READS:
            assert as_reader.status_code in (200, 404), (method, path, as_reader.text)
        else:
            assert as_reader.status_code == 403, (method, path, as_reader.text)
    assert platform.client.get(f"{platform.api_url}/healthz").status_code == 200
    listed = {t["name"]: t for t in platform.api("/api/tokens")}
    assert listed["e2e-revoked"]["revoked_at"] is not None
    assert "token" not in listed["e2e-reader"]  # shown once, at creation only


def serve(platform: RunningPlatform, slug: str, path: str) -> str | None:
    response = platform.request(slug, path)
    return response.text if response.status_code == 200 else None


def live_revision(platform: RunningPlatform, accepted: dict[str, Any]) -> dict[str, Any]:
    assert accepted["revision"] is not None, accepted
    return platform.wait_state(accepted["revision"]["id"], {"live", "failed"})


def test_env_vars_and_secrets_each_make_a_revision_and_secrets_show_nowhere(
    platform: RunningPlatform, github: FakeGitHub, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("env", notes_app("env"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    deployment, _ = platform.settle(repository["full_name"], repo.head)
    slug, path = deployment["slug"], f"/api/deployments/{deployment['id']}/env"

    bad = platform.call("PATCH", path, json={"set": {"PORT": "1", "OK": "1"}})
    assert bad.status_code == 422 and "PORT" in bad.json()["detail"]
    assert platform.api(path) == {
        "vars": {},
        "secrets": [],
        "scope": "deployment",
        "previews": {"vars": {}, "secrets": []},
    }

    changed = platform.call(
        "PATCH",
        path,
        json={"set": {"GREETING": "hello"}, "secrets": {"API_KEY": SECRET, "TLS_KEY": PEM}},
    )
    assert changed.status_code == 202, changed.text
    second = live_revision(platform, changed.json())
    assert second["state"] == "live", second
    assert second["commit_sha"] == repo.head and second["number"] == 2
    assert serve(platform, slug, "/env/GREETING") == "hello"
    assert serve(platform, slug, "/env/API_KEY") == SECRET
    assert serve(platform, slug, "/env/TLS_KEY") == PEM  # a multi-line secret, intact

    assert platform.api(path) == {
        "vars": {"GREETING": "hello"},
        "secrets": ["API_KEY", "TLS_KEY"],
        "scope": "deployment",
        "previews": {"vars": {}, "secrets": []},
    }
    shown = [
        changed.text,
        json.dumps(platform.api(f"/api/deployments/{deployment['id']}/revisions")),
        platform.logs(second["id"]),
        json.dumps([run.history for run in github.check_runs(repository["full_name"])]),
        json.dumps([d.statuses for d in github.deployments(repository["full_name"])]),
        platform.log_path.read_text(),
    ]
    for text in shown:
        assert SECRET not in text and "7c1d9a0b3f5e" not in text
        assert "MzEfYyjiWA4R4" not in text

    unset = platform.call("PATCH", path, json={"unset": ["API_KEY"]})
    third = live_revision(platform, unset.json())
    assert third["state"] == "live" and third["number"] == 3
    assert platform.request(slug, "/env/API_KEY").status_code == 404
    assert serve(platform, slug, "/env/GREETING") == "hello"


@pytest.mark.usefixtures("github")
def test_a_branch_deployment_follows_its_branch_rolls_back_without_a_build_and_is_deleted(
    platform: RunningPlatform, make_repository: RepoFactory
) -> None:
    repo, repository = make_repository("branches", notes_app("main-1"))
    platform.push(repository, INSTALLATION_ID, ZERO_SHA, repo.head)
    production, _ = platform.settle(repository["full_name"], repo.head)
    repo.checkout("staging", create=True)
    # A hostile Dockerfile labels its image with Slipway's state-dir key, spelling a bind mount
    # of the host's / (as a `--mount` option string would have read it).
    hostile = notes_app("staging-1")
    hostile["Dockerfile"] = f"{hostile['Dockerfile']!s}LABEL {HOSTILE_LABEL}\n"
    staging_1 = repo.commit(hostile)
    name = f"{production['slug']}-staging"

    created = platform.call(
        "POST",
        "/api/deployments",
        json={"repository": repository["full_name"], "branch": "staging", "name": name},
    )
    assert created.status_code == 202, created.text
    staging = created.json()["deployment"]
    assert (staging["slug"], staging["type"], staging["branch"]) == (name, "development", "staging")
    first = live_revision(platform, created.json())
    assert first["state"] == "live" and first["commit_sha"] == staging_1
    assert f"version=staging-1 commit={staging_1}" in (serve(platform, name, "/") or "")
    taken = platform.call(
        "POST",
        "/api/deployments",
        json={"repository": repository["full_name"], "branch": "staging", "name": name},
    )
    assert taken.status_code == 409

    # A push to staging deploys staging only; production keeps its commit.
    staging_2 = repo.commit(notes_app("staging-2"))
    platform.push(repository, INSTALLATION_ID, staging_1, staging_2, branch="staging")
    second = platform.wait_state(platform.revision_for(staging["id"], staging_2)["id"], {"live"})
    assert f"version=staging-2 commit={staging_2}" in (serve(platform, name, "/") or "")
    assert len(platform.api(f"/api/deployments/{production['id']}/revisions")) == 1

    # Rollback to revision 1: its image again, no build.
    rolled = platform.call(
        "POST", f"/api/deployments/{staging['id']}/rollback", json={"revision": 1}
    )
    assert rolled.status_code == 202, rolled.text
    third = live_revision(platform, rolled.json())
    assert third["state"] == "live" and third["build_method"] == "reused"
    assert third["rollback_of"] == first["id"] and third["number"] == second["number"] + 1
    assert f"version=staging-1 commit={staging_1}" in (serve(platform, name, "/") or "")
    assert "reusing its image" in platform.logs(third["id"])
    # The rollback ran as the platform recorded, not as the label said: no bind mount at all.
    running = docker_ps(f"label={DEPLOYMENT}={staging['id']}")
    assert running
    for container in running:
        mounts = docker_mounts(container)  # None: it went meanwhile (the superseded revision's)
        assert not [m for m in mounts or [] if m.get("Type") == "bind"], mounts

    # Delete: the slug must be typed; then everything goes, the database too.
    uri = platform.database_uri(staging["id"])
    assert connects(uri)
    wrong = platform.call("DELETE", f"/api/deployments/{staging['id']}", json={"confirm": "x"})
    assert wrong.status_code == 422 and name in wrong.json()["detail"]
    deleted = platform.call("DELETE", f"/api/deployments/{staging['id']}", json={"confirm": name})
    assert deleted.status_code == 202, deleted.text
    assert "kept until" in deleted.json()["warning"]
    progress = deleted.json()["progress_url"]
    wait_for(
        "the deployment to be deleted",
        lambda: (
            platform.call("GET", progress.removeprefix(platform.api_url)).json()["status"]
            == "deleted"
        ),
        60,
    )
    assert platform.request(name, "/").status_code == 404
    assert not connects(uri)
    assert staging["id"] not in {d["id"] for d in platform.api("/api/deployments")}
    # Production was not touched.
    assert serve(platform, production["slug"], "/") is not None
