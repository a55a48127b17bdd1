"""The fake GitHub rejects what GitHub would reject and accepts what it accepts.

These tests talk to the fake over HTTP on 127.0.0.1 with httpx and PyJWT only, so a bug in the
app's GitHub client cannot hide a bug in the fake.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_github import (
    ZERO_SHA,
    FakeGitHub,
    check_run_payload,
    check_suite_payload,
    headers,
    installation_payload,
    installation_repositories_payload,
    ping_payload,
    pull_request_payload,
    push_payload,
    sign,
)
from tests.support.fake_github.in_process import InProcessTransport
from tests.support.keys import new_private_key_pem

APP_ID = 1234
_TLS = ssl.create_default_context()  # httpx builds a new one (~25 ms) per client otherwise
INSTALLATION = 77
OWNER = "octo-org"
REPO = "shop"
FULL = f"{OWNER}/{REPO}"
GUIDE = "# Guide\n\n" + "".join(f"Step {n}: push, then watch it deploy.\n" for n in range(8))
BIG_FILE_SIZE = 1024 * 1024 + 1


@dataclass(frozen=True)
class GitRepo:
    path: Path
    first: str
    head: str
    """The tip of main (tagged v1.0)."""
    feature: str
    """The tip of branch feature, one commit on top of main (docs, a symlink, a big file)."""
    fork: str
    """A commit on top of main that only a fork has (kept under refs/remotes/contrib/patch)."""


def _git(path: Path, *args: str) -> str:
    proc = subprocess.run(
        [
            "git",
            "-C",
            str(path),
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    path = tmp_path_factory.mktemp("repo")
    _git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('v1')\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "first")
    first = _git(path, "rev-parse", "HEAD")
    (path / "Dockerfile").write_text("FROM scratch\n")
    (path / "app.py").write_text("print('v2')\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "second")
    _git(path, "tag", "v1.0")
    head = _git(path, "rev-parse", "HEAD")
    _git(path, "checkout", "-q", "-b", "feature")
    (path / "docs").mkdir()
    (path / "docs" / "guide.md").write_text(GUIDE)
    (path / "app.py").write_text("print('v3')\n")
    (path / "big.bin").write_bytes(b"\0" * BIG_FILE_SIZE)
    (path / "link.py").symlink_to("app.py")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "Add the guide\n\nAnd a link.")
    feature = _git(path, "rev-parse", "HEAD")
    _git(path, "checkout", "-q", "-b", "fork-work", head)
    (path / "fork.txt").write_text("from a fork\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "Fork change")
    fork = _git(path, "rev-parse", "HEAD")
    _git(path, "update-ref", "refs/remotes/contrib/patch", fork)
    _git(path, "checkout", "-q", "main")
    _git(path, "branch", "-q", "-D", "fork-work")
    return GitRepo(path, first, head, feature, fork)


@pytest.fixture(scope="module")
def app_key() -> str:
    """One App key for the module: generating an RSA key per test would dominate the run time."""
    return FakeGitHub(app_id=APP_ID).private_key_pem


@pytest.fixture
def fake(git_repo: GitRepo, app_key: str) -> Iterator[FakeGitHub]:
    with FakeGitHub(app_id=APP_ID, app_slug="slipway-test", private_key_pem=app_key) as server:
        server.add_installation(INSTALLATION, OWNER, account_type="Organization")
        server.add_repository(INSTALLATION, OWNER, REPO, git_repo.path)
        yield server


@pytest.fixture
def client(fake: FakeGitHub) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fake.url, headers={"User-Agent": "slipway-tests"}, timeout=5, verify=_TLS
    ) as http:
        yield http


@cache
def _load_key(key_pem: str) -> rsa.RSAPrivateKey:
    """Parsing a PEM key (with its RSA checks) takes ~40 ms; do it once per key."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def app_jwt(
    key_pem: str,
    *,
    iss: str | int = str(APP_ID),
    iat_offset: int = -60,
    lifetime: int = 600,
) -> str:
    issued = int(time.time()) + iat_offset
    claims = {"iat": issued, "exp": issued + lifetime, "iss": iss}
    # jwt.encode refuses a non-string iss, which GitHub accepts: sign the raw claims instead.
    return jwt.api_jws.encode(json.dumps(claims).encode(), _load_key(key_pem), algorithm="RS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def installation_token(
    client: httpx.Client, fake: FakeGitHub, permissions: dict[str, str] | None = None
) -> dict[str, str]:
    response = client.post(
        f"/app/installations/{INSTALLATION}/access_tokens",
        headers=bearer(app_jwt(fake.private_key_pem)),
        json=None if permissions is None else {"permissions": permissions},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"token {response.json()['token']}"}


def new_check_run(
    client: httpx.Client, auth: dict[str, str], sha: str, **fields: Any
) -> httpx.Response:
    return client.post(
        f"/repos/{FULL}/check-runs",
        headers=auth,
        json={"name": "Slipway", "head_sha": sha, **fields},
    )


# --------------------------------------------------------------------------- in process
def test_in_process_the_fake_answers_and_checks_as_over_http(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    """The unit tier's GitHub: the same routes, checks and stores, without the socket."""
    with httpx.Client(
        base_url=fake.url,
        headers={"User-Agent": "slipway-tests"},
        transport=InProcessTransport(fake),
    ) as in_process:
        auth = installation_token(in_process, fake)
        made = new_check_run(in_process, auth, git_repo.head)
        refused = new_check_run(in_process, auth, git_repo.head, status="completed")
        anonymous = new_check_run(in_process, {}, git_repo.head)

    assert made.status_code == 201, made.text
    assert [run.id for run in fake.check_runs(FULL)] == [made.json()["id"]]
    assert refused.status_code == 422
    assert anonymous.status_code == 401
    assert len(fake.errors) == 2  # each refusal recorded, as over HTTP
    over_http = new_check_run(client, installation_token(client, fake), git_repo.head)
    assert over_http.json().keys() == made.json().keys()


def test_an_unreachable_fake_answers_nothing_over_http_or_in_process(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    fake.unreachable = True

    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/app", headers=bearer(app_jwt(fake.private_key_pem)))
    with pytest.raises(httpx.ConnectError):
        httpx.Client(transport=InProcessTransport(fake)).get(f"{fake.url}/app")
    fake.unreachable = False
    answered = client.get("/app", headers=bearer(app_jwt(fake.private_key_pem)))
    assert answered.status_code == 200


# --------------------------------------------------------------------------- App JWT


def test_app_jwt_is_accepted_with_string_or_integer_issuer(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    for issuer in (str(APP_ID), APP_ID):
        response = client.get("/app", headers=bearer(app_jwt(fake.private_key_pem, iss=issuer)))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == APP_ID
        assert response.json()["slug"] == "slipway-test"
    # GitHub's own example: iat 60 s in the past, exp 10 minutes from now.
    response = client.get("/app", headers=bearer(app_jwt(fake.private_key_pem, lifetime=660)))
    assert response.status_code == 200, response.text
    assert fake.errors == []


def test_jwt_signed_with_another_key_is_401(fake: FakeGitHub, client: httpx.Client) -> None:
    other_pem = new_private_key_pem()
    response = client.get("/app", headers=bearer(app_jwt(other_pem)))
    assert response.status_code == 401
    assert "public key" in fake.errors[-1]


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"iss": "9999"}, "Issuer"),
        ({"iat_offset": -1200}, "passed"),  # exp 10 minutes ago
        ({"lifetime": 3600}, "at most 10 minutes"),
        ({"iat_offset": 300}, "future"),
    ],
)
def test_bad_jwt_claims_are_401(
    fake: FakeGitHub, client: httpx.Client, claims: dict[str, Any], problem: str
) -> None:
    response = client.post(
        f"/app/installations/{INSTALLATION}/access_tokens",
        headers=bearer(app_jwt(fake.private_key_pem, **claims)),
    )
    assert response.status_code == 401
    assert problem in fake.errors[-1]
    assert fake.token_requests == 0


def test_jwt_without_exp_is_401(fake: FakeGitHub, client: httpx.Client) -> None:
    token = jwt.encode(
        {"iat": int(time.time()), "iss": str(APP_ID)},
        _load_key(fake.private_key_pem),
        algorithm="RS256",
    )
    assert client.get("/app", headers=bearer(token)).status_code == 401
    assert "'exp'" in fake.errors[-1]


def test_installation_token_is_not_an_app_jwt(fake: FakeGitHub, client: httpx.Client) -> None:
    auth = installation_token(client, fake)
    assert client.get("/app", headers=auth).status_code == 401
    assert client.get("/app").status_code == 401
    assert len(fake.errors) == 2


def test_token_for_unknown_installation_is_404(fake: FakeGitHub, client: httpx.Client) -> None:
    response = client.post(
        "/app/installations/999/access_tokens", headers=bearer(app_jwt(fake.private_key_pem))
    )
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


def test_token_response_shape(fake: FakeGitHub, client: httpx.Client) -> None:
    response = client.post(
        f"/app/installations/{INSTALLATION}/access_tokens",
        headers=bearer(app_jwt(fake.private_key_pem)),
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("ghs_")
    assert time.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert body["repository_selection"] == "all"
    assert body["permissions"]["checks"] == "write"
    assert fake.token_requests == 1


# --------------------------------------------------------------------------- installation tokens


def test_expired_installation_token_is_401(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    assert new_check_run(client, auth, git_repo.head).status_code == 201
    fake.expire_tokens()
    response = new_check_run(client, auth, git_repo.head)
    assert response.status_code == 401
    assert response.json()["message"] == "Bad credentials"
    assert "expired" in fake.errors[-1]
    assert len(fake.check_runs(FULL)) == 1


def test_unknown_token_and_app_jwt_cannot_use_repo_endpoints(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    for auth in ({"Authorization": "token ghs_nope"}, bearer(app_jwt(fake.private_key_pem)), {}):
        assert new_check_run(client, auth, git_repo.head).status_code == 401
    assert len(fake.errors) == 3
    assert fake.check_runs(FULL) == []


def test_token_only_sees_its_installations_repositories(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    fake.add_installation(88, "someone-else")
    fake.add_repository(88, "someone-else", "other", git_repo.path)
    auth = installation_token(client, fake)
    response = client.post(
        "/repos/someone-else/other/check-runs",
        headers=auth,
        json={"name": "x", "head_sha": git_repo.head},
    )
    assert response.status_code == 404
    assert "cannot see" in fake.errors[-1]


def test_suspended_installation_gets_403(fake: FakeGitHub, client: httpx.Client) -> None:
    fake.suspend_installation(INSTALLATION)
    response = client.post(
        f"/app/installations/{INSTALLATION}/access_tokens",
        headers=bearer(app_jwt(fake.private_key_pem)),
    )
    assert response.status_code == 403


# --------------------------------------------------------------------------- check runs


def test_check_run_lifecycle(fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo) -> None:
    auth = installation_token(client, fake)
    created = new_check_run(
        client,
        auth,
        git_repo.head,
        status="in_progress",
        external_id="build-1",
        details_url="http://127.0.0.1:8080/builds/1",
        started_at="2024-05-01T12:00:00Z",
        output={"title": "Building", "summary": "Building the image"},
    )
    assert created.status_code == 201, created.text
    run = created.json()
    for key in ("id", "node_id", "url", "html_url", "check_suite", "app", "pull_requests"):
        assert key in run
    assert run["status"] == "in_progress" and run["conclusion"] is None
    assert run["started_at"] == "2024-05-01T12:00:00Z"
    assert run["output"]["annotations_count"] == 0

    # A conclusion alone completes the run, as on GitHub.
    updated = client.patch(
        f"/repos/{FULL}/check-runs/{run['id']}",
        headers=auth,
        json={"conclusion": "success", "output": {"title": "Live", "summary": "ok", "text": "log"}},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "completed"
    assert updated.json()["completed_at"] is not None

    fetched = client.get(f"/repos/{FULL}/check-runs/{run['id']}", headers=auth).json()
    assert fetched["output"]["title"] == "Live"
    listed = client.get(f"/repos/{FULL}/commits/main/check-runs", headers=auth).json()
    assert listed["total_count"] == 1 and listed["check_runs"][0]["id"] == run["id"]

    [stored] = fake.check_runs(FULL)
    assert [(h["status"], h["conclusion"]) for h in stored.history] == [
        ("in_progress", None),
        ("completed", "success"),
    ]
    assert stored.history[0]["output"]["title"] == "Building"
    assert fake.errors == []


def test_check_run_with_unknown_conclusion_is_422(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    response = new_check_run(client, auth, git_repo.head, status="completed", conclusion="passed")
    assert response.status_code == 422
    body = response.json()
    assert body["message"] and body["errors"]
    assert "passed" in fake.errors[-1]
    assert fake.check_runs(FULL) == []


def test_completed_check_run_without_conclusion_is_422(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    assert new_check_run(client, auth, git_repo.head, status="completed").status_code == 422
    run = new_check_run(client, auth, git_repo.head, status="in_progress").json()
    response = client.patch(
        f"/repos/{FULL}/check-runs/{run['id']}", headers=auth, json={"status": "completed"}
    )
    assert response.status_code == 422
    assert all("conclusion is required" in error for error in fake.errors)
    assert len(fake.errors) == 2


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": None}, "name"),
        ({"head_sha": "main"}, "40-character"),
        ({"head_sha": "ab" * 20}, "No commit found"),
        ({"status": "running"}, "status"),
        ({"conclusion": "stale"}, "stale"),
        ({"output": {"summary": "no title"}}, "output.title"),
        ({"output": {"title": "t"}}, "output.summary"),
        ({"output": {"title": "t", "summary": "x" * 65536}}, "maximum is 65535"),
        ({"output": {"title": "t", "summary": "s", "text": "x" * 65536}}, "output.text"),
        ({"details_url": "/builds/1"}, "absolute"),
        ({"started_at": "yesterday"}, "ISO 8601"),
        ({"started_at": "2024-05-01T12:00:00"}, "ISO 8601"),  # no UTC offset
        ({"completed_at": "2024-05-01T12:00:00Z"}, "conclusion is required"),
    ],
)
def test_invalid_check_runs_are_422(
    fake: FakeGitHub,
    client: httpx.Client,
    git_repo: GitRepo,
    fields: dict[str, Any],
    problem: str,
) -> None:
    auth = installation_token(client, fake)
    body = {"name": "Slipway", "head_sha": git_repo.head, **fields}
    body = {key: value for key, value in body.items() if value is not None}
    response = client.post(f"/repos/{FULL}/check-runs", headers=auth, json=body)
    assert response.status_code == 422, response.text
    assert problem in fake.errors[-1]


def test_check_runs_filter_latest_per_name(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    for _ in range(2):
        new_check_run(client, auth, git_repo.head)
    new_check_run(client, auth, git_repo.first)
    url = f"/repos/{FULL}/commits/{git_repo.head}/check-runs"
    assert client.get(url, headers=auth).json()["total_count"] == 1
    assert client.get(url, headers=auth, params={"filter": "all"}).json()["total_count"] == 2
    response = client.get(f"/repos/{FULL}/commits/nope/check-runs", headers=auth)
    assert response.status_code == 422


# --------------------------------------------------------------------------- tarballs


def test_tarball_redirects_to_a_codeload_link_without_auth(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    response = client.get(f"/repos/{FULL}/tarball/main", headers=auth)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{fake.url}/_codeload/{FULL}/legacy.tar.gz/{git_repo.head}?token=")

    archive = httpx.get(location, headers={"User-Agent": "slipway-tests"}, verify=_TLS)
    assert archive.status_code == 200
    assert archive.headers["Content-Type"] == "application/x-gzip"
    prefix = f"{OWNER}-{REPO}-{git_repo.head[:7]}/"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        assert all(name.startswith(prefix) or name == prefix.rstrip("/") for name in names)
        assert f"{prefix}Dockerfile" in names
        member = tar.extractfile(f"{prefix}app.py")
        assert member is not None and member.read() == b"print('v2')\n"
    assert gzip.decompress(archive.content)  # really gzip

    # Refs resolve like GitHub's: a tag, a full SHA, a full ref name, the default branch.
    for ref in ("v1.0", git_repo.first, "refs/heads/main"):
        redirect = client.get(f"/repos/{FULL}/tarball/{ref}", headers=auth)
        assert redirect.status_code == 302, ref
    followed = client.get(
        f"/repos/{FULL}/tarball/{git_repo.first}", headers=auth, follow_redirects=True
    )
    assert followed.status_code == 200
    assert fake.errors == []


def test_tarball_of_unknown_ref_is_404_and_needs_a_token(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    auth = installation_token(client, fake)
    assert client.get(f"/repos/{FULL}/tarball/no-such-branch", headers=auth).status_code == 404
    assert client.get(f"/repos/{FULL}/tarball/main").status_code == 401
    forged = f"/_codeload/{FULL}/legacy.tar.gz/{'a' * 40}?token=forged"
    assert client.get(forged).status_code == 404
    assert len(fake.errors) == 3


# --------------------------------------------------------------------------- deployments


def test_deployment_with_statuses(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    created = client.post(
        f"/repos/{FULL}/deployments",
        headers=auth,
        json={
            "ref": git_repo.head,
            "environment": "preview/main",
            "auto_merge": False,
            "required_contexts": [],
            "transient_environment": True,
            "production_environment": False,
            "payload": {"revision": 1},
            "description": "Deploy main",
        },
    )
    assert created.status_code == 201, created.text
    deployment = created.json()
    assert deployment["sha"] == git_repo.head
    assert deployment["payload"] == {"revision": 1}
    assert deployment["creator"]["type"] == "Bot"
    statuses_url = f"/repos/{FULL}/deployments/{deployment['id']}/statuses"
    for body in (
        {"state": "in_progress", "log_url": "http://127.0.0.1:8080/builds/1"},
        {"state": "success", "environment_url": "http://shop-main.localhost:8000"},
    ):
        assert client.post(statuses_url, headers=auth, json=body).status_code == 201
    listed = client.get(statuses_url, headers=auth).json()
    assert [status["state"] for status in listed] == ["success", "in_progress"]  # newest first
    assert listed[1]["target_url"] == "http://127.0.0.1:8080/builds/1"

    [stored] = fake.deployments(FULL)
    assert [status["state"] for status in stored.statuses] == ["in_progress", "success"]
    assert stored.statuses[-1]["environment_url"] == "http://shop-main.localhost:8000"
    assert len(client.get(f"/repos/{FULL}/deployments", headers=auth).json()) == 1
    assert fake.errors == []


def test_deployment_with_default_auto_merge_is_recorded(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    response = client.post(
        f"/repos/{FULL}/deployments",
        headers=auth,
        json={"ref": "main", "required_contexts": []},
    )
    assert response.status_code == 201
    assert response.json()["environment"] == "production"
    assert response.json()["production_environment"] is True
    assert len(fake.errors) == 1
    assert "auto_merge should be false" in fake.errors[0]


def test_deployment_is_blocked_by_unfinished_check_runs(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    new_check_run(client, auth, git_repo.head, status="in_progress")
    body = {"ref": git_repo.head, "auto_merge": False}
    response = client.post(f"/repos/{FULL}/deployments", headers=auth, json=body)
    assert response.status_code == 409
    assert "required_contexts" in fake.errors[-1]
    body["required_contexts"] = []
    assert client.post(f"/repos/{FULL}/deployments", headers=auth, json=body).status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        ({}, 422, "ref is required"),
        ({"ref": "no-such-branch"}, 422, "No ref found"),
        ({"ref": "main", "description": "x" * 141}, 422, "maximum is 140"),
        ({"ref": "main", "auto_merge": "no"}, 422, "boolean"),
        ({"ref": "main", "required_contexts": "ci"}, 422, "array"),
        ({"ref": "main", "payload": 3}, 422, "payload"),
    ],
)
def test_invalid_deployments(
    fake: FakeGitHub,
    client: httpx.Client,
    body: dict[str, Any],
    status: int,
    problem: str,
) -> None:
    auth = installation_token(client, fake)
    response = client.post(f"/repos/{FULL}/deployments", headers=auth, json=body)
    assert response.status_code == status, response.text
    assert problem in fake.errors[-1]
    assert fake.deployments(FULL) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "state is required"),
        ({"state": "done"}, "state must be one of"),
        ({"state": "success", "environment_url": "shop.localhost"}, "absolute"),
        ({"state": "success", "log_url": "ftp://logs"}, "absolute"),
        ({"state": "failure", "description": "x" * 141}, "maximum is 140"),
        ({"state": "success", "auto_inactive": "yes"}, "boolean"),
    ],
)
def test_invalid_deployment_statuses_are_422(
    fake: FakeGitHub, client: httpx.Client, body: dict[str, Any], problem: str
) -> None:
    auth = installation_token(client, fake)
    deployment = client.post(
        f"/repos/{FULL}/deployments",
        headers=auth,
        json={"ref": "main", "auto_merge": False, "required_contexts": []},
    ).json()
    url = f"/repos/{FULL}/deployments/{deployment['id']}/statuses"
    response = client.post(url, headers=auth, json=body)
    assert response.status_code == 422, response.text
    assert problem in fake.errors[-1]


def test_status_of_unknown_deployment_is_404(fake: FakeGitHub, client: httpx.Client) -> None:
    auth = installation_token(client, fake)
    response = client.post(
        f"/repos/{FULL}/deployments/12345/statuses", headers=auth, json={"state": "success"}
    )
    assert response.status_code == 404


# --------------------------------------------------------------------------- issue comments


def test_issue_comments(fake: FakeGitHub, client: httpx.Client) -> None:
    auth = installation_token(client, fake)
    url = f"/repos/{FULL}/issues/5/comments"
    created = client.post(url, headers=auth, json={"body": "Preview: http://pr-5.localhost"})
    assert created.status_code == 201
    comment_id = created.json()["id"]
    edited = client.patch(
        f"/repos/{FULL}/issues/comments/{comment_id}", headers=auth, json={"body": "updated"}
    )
    assert edited.status_code == 200
    assert [c["body"] for c in client.get(url, headers=auth).json()] == ["updated"]
    assert [c["body"] for c in fake.comments(FULL, 5)] == ["updated"]
    assert client.post(url, headers=auth, json={}).status_code == 422
    assert client.post(url, headers=auth, json={"body": "x" * 65537}).status_code == 422
    deleted = client.delete(f"/repos/{FULL}/issues/comments/{comment_id}", headers=auth)
    assert deleted.status_code == 204
    assert fake.comments(FULL, 5) == []
    assert (
        client.delete(f"/repos/{FULL}/issues/comments/{comment_id}", headers=auth).status_code
        == 404
    )
    assert len(fake.errors) == 3


def test_issues_are_opened_edited_closed_and_reopened(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    auth = installation_token(client, fake)
    created = client.post(
        f"/repos/{FULL}/issues", headers=auth, json={"title": "Unused", "body": "7 days"}
    )
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert created.json()["state"] == "open"
    url = f"/repos/{FULL}/issues/{number}"
    closed = client.patch(
        url, headers=auth, json={"state": "closed", "state_reason": "completed", "body": "used"}
    )
    assert closed.status_code == 200
    assert (closed.json()["state"], closed.json()["body"]) == ("closed", "used")
    assert closed.json()["closed_at"] is not None
    reopened = client.patch(url, headers=auth, json={"state": "open", "state_reason": "reopened"})
    assert reopened.json()["state"] == "open" and reopened.json()["closed_at"] is None
    assert client.get(url, headers=auth).json()["title"] == "Unused"
    assert [i["number"] for i in fake.issues(FULL)] == [number]
    # What GitHub refuses: no title, a bad state, a reason that needs closing, unknown fields,
    # an issue that is not there.
    assert client.post(f"/repos/{FULL}/issues", headers=auth, json={"body": "x"}).status_code == 422
    assert client.patch(url, headers=auth, json={"state": "done"}).status_code == 422
    assert client.patch(url, headers=auth, json={"state_reason": "completed"}).status_code == 422
    assert (
        client.post(
            f"/repos/{FULL}/issues", headers=auth, json={"title": "t", "milestone_x": 1}
        ).status_code
        == 422
    )
    assert client.get(f"/repos/{FULL}/issues/999", headers=auth).status_code == 404
    assert len(fake.errors) == 5


def test_comment_listing_is_paginated_with_link_headers(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    auth = installation_token(client, fake)
    url = f"/repos/{FULL}/issues/9/comments"
    for number in range(5):
        client.post(url, headers=auth, json={"body": f"c{number}"})
    first = client.get(url, headers=auth, params={"per_page": 2})
    assert [c["body"] for c in first.json()] == ["c0", "c1"]
    assert 'rel="next"' in first.headers["Link"]
    last = client.get(first.links["last"]["url"], headers=auth)
    assert [c["body"] for c in last.json()] == ["c4"]


# --------------------------------------------------------------------------- pull requests


def test_get_pull_request(fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo) -> None:
    added = fake.add_pull_request(
        FULL, 7, head_sha=git_repo.feature, head_ref="feature", title="Add the guide"
    )
    auth = installation_token(client, fake)
    response = client.get(f"/repos/{FULL}/pulls/7", headers=auth)
    assert response.status_code == 200, response.text
    pull = response.json()
    assert pull == added == fake.pull_request(FULL, 7)
    assert (pull["number"], pull["state"], pull["draft"], pull["merged"]) == (
        7,
        "open",
        False,
        False,
    )
    assert pull["title"] == "Add the guide" and pull["user"]["login"] == "octo-dev"
    assert pull["html_url"] == f"https://github.com/{FULL}/pull/7"
    assert pull["url"] == f"{fake.url}/repos/{FULL}/pulls/7"
    head, base = pull["head"], pull["base"]
    assert (head["ref"], head["sha"], head["label"]) == (
        "feature",
        git_repo.feature,
        f"{OWNER}:feature",
    )
    assert head["repo"]["full_name"] == FULL and head["repo"]["fork"] is False
    assert head["user"]["login"] == OWNER  # the head repository's owner, not the author
    assert (base["ref"], base["sha"], base["repo"]["full_name"]) == ("main", git_repo.head, FULL)
    assert (pull["commits"], pull["changed_files"]) == (1, 4)  # app.py, big.bin, docs, link
    assert pull["closed_at"] is None and pull["merged_by"] is None

    missing = client.get(f"/repos/{FULL}/pulls/8", headers=auth)
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    assert "no pull request #8" in fake.errors[-1]
    contents_only = installation_token(client, fake, {"contents": "read", "metadata": "read"})
    assert client.get(f"/repos/{FULL}/pulls/7", headers=contents_only).status_code == 403
    assert "pull_requests: read" in fake.errors[-1]


def test_pull_request_from_a_fork(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    pull = fake.add_pull_request(
        FULL,
        3,
        head_sha=git_repo.fork,
        head_ref="patch",
        head_full_name="contrib/shop",
        user="contrib",
    )
    head = pull["head"]
    assert head["repo"]["full_name"] == "contrib/shop" and head["repo"]["fork"] is True
    assert head["repo"]["id"] != pull["base"]["repo"]["id"]
    assert (head["label"], head["user"]["login"]) == ("contrib:patch", "contrib")
    assert pull["base"]["repo"]["full_name"] == FULL
    # The fork's commits are in the base repository: its tarball serves them by SHA or PR ref.
    auth = installation_token(client, fake)
    for ref in (git_repo.fork, "refs/pull/3/head", "pull/3/head"):
        redirect = client.get(f"/repos/{FULL}/tarball/{ref}", headers=auth)
        assert redirect.status_code == 302, ref
        assert git_repo.fork in redirect.headers["Location"]
    # Another pull request from the same fork shows the same fork repository.
    again = fake.add_pull_request(
        FULL, 4, head_sha=git_repo.fork, head_ref="other", head_full_name="contrib/shop"
    )
    assert again["head"]["repo"]["id"] == head["repo"]["id"]
    gone = fake.update_pull_request(FULL, 3, head_repo_deleted=True)
    assert gone["head"]["repo"] is None
    assert fake.errors == []


def test_update_pull_request(fake: FakeGitHub, git_repo: GitRepo) -> None:
    fake.add_pull_request(FULL, 1, head_sha=git_repo.head, head_ref="feature", draft=True)
    pushed = fake.update_pull_request(FULL, 1, head_sha=git_repo.feature)
    assert pushed["head"]["sha"] == git_repo.feature and pushed["draft"] is True
    assert fake.update_pull_request(FULL, 1, draft=False)["draft"] is False
    closed = fake.update_pull_request(FULL, 1, state="closed")
    assert closed["state"] == "closed" and closed["closed_at"] and not closed["merged"]
    reopened = fake.update_pull_request(FULL, 1, state="open")
    assert reopened["state"] == "open" and reopened["closed_at"] is None
    merged = fake.update_pull_request(FULL, 1, merged=True, merged_by="octo-lead")
    assert (merged["state"], merged["merged"]) == ("closed", True)
    assert merged["merged_at"] and merged["merged_by"]["login"] == "octo-lead"
    with pytest.raises(ValueError, match="reopened"):
        fake.update_pull_request(FULL, 1, state="open")
    with pytest.raises(ValueError, match="full SHA"):
        fake.update_pull_request(FULL, 1, head_sha="main")
    with pytest.raises(ValueError, match="already has"):
        fake.add_pull_request(FULL, 1, head_sha=git_repo.head, head_ref="x")
    with pytest.raises(ValueError, match="no branch"):
        fake.add_pull_request(FULL, 2, head_sha=git_repo.head, head_ref="x", base_ref="nope")
    with pytest.raises(KeyError):
        fake.pull_request(FULL, 99)


# --------------------------------------------------------------------------- commits


def test_get_commit(fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo) -> None:
    auth = installation_token(client, fake)
    response = client.get(f"/repos/{FULL}/commits/feature", headers=auth)
    assert response.status_code == 200, response.text
    commit = response.json()
    assert commit["sha"] == git_repo.feature
    assert commit["commit"]["message"] == "Add the guide\n\nAnd a link."
    assert commit["commit"]["author"]["email"] == "test@example.com"
    assert commit["commit"]["author"]["date"].endswith("Z")
    assert commit["commit"]["tree"]["sha"] == _git(git_repo.path, "rev-parse", "feature^{tree}")
    assert commit["author"] is None  # no GitHub user has that email
    assert [parent["sha"] for parent in commit["parents"]] == [git_repo.head]
    assert commit["html_url"] == f"https://github.com/{FULL}/commit/{git_repo.feature}"
    files = {entry["filename"]: entry for entry in commit["files"]}
    assert set(files) == {"app.py", "big.bin", "docs/guide.md", "link.py"}
    assert (files["app.py"]["status"], files["app.py"]["additions"]) == ("modified", 1)
    assert files["docs/guide.md"]["status"] == "added"
    assert commit["stats"]["total"] == sum(entry["changes"] for entry in commit["files"])

    for ref in (git_repo.first, "heads/main", "tags/v1.0", "refs/heads/main", "v1.0"):
        found = client.get(f"/repos/{FULL}/commits/{ref}", headers=auth)
        assert found.status_code == 200, ref
    root = client.get(f"/repos/{FULL}/commits/{git_repo.first}", headers=auth).json()
    assert root["parents"] == [] and [f["filename"] for f in root["files"]] == ["app.py"]
    only_sha = client.get(
        f"/repos/{FULL}/commits/main", headers={**auth, "Accept": "application/vnd.github.sha"}
    )
    assert only_sha.text == git_repo.head
    assert fake.errors == []

    unknown = client.get(f"/repos/{FULL}/commits/no-such-branch", headers=auth)
    assert unknown.status_code == 422
    assert unknown.json()["message"] == "No commit found for SHA: no-such-branch"
    assert client.get(f"/repos/{FULL}/commits/{'a' * 40}", headers=auth).status_code == 422
    no_contents = installation_token(client, fake, {"metadata": "read"})
    assert client.get(f"/repos/{FULL}/commits/main", headers=no_contents).status_code == 403
    assert len(fake.errors) == 3


# --------------------------------------------------------------------------- contents


def test_get_file_contents(fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo) -> None:
    auth = installation_token(client, fake)
    url = f"/repos/{FULL}/contents/docs/guide.md"
    response = client.get(url, headers=auth, params={"ref": "feature"})
    assert response.status_code == 200, response.text
    file = response.json()
    assert (file["type"], file["encoding"], file["name"], file["path"]) == (
        "file",
        "base64",
        "guide.md",
        "docs/guide.md",
    )
    assert file["size"] == len(GUIDE.encode())
    assert file["sha"] == _git(git_repo.path, "rev-parse", "feature:docs/guide.md")
    lines = file["content"].split("\n")
    assert lines[-1] == "" and all(len(line) == 60 for line in lines[:-2])  # GitHub's wrapping
    assert 0 < len(lines[-2]) <= 60
    assert base64.b64decode(file["content"]) == GUIDE.encode()
    assert file["url"] == f"{fake.url}{url}?ref=feature"
    assert file["_links"]["git"] == file["git_url"]

    for media_type in ("application/vnd.github.raw", "application/vnd.github.raw+json"):
        raw = client.get(url, headers={**auth, "Accept": media_type}, params={"ref": "feature"})
        assert raw.status_code == 200 and raw.content == GUIDE.encode()
    # No ref: the default branch. A symlink to a file serves that file.
    assert b"v2" in base64.b64decode(
        client.get(f"/repos/{FULL}/contents/app.py", headers=auth).json()["content"]
    )
    link = client.get(f"/repos/{FULL}/contents/link.py", headers=auth, params={"ref": "feature"})
    assert (link.json()["type"], link.json()["path"]) == ("file", "app.py")
    assert fake.errors == []


def test_missing_contents_are_404(fake: FakeGitHub, client: httpx.Client) -> None:
    auth = installation_token(client, fake)
    missing = client.get(f"/repos/{FULL}/contents/docs/guide.md", headers=auth)  # not on main
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    assert fake.errors == []  # asking whether a file exists is fine
    bad_ref = client.get(f"/repos/{FULL}/contents/app.py", headers=auth, params={"ref": "nope"})
    assert bad_ref.status_code == 404
    assert bad_ref.json()["message"] == "No commit found for the ref nope"
    metadata_only = installation_token(client, fake, {"metadata": "read"})
    denied = client.get(f"/repos/{FULL}/contents/app.py", headers=metadata_only)
    assert denied.status_code == 403
    assert len(fake.errors) == 2 and "contents: read" in fake.errors[-1]


def test_directory_contents_and_big_files(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    feature = {"ref": "feature"}
    root = client.get(f"/repos/{FULL}/contents", headers=auth, params=feature).json()
    assert {(item["name"], item["type"]) for item in root} == {
        ("Dockerfile", "file"),
        ("app.py", "file"),
        ("big.bin", "file"),
        ("docs", "dir"),
        ("link.py", "symlink"),
    }
    assert all("content" not in item for item in root)
    docs = client.get(
        f"/repos/{FULL}/contents/docs",
        headers={**auth, "Accept": "application/vnd.github.object+json"},
        params=feature,
    ).json()
    assert docs["type"] == "dir" and [e["path"] for e in docs["entries"]] == ["docs/guide.md"]
    assert docs["sha"] == _git(git_repo.path, "rev-parse", "feature:docs")

    big = f"/repos/{FULL}/contents/big.bin"
    as_object = client.get(
        big, headers={**auth, "Accept": "application/vnd.github.object"}, params=feature
    ).json()
    assert (as_object["encoding"], as_object["content"], as_object["size"]) == (
        "none",
        "",
        BIG_FILE_SIZE,
    )
    raw = client.get(big, headers={**auth, "Accept": "application/vnd.github.raw"}, params=feature)
    assert len(raw.content) == BIG_FILE_SIZE
    assert fake.errors == []
    too_large = client.get(big, headers=auth, params=feature)  # JSON stops at 1 MB
    assert too_large.status_code == 403
    assert too_large.json()["errors"][0]["code"] == "too_large"


# --------------------------------------------------------------------------- collaborators


@pytest.mark.parametrize(
    ("role", "permission", "role_name"),
    [
        ("admin", "admin", "admin"),
        ("maintain", "write", "maintain"),
        ("write", "write", "write"),
        ("triage", "read", "triage"),
        ("read", "read", "read"),
        ("none", "none", ""),
    ],
)
def test_collaborator_permission_maps_roles_like_github(
    fake: FakeGitHub, client: httpx.Client, role: str, permission: str, role_name: str
) -> None:
    fake.set_permission(FULL, "Octo-Dev", role)
    auth = installation_token(client, fake)
    response = client.get(f"/repos/{FULL}/collaborators/octo-dev/permission", headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["permission"], body["role_name"]) == (permission, role_name)
    assert body["user"]["login"] == "Octo-Dev" and body["user"]["role_name"] == role_name
    assert body["user"]["permissions"]["push"] is (permission in ("admin", "write"))
    assert body["user"]["permissions"]["pull"] is (permission != "none")
    assert fake.errors == []


def test_collaborator_permission_of_unknown_owners_and_public_repos(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    unknown = client.get(f"/repos/{FULL}/collaborators/ghost-user/permission", headers=auth)
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "ghost-user is not a user"
    assert fake.errors == []
    # An author of a pull request is a known user: no access to a private repository...
    fake.add_pull_request(FULL, 2, head_sha=git_repo.head, head_ref="main", user="drive-by")
    url = f"/repos/{FULL}/collaborators/drive-by/permission"
    assert client.get(url, headers=auth).json()["permission"] == "none"
    # ...but everyone can read a public one, and a user owns their own repositories.
    fake.add_installation(90, "solo")
    fake.add_repository(90, "solo", "site", git_repo.path, private=False)
    token = client.post(
        "/app/installations/90/access_tokens", headers=bearer(app_jwt(fake.private_key_pem))
    ).json()["token"]
    for login, permission in (("solo", "admin"), ("drive-by", "read")):
        answer = client.get(
            f"/repos/solo/site/collaborators/{login}/permission",
            headers={"Authorization": f"token {token}"},
        )
        assert answer.json()["permission"] == permission, login
    contents_only = installation_token(client, fake, {"contents": "read"})
    assert client.get(url, headers=contents_only).status_code == 403
    assert len(fake.errors) == 1 and "metadata: read" in fake.errors[0]
    with pytest.raises(ValueError, match="role must be one of"):
        fake.set_permission(FULL, "octo-dev", "owner")


# --------------------------------------------------------------------------- check runs (more)


def test_rerequest_check_run(fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo) -> None:
    auth = installation_token(client, fake)
    run = new_check_run(client, auth, git_repo.head, status="in_progress").json()
    url = f"/repos/{FULL}/check-runs/{run['id']}/rerequest"
    assert client.post(url, headers=auth).status_code == 422  # only completed runs
    client.patch(
        f"/repos/{FULL}/check-runs/{run['id']}", headers=auth, json={"conclusion": "failure"}
    )
    accepted = client.post(url, headers=auth)
    assert (accepted.status_code, accepted.json()) == (201, {})
    [stored] = fake.check_runs(FULL)
    assert stored.rerequests == 1 and stored.conclusion == "failure"  # the run itself is kept
    assert client.post(f"/repos/{FULL}/check-runs/1/rerequest", headers=auth).status_code == 404
    assert len(fake.errors) == 2


def test_check_runs_list_open_same_repository_pull_requests(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    fake.add_pull_request(FULL, 5, head_sha=git_repo.feature, head_ref="feature")
    fake.add_pull_request(
        FULL, 6, head_sha=git_repo.fork, head_ref="patch", head_full_name="contrib/shop"
    )
    auth = installation_token(client, fake)
    ours = new_check_run(client, auth, git_repo.feature).json()
    assert [pull["number"] for pull in ours["pull_requests"]] == [5]
    assert ours["pull_requests"][0]["head"] == {
        "ref": "feature",
        "sha": git_repo.feature,
        "repo": {
            "id": ours["pull_requests"][0]["base"]["repo"]["id"],
            "url": f"{fake.url}/repos/{FULL}",
            "name": REPO,
        },
    }
    theirs = new_check_run(client, auth, git_repo.fork).json()
    assert theirs["pull_requests"] == []  # GitHub leaves pull requests from forks out

    delivered = fake.check_run_json(FULL, ours["id"])
    suite = delivered["check_suite"]
    assert (suite["id"], suite["head_sha"], suite["head_branch"]) == (
        ours["check_suite"]["id"],
        git_repo.feature,
        "feature",
    )
    assert suite["after"] == git_repo.feature and suite["before"] == git_repo.head
    assert [pull["number"] for pull in suite["pull_requests"]] == [5]
    assert delivered["app"]["id"] == APP_ID
    assert fake.check_run_json(FULL, theirs["id"])["check_suite"]["head_branch"] is None
    fake.update_pull_request(FULL, 5, state="closed")
    assert fake.check_run_json(FULL, ours["id"])["pull_requests"] == []
    with pytest.raises(KeyError):
        fake.check_run_json(FULL, 123)


def test_a_suite_for_a_fork_pull_request_has_no_head_branch(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    # The fork's commit is also the tip of a branch here (as when a test makes it on one).
    fake.add_pull_request(
        FULL, 6, head_sha=git_repo.feature, head_ref="patch", head_full_name="contrib/shop"
    )
    auth = installation_token(client, fake)
    run = new_check_run(client, auth, git_repo.feature).json()
    suite = fake.check_run_json(FULL, run["id"])["check_suite"]
    assert (suite["head_branch"], suite["pull_requests"]) == (None, [])
    fake.update_pull_request(FULL, 6, state="closed")
    assert fake.check_run_json(FULL, run["id"])["check_suite"]["head_branch"] == "feature"


# --------------------------------------------------------------------------- latency


def test_latency_delays_every_api_answer_concurrently(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    # Half a second: the bounds below keep their meaning on a loaded machine (or beside
    # another xdist worker), where 0.2 s of margin was not enough for six requests.
    latency = 0.5
    fake.latency_seconds = latency

    def timed(path: str) -> float:
        started = time.monotonic()
        client.get(path, headers=auth)
        return time.monotonic() - started

    paths = [f"/repos/{FULL}/commits/main", f"/repos/{FULL}/pulls/404", "/app"] * 2
    started = time.monotonic()
    with ThreadPoolExecutor(len(paths)) as pool:
        durations = list(pool.map(timed, paths))
    elapsed = time.monotonic() - started
    assert min(durations) >= latency  # errors (404, 401) wait too
    assert elapsed < latency * 3  # six requests at once, not one after the other

    redirect_started = time.monotonic()
    redirect = client.get(f"/repos/{FULL}/tarball/main", headers=auth)
    assert time.monotonic() - redirect_started >= latency
    download_started = time.monotonic()
    assert httpx.get(redirect.headers["Location"], headers={"User-Agent": "t"}).status_code == 200
    assert time.monotonic() - download_started < latency  # codeload is not the API

    fake.latency_seconds = 0
    assert timed("/app") < latency
    with pytest.raises(ValueError):
        fake.latency_seconds = -1


def test_latency_can_be_set_at_construction(app_key: str) -> None:
    with FakeGitHub(private_key_pem=app_key, latency_seconds=0.05) as slow:
        assert slow.latency_seconds == 0.05
        started = time.monotonic()
        httpx.get(f"{slow.url}/app", headers={"User-Agent": "t"})
        assert time.monotonic() - started >= 0.05
    with pytest.raises(ValueError):
        FakeGitHub(private_key_pem=app_key, latency_seconds=float("nan"))


# --------------------------------------------------------------------------- every request


def test_requests_need_a_user_agent_and_json_bodies(fake: FakeGitHub, client: httpx.Client) -> None:
    auth = installation_token(client, fake)
    del client.headers["User-Agent"]
    assert client.get(f"/repos/{FULL}/deployments", headers=auth).status_code == 403
    client.headers["User-Agent"] = "slipway-tests"
    bad_json = client.post(
        f"/repos/{FULL}/deployments",
        headers={**auth, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert bad_json.status_code == 400
    unknown = client.get(f"/repos/{FULL}/branches", headers=auth)
    assert unknown.status_code == 404 and unknown.json()["message"] == "Not Found"
    assert len(fake.errors) == 3
    assert ("GET", f"/repos/{FULL}/branches") in fake.requests


def test_route_crash_is_a_500_and_the_server_keeps_serving(
    fake: FakeGitHub, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(fake, "_app_json", boom)
    response = client.get("/app", headers=bearer(app_jwt(fake.private_key_pem)))
    assert response.status_code == 500
    assert "RuntimeError: boom" in fake.errors[-1]
    monkeypatch.undo()
    assert client.get("/app", headers=bearer(app_jwt(fake.private_key_pem))).status_code == 200


# --------------------------------------------------------------------------- payloads


def test_signature_and_delivery_headers(fake: FakeGitHub) -> None:
    body = json.dumps(ping_payload(APP_ID)).encode()
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == expected
    sent = headers("ping", "d-1", body, "s3cret", app_id=APP_ID)
    assert sent["X-Hub-Signature-256"] == expected
    assert sent["X-GitHub-Event"] == "ping"
    assert sent["X-GitHub-Delivery"] == "d-1"
    assert sent["X-GitHub-Hook-Installation-Target-Type"] == "integration"
    assert sent["X-GitHub-Hook-Installation-Target-ID"] == str(APP_ID)
    assert sent["User-Agent"].startswith("GitHub-Hookshot/")
    assert json.loads(body)["hook"]["app_id"] == APP_ID


def test_push_payloads(fake: FakeGitHub, git_repo: GitRepo) -> None:
    repository = fake.add_repository(INSTALLATION, OWNER, "api", git_repo.path)
    assert repository["full_name"] == f"{OWNER}/api"
    assert repository["url"] == f"{fake.url}/repos/{OWNER}/api"
    assert repository["default_branch"] == "main"

    push = push_payload(repository, INSTALLATION, "refs/heads/main", git_repo.first, git_repo.head)
    assert push["head_commit"]["id"] == git_repo.head
    assert push["commits"] == [push["head_commit"]]
    assert push["installation"]["id"] == INSTALLATION
    assert isinstance(push["repository"]["pushed_at"], int)
    assert push["organization"]["login"] == OWNER
    assert push["sender"]["login"] == "octocat"

    gone = push_payload(
        repository, INSTALLATION, "refs/heads/feature", git_repo.head, ZERO_SHA, deleted=True
    )
    assert gone["head_commit"] is None and gone["commits"] == [] and gone["deleted"] is True
    with pytest.raises(ValueError, match="ZERO_SHA"):
        push_payload(
            repository, INSTALLATION, "refs/heads/x", git_repo.head, "1" * 40, deleted=True
        )


def test_installation_payloads(fake: FakeGitHub, git_repo: GitRepo) -> None:
    repository = fake.add_repository(INSTALLATION, OWNER, "api", git_repo.path)
    created = installation_payload(
        "created", INSTALLATION, OWNER, [repository], account_type="Organization", app_id=APP_ID
    )
    assert created["installation"]["id"] == INSTALLATION
    assert created["installation"]["app_id"] == APP_ID
    assert created["installation"]["account"]["login"] == OWNER
    assert created["repositories"] == [
        {key: repository[key] for key in ("id", "node_id", "name", "full_name", "private")}
    ]
    suspended = installation_payload("suspend", INSTALLATION, OWNER, [])
    assert suspended["installation"]["suspended_at"] is not None
    added = installation_repositories_payload("added", INSTALLATION, OWNER, [repository], [])
    assert added["repositories_added"][0]["full_name"] == f"{OWNER}/api"
    assert added["repositories_removed"] == []
    with pytest.raises(ValueError):
        installation_payload("renamed", INSTALLATION, OWNER, [])


def test_pull_request_payloads(fake: FakeGitHub, git_repo: GitRepo) -> None:
    repo = fake.repository(FULL)
    opened = fake.add_pull_request(FULL, 9, head_sha=git_repo.head, head_ref="feature", draft=True)
    delivery = pull_request_payload("opened", repo, INSTALLATION, opened)
    assert (delivery["action"], delivery["number"]) == ("opened", 9)
    assert delivery["pull_request"] == opened and delivery["repository"] == repo
    assert delivery["installation"]["id"] == INSTALLATION
    assert delivery["organization"]["login"] == OWNER and delivery["sender"]["login"] == "octo-dev"
    assert "before" not in delivery

    pushed = fake.update_pull_request(FULL, 9, head_sha=git_repo.feature)
    synchronize = pull_request_payload(
        "synchronize", repo, INSTALLATION, pushed, before=git_repo.head, sender="pusher"
    )
    assert (synchronize["before"], synchronize["after"]) == (git_repo.head, git_repo.feature)
    assert synchronize["sender"]["login"] == "pusher"
    ready = fake.update_pull_request(FULL, 9, draft=False)
    assert (
        pull_request_payload("ready_for_review", repo, INSTALLATION, ready)["pull_request"]["draft"]
        is False
    )
    edited = pull_request_payload(
        "edited", repo, INSTALLATION, ready, changes={"title": {"from": "Old"}}
    )
    assert edited["changes"] == {"title": {"from": "Old"}}
    merged = fake.update_pull_request(FULL, 9, merged=True)
    closed = pull_request_payload("closed", repo, INSTALLATION, merged)
    assert closed["pull_request"]["merged"] is True

    with pytest.raises(ValueError, match="open pull request"):
        pull_request_payload("reopened", repo, INSTALLATION, merged)
    with pytest.raises(ValueError, match="closed pull request"):
        pull_request_payload("closed", repo, INSTALLATION, opened)
    with pytest.raises(ValueError, match="before"):
        pull_request_payload("synchronize", repo, INSTALLATION, pushed)
    with pytest.raises(ValueError, match="action must be one of"):
        pull_request_payload("merged", repo, INSTALLATION, merged)


def test_check_run_and_check_suite_payloads(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    repo = fake.repository(FULL)
    pull = fake.add_pull_request(FULL, 5, head_sha=git_repo.feature, head_ref="feature")
    auth = installation_token(client, fake)
    run = new_check_run(client, auth, git_repo.feature, conclusion="success").json()
    stored = fake.check_run_json(FULL, run["id"])

    rerun = check_run_payload("rerequested", repo, INSTALLATION, stored, sender="octo-lead")
    assert rerun["action"] == "rerequested" and rerun["check_run"] == stored
    assert rerun["sender"]["login"] == "octo-lead" and "requested_action" not in rerun
    clicked = check_run_payload(
        "requested_action", repo, INSTALLATION, stored, requested_action_identifier="redeploy"
    )
    assert clicked["requested_action"] == {"identifier": "redeploy"}
    with pytest.raises(ValueError, match="whole check_suite"):
        check_run_payload("rerequested", repo, INSTALLATION, run)  # the REST answer
    with pytest.raises(ValueError, match="requested_action_identifier"):
        check_run_payload("requested_action", repo, INSTALLATION, stored)
    unfinished = new_check_run(client, auth, git_repo.feature, status="in_progress").json()
    with pytest.raises(ValueError, match="completed check run"):
        check_run_payload(
            "rerequested", repo, INSTALLATION, fake.check_run_json(FULL, unfinished["id"])
        )

    suite = check_suite_payload(
        "rerequested",
        repo,
        INSTALLATION,
        head_sha=git_repo.feature,
        head_branch="feature",
        pull_requests=[pull],
        check_suite_id=stored["check_suite"]["id"],
    )
    body = suite["check_suite"]
    assert (body["id"], body["head_sha"], body["head_branch"]) == (
        stored["check_suite"]["id"],
        git_repo.feature,
        "feature",
    )
    assert body["pull_requests"] == stored["pull_requests"]
    assert (body["status"], body["conclusion"]) == ("completed", "success")
    assert body["head_commit"]["id"] == git_repo.feature
    fork_pull = fake.add_pull_request(
        FULL, 6, head_sha=git_repo.fork, head_ref="patch", head_full_name="contrib/shop"
    )
    with pytest.raises(ValueError, match="forks"):
        check_suite_payload(
            "rerequested",
            repo,
            INSTALLATION,
            head_sha=git_repo.fork,
            head_branch=None,
            pull_requests=[fork_pull],
        )


# --------------------------------------------------------------------------- githubkit


def test_answers_parse_with_githubkit_models(
    fake: FakeGitHub, git_repo: GitRepo, tmp_path: Path
) -> None:
    """The app's client (githubkit) validates answers against GitHub's schema: ours must pass."""
    from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
    from githubkit.cache.mem_cache import MemCacheStrategy

    # githubkit keeps App JWTs in a process-wide cache by App id; this App's key is not the one
    # other tests' App of the same id signed with.
    cache = MemCacheStrategy()
    app: GitHub[Any] = GitHub(
        AppAuthStrategy(APP_ID, fake.private_key_pem), base_url=fake.url, cache_strategy=cache
    )
    me = app.rest.apps.get_authenticated().parsed_data
    assert me is not None and me.slug == "slipway-test"
    installation = app.rest.apps.get_repo_installation(OWNER, REPO).parsed_data
    assert installation.id == INSTALLATION

    gh: GitHub[Any] = GitHub(
        AppInstallationAuthStrategy(APP_ID, fake.private_key_pem, INSTALLATION),
        base_url=fake.url,
        cache_strategy=cache,
    )
    checks = gh.rest.checks
    run = checks.create(OWNER, REPO, name="Slipway", head_sha=git_repo.head).parsed_data
    assert run.status == "queued"
    run = checks.update(
        OWNER, REPO, run.id, conclusion="failure", output={"title": "Failed", "summary": "x"}
    ).parsed_data
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert checks.list_for_ref(OWNER, REPO, git_repo.head).parsed_data.total_count == 1

    repos = gh.rest.repos
    deployment = repos.create_deployment(
        OWNER, REPO, ref=git_repo.head, auto_merge=False, required_contexts=[]
    ).parsed_data
    status = repos.create_deployment_status(
        OWNER, REPO, deployment.id, state="error", description="build failed"
    ).parsed_data
    assert status.state == "error"
    assert [d.id for d in repos.list_deployments(OWNER, REPO).parsed_data] == [deployment.id]

    comment = gh.rest.issues.create_comment(OWNER, REPO, 1, body="hello").parsed_data
    assert gh.rest.issues.update_comment(OWNER, REPO, comment.id, body="bye").parsed_data.body
    assert gh.rest.repos.get(OWNER, REPO).parsed_data.full_name == FULL

    # A streamed body must be read while the client is open: githubkit closes a per-call client
    # as soon as the call returns.
    target = tmp_path / "source.tar.gz"
    with gh:
        tarball = repos.download_tarball_archive(OWNER, REPO, git_repo.head, stream=True)
        target.write_bytes(b"".join(tarball.raw_response.iter_bytes()))
    with tarfile.open(target) as tar:
        assert f"{OWNER}-{REPO}-{git_repo.head[:7]}/app.py" in tar.getnames()
    assert fake.token_requests == 1
    assert fake.errors == []


def test_pull_requests_contents_and_deliveries_parse_with_githubkit_models(
    fake: FakeGitHub, git_repo: GitRepo
) -> None:
    """githubkit's models (REST answers and webhook deliveries) accept what the fake makes."""
    from githubkit import AppInstallationAuthStrategy, GitHub
    from githubkit.cache import MemCacheStrategy
    from githubkit_schemas.latest import models
    from pydantic import BaseModel

    # The models of one event and action each: githubkit.webhooks.parse_obj builds the union of
    # every action's model on first use, which takes seconds.

    gh: GitHub[Any] = GitHub(
        AppInstallationAuthStrategy(APP_ID, fake.private_key_pem, INSTALLATION),
        base_url=fake.url,
        cache_strategy=MemCacheStrategy(),  # not the token another test's fake GitHub issued
    )
    repo = fake.repository(FULL)
    opened = fake.add_pull_request(FULL, 5, head_sha=git_repo.feature, head_ref="feature")
    fork = fake.add_pull_request(
        FULL, 6, head_sha=git_repo.fork, head_ref="patch", head_full_name="contrib/shop"
    )
    fake.set_permission(FULL, "octo-dev", "triage")
    with gh:
        pull = gh.rest.pulls.get(OWNER, REPO, 6).parsed_data
        assert pull.head.repo is not None and pull.head.repo.full_name == "contrib/shop"
        commit = gh.rest.repos.get_commit(OWNER, REPO, "feature").parsed_data
        assert commit.sha == git_repo.feature and commit.files is not None
        file = gh.rest.repos.get_content(OWNER, REPO, "docs/guide.md", ref="feature").parsed_data
        assert not isinstance(file, list) and file.type == "file"
        listing = gh.rest.repos.get_content(OWNER, REPO, "", ref="feature").parsed_data
        assert isinstance(listing, list) and len(listing) == 5
        level = gh.rest.repos.get_collaborator_permission_level(OWNER, REPO, "octo-dev")
        assert (level.parsed_data.permission, level.parsed_data.role_name) == ("read", "triage")
        run = gh.rest.checks.create(
            OWNER, REPO, name="Slipway", head_sha=git_repo.feature, conclusion="success"
        ).parsed_data
        assert [p.number for p in run.pull_requests] == [5]
        assert gh.rest.checks.rerequest_run(OWNER, REPO, run.id).status_code == 201
    stored = fake.check_run_json(FULL, run.id)
    deliveries: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (
            models.WebhookPullRequestOpened,
            pull_request_payload("opened", repo, INSTALLATION, opened),
        ),
        (models.WebhookPullRequestOpened, pull_request_payload("opened", repo, INSTALLATION, fork)),
        (
            models.WebhookPullRequestSynchronize,
            pull_request_payload(
                "synchronize",
                repo,
                INSTALLATION,
                fake.update_pull_request(FULL, 5, head_sha=git_repo.head),
                before=git_repo.feature,
            ),
        ),
        (
            models.WebhookPullRequestClosed,
            pull_request_payload(
                "closed", repo, INSTALLATION, fake.update_pull_request(FULL, 6, state="closed")
            ),
        ),
        (
            models.WebhookCheckRunRerequested,
            check_run_payload("rerequested", repo, INSTALLATION, stored),
        ),
        (
            models.WebhookCheckRunRequestedAction,
            check_run_payload(
                "requested_action", repo, INSTALLATION, stored, requested_action_identifier="x"
            ),
        ),
        (
            models.WebhookCheckSuiteRerequested,
            check_suite_payload(
                "rerequested",
                repo,
                INSTALLATION,
                head_sha=git_repo.feature,
                head_branch="feature",
                pull_requests=[opened],
            ),
        ),
    ]
    for model, payload in deliveries:
        assert model.model_validate(payload).model_dump()["action"] == payload["action"]
    assert fake.errors == []


# --------------------------------------------------------------------------- annotations


def _annotation(**overrides: object) -> dict[str, object]:
    return {
        "path": "langgraph.json",
        "start_line": 3,
        "end_line": 3,
        "annotation_level": "failure",
        "message": "graph 'agent': the file './agnet.py' does not exist",
        **overrides,
    }


def test_annotations_are_appended_per_request_and_listed(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    run = new_check_run(client, auth, git_repo.head).json()
    for line in (3, 7):
        response = client.patch(
            f"/repos/{FULL}/check-runs/{run['id']}",
            headers=auth,
            json={
                "output": {
                    "title": "Failed",
                    "summary": "s",
                    "annotations": [_annotation(start_line=line, end_line=line)],
                }
            },
        )
        assert response.status_code == 200, response.text
    assert response.json()["output"]["annotations_count"] == 2
    listed = client.get(f"/repos/{FULL}/check-runs/{run['id']}/annotations", headers=auth)
    assert [a["start_line"] for a in listed.json()] == [3, 7]
    assert listed.json()[0]["annotation_level"] == "failure"


@pytest.mark.parametrize(
    ("annotation", "complaint"),
    [
        (_annotation(annotation_level="error"), "annotation_level"),
        ({k: v for k, v in _annotation().items() if k != "end_line"}, "end_line is required"),
        ({k: v for k, v in _annotation().items() if k != "message"}, "message is required"),
        (_annotation(start_line=0, end_line=0), "lines start at 1"),
        (_annotation(start_line=5, end_line=4), "must not be before start_line"),
        (_annotation(start_line=1, end_line=2, start_column=3), "only allowed when"),
        (_annotation(title="t" * 256), "title"),
    ],
)
def test_an_annotation_breaking_githubs_rules_is_422(
    fake: FakeGitHub,
    client: httpx.Client,
    git_repo: GitRepo,
    annotation: dict[str, object],
    complaint: str,
) -> None:
    auth = installation_token(client, fake)
    run = new_check_run(client, auth, git_repo.head).json()
    response = client.patch(
        f"/repos/{FULL}/check-runs/{run['id']}",
        headers=auth,
        json={"output": {"title": "Failed", "summary": "s", "annotations": [annotation]}},
    )
    assert response.status_code == 422
    assert complaint in fake.errors[-1]


def test_more_than_50_annotations_in_one_request_is_422(
    fake: FakeGitHub, client: httpx.Client, git_repo: GitRepo
) -> None:
    auth = installation_token(client, fake)
    run = new_check_run(client, auth, git_repo.head).json()
    response = client.patch(
        f"/repos/{FULL}/check-runs/{run['id']}",
        headers=auth,
        json={"output": {"title": "F", "summary": "s", "annotations": [_annotation()] * 51}},
    )
    assert response.status_code == 422
    assert "at most 50" in fake.errors[-1]
