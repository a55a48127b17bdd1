"""A local stand-in for the GitHub REST API that also checks what the app sends it.

:class:`FakeGitHub` serves the endpoints Slipway calls (App JWT and installation-token auth,
tarball downloads, check runs, deployments and their statuses, issue comments) on
``http://127.0.0.1:<free port>``. It answers the way GitHub does, including the error status
codes, and records every contract violation it sees in :attr:`FakeGitHub.errors`, so a test can
end with ``fake.assert_no_errors()``.

Repositories are real git directories: refs resolve with ``git rev-parse`` and tarballs are made
with ``git archive``, so the app under test gets exactly the commit it asked for.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.keys import new_private_key_pem

from .payloads import (
    APP_EVENTS,
    DEFAULT_APP_ID,
    DEFAULT_APP_SLUG,
    GITHUB_WEB,
    installation_object,
    iso_time,
    node_id,
    user_object,
)

JSON = dict[str, Any]

__all__ = [
    "CHECK_RUN_CONCLUSIONS",
    "CHECK_RUN_STATUSES",
    "DEFAULT_PERMISSIONS",
    "DEPLOYMENT_STATES",
    "CheckRun",
    "Deployment",
    "FakeGitHub",
]

SUPPORTED_API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
CHECK_RUN_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_RUN_CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
)
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
ANNOTATION_LEVELS = ("notice", "warning", "failure")
DEFAULT_PERMISSIONS: Mapping[str, str] = {
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}
MAX_OUTPUT_TEXT = 65535
MAX_COMMENT_BODY = 65536
MAX_DESCRIPTION = 140
MAX_ANNOTATIONS = 50
JWT_MAX_LIFETIME = 600
"""GitHub refuses App JWTs whose ``exp`` is more than 10 minutes out."""
CLOCK_SKEW = 60
CODELOAD_LIFETIME = 300
"""Tarball links of private repositories expire after five minutes."""
_PERMISSION_RANK = {"read": 1, "write": 2, "admin": 3}
_SHA = re.compile(r"[0-9a-f]{40}")
_DOCS = "https://docs.github.com/rest"
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_SUCCESSFUL_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})


# --------------------------------------------------------------------------- public records


@dataclass
class CheckRun:
    """A check run as the fake stores it; ``history`` has one snapshot per create/update."""

    id: int
    repository: str
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: str | None
    completed_at: str | None
    check_suite_id: int
    external_id: str | None = None
    details_url: str | None = None
    output: dict[str, str | None] = field(
        default_factory=lambda: {"title": None, "summary": None, "text": None}
    )
    annotations: list[JSON] = field(default_factory=list)
    actions: list[JSON] = field(default_factory=list)
    history: list[JSON] = field(default_factory=list)
    """``{"status", "conclusion", "output", "details_url", ...}`` after every request, in order."""

    def snapshot(self) -> JSON:
        return {
            "name": self.name,
            "status": self.status,
            "conclusion": self.conclusion,
            "output": dict(self.output),
            "details_url": self.details_url,
            "external_id": self.external_id,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


@dataclass
class Deployment:
    """A deployment; ``statuses`` are the deployment-status objects in the order received."""

    id: int
    repository: str
    sha: str
    ref: str
    task: str
    payload: JSON | str
    environment: str
    original_environment: str
    description: str
    transient_environment: bool
    production_environment: bool
    auto_merge: bool
    required_contexts: list[str] | None
    created_at: str
    updated_at: str
    statuses: list[JSON] = field(default_factory=list)
    deleted: bool = False

    @property
    def state(self) -> str | None:
        """State of the latest status, or None before the first one."""
        return str(self.statuses[-1]["state"]) if self.statuses else None


# --------------------------------------------------------------------------- internal records


@dataclass
class _Installation:
    id: int
    account: JSON
    permissions: dict[str, str]
    created_at: str
    suspended_at: str | None = None


@dataclass
class _Repo:
    installation_id: int
    owner: str
    name: str
    git_dir: Path
    default_branch: str
    json: JSON

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def key(self) -> str:
        return self.full_name.lower()


@dataclass
class _Token:
    token: str
    installation_id: int
    expires_at: float
    repositories: frozenset[str] | None
    permissions: dict[str, str]


@dataclass
class _Codeload:
    repo_key: str
    sha: str
    expires_at: float


@dataclass
class _Comment:
    repo_key: str
    issue_number: int
    json: JSON
    deleted: bool = False


class HttpError(Exception):
    """Raised by a route: becomes a GitHub-style error answer and an entry in ``fake.errors``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        detail: str | None = None,
        errors: Sequence[JSON] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or message
        self.errors = list(errors or [])
        self.extra = dict(extra or {})

    def response(self) -> _Response:
        body: JSON = {
            "message": self.message,
            "documentation_url": _DOCS,
            "status": str(self.status),
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return _json(self.status, body)


@dataclass
class _Request:
    method: str
    raw_path: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    parsed: Any = None

    def header(self, name: str) -> str | None:
        value: object = self.headers.get(name)
        return None if value is None else str(value)

    def json_object(self) -> JSON:
        """The request body as a JSON object (an empty body counts as ``{}``)."""
        if not self.body.strip():
            return {}
        if not isinstance(self.parsed, dict):
            raise HttpError(
                422,
                "Invalid request. The body must be a JSON object.",
                detail=f"request body is a JSON {_json_type(self.parsed)}, not an object",
            )
        return cast(JSON, self.parsed)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> _Response:
    return _Response(
        status,
        json.dumps(obj).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _parse_time(value: str) -> str:
    """An RFC 3339 date-time (OpenAPI ``format: date-time``) normalised to GitHub's ``...Z``."""
    if "T" not in value.upper():
        raise ValueError("no time part")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("no UTC offset")
    return iso_time(moment)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class _Body:
    """Checks one JSON request body field by field, collecting GitHub-style errors."""

    def __init__(self, data: Mapping[str, Any], resource: str) -> None:
        self.data = data
        self.resource = resource
        self.errors: list[JSON] = []

    def fail(self, field_name: str, message: str, code: str = "invalid") -> None:
        self.errors.append(
            {"resource": self.resource, "field": field_name, "code": code, "message": message}
        )

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        nullable: bool = False,
        non_empty: bool = False,
        max_length: int | None = None,
        choices: Sequence[str] | None = None,
        data: Mapping[str, Any] | None = None,
        label: str | None = None,
    ) -> str | None:
        source = self.data if data is None else data
        name = label or key
        if key not in source:
            if required:
                self.fail(name, f"{name} is required", "missing_field")
            return None
        value: object = source[key]
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.fail(name, f"{name} must be a string, not {_json_type(value)} {value!r}")
            return None
        if non_empty and not value:
            self.fail(name, f"{name} must not be empty", "missing_field")
        if max_length is not None and len(value) > max_length:
            self.fail(name, f"{name} is {len(value)} characters long; the maximum is {max_length}")
        if choices is not None and value not in choices:
            self.fail(name, f"{name} must be one of {list(choices)}, not {value!r}")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, bool):
            self.fail(key, f"{key} must be a boolean, not {_json_type(value)} {value!r}")
            return None
        return value

    def integer(self, key: str, *, data: Mapping[str, Any], label: str) -> int | None:
        if key not in data:
            self.fail(label, f"{label} is required", "missing_field")
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(label, f"{label} must be an integer, not {_json_type(value)} {value!r}")
            return None
        return value

    def url(self, key: str, *, allow_empty: bool = False) -> str | None:
        value = self.string(key)
        if value is None or (allow_empty and value == ""):
            return value
        if not _is_http_url(value):
            self.fail(key, f"{key} must be an absolute http(s) URL, not {value!r}")
            return None
        return value

    def timestamp(self, key: str) -> str | None:
        value = self.string(key)
        if value is None:
            return None
        try:
            return _parse_time(value)
        except ValueError:
            self.fail(
                key,
                f"{key} must be an ISO 8601 date-time with offset (YYYY-MM-DDTHH:MM:SSZ), "
                f"not {value!r}",
            )
            return None

    def array(self, key: str, *, data: Mapping[str, Any] | None = None) -> list[Any] | None:
        source = self.data if data is None else data
        if key not in source:
            return None
        value = source[key]
        if not isinstance(value, list):
            self.fail(key, f"{key} must be an array, not {_json_type(value)}")
            return None
        return value

    def string_list(self, key: str) -> list[str] | None:
        items = self.array(key)
        if items is None:
            return None
        if not all(isinstance(item, str) for item in items):
            self.fail(key, f"{key} must be an array of strings")
            return None
        return cast(list[str], items)

    def obj(self, key: str) -> JSON | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self.fail(key, f"{key} must be an object, not {_json_type(value)}")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise HttpError(
                422,
                "Validation Failed",
                errors=self.errors,
                detail="; ".join(str(error["message"]) for error in self.errors),
            )


# --------------------------------------------------------------------------- git helpers


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(git_dir), *args],
        capture_output=True,
        timeout=60,
        check=False,
    )


def _rev_parse(git_dir: Path, ref: str) -> str | None:
    """The commit SHA a branch, tag or SHA names in ``git_dir``, or None."""
    if not ref or ref.startswith("-") or any(char in ref for char in "\0\n\r\t "):
        return None
    proc = _git(
        git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
    )
    sha = proc.stdout.decode().strip()
    return sha if proc.returncode == 0 and _SHA.fullmatch(sha) else None


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeGitHub) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        self.fake._record(f"connection {client_address}: handler crashed: {traceback.format_exc()}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every keep-alive answer waits ~40 ms for a delayed ACK
    server_version = "FakeGitHub/1.0"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        fake = cast(_Server, self.server).fake
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError) as exc:
            fake._record(f"{self.command} {split.path}: 400 unreadable request body: {exc}")
            self.close_connection = True
            self._send(_json(400, {"message": "Problems parsing request body"}))
            return
        query = {key: values[-1] for key, values in parse_qs(split.query, True).items()}
        request = _Request(
            method=self.command,
            raw_path=split.path,
            path=unquote(split.path),
            query=query,
            headers=self.headers,
            body=body,
        )
        try:
            response = fake._dispatch(request)
        except Exception:
            fake._record(f"{self.command} {split.path}: 500 {traceback.format_exc()}")
            response = _json(500, {"message": "Server Error"})
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(size)

    def _send(self, response: _Response) -> None:
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True


_Route = Callable[[_Request, dict[str, str]], _Response]
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


# --------------------------------------------------------------------------- the fake


class FakeGitHub:
    """A fake ``api.github.com`` for one GitHub App, on 127.0.0.1 and a free port.

    >>> with FakeGitHub(app_id=1234, app_slug="slipway-test") as fake:
    ...     fake.add_installation(1, "octo")
    ...     repo = fake.add_repository(1, "octo", "web", git_dir)
    ...     ...  # run the app against fake.url with fake.private_key_pem
    ...     fake.assert_no_errors()
    """

    def __init__(
        self,
        app_id: int = DEFAULT_APP_ID,
        app_slug: str = DEFAULT_APP_SLUG,
        token_lifetime: timedelta = timedelta(hours=1),
        *,
        app_name: str = "Slipway Test",
        app_owner: str = "slipway-owner",
        host: str = "127.0.0.1",
        private_key_pem: str | None = None,
    ) -> None:
        """``private_key_pem``: reuse an App key (PEM, RSA) instead of generating a new one;
        generating takes ~50 ms, which adds up over many short tests."""
        self.app_id = app_id
        self.app_slug = app_slug
        self.app_name = app_name
        self.app_owner = app_owner
        self.token_lifetime = token_lifetime
        if private_key_pem is None:
            private_key_pem = new_private_key_pem()
        loaded = serialization.load_pem_private_key(
            private_key_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("the App key must be an RSA private key")
        self._private_key_pem = private_key_pem
        self._public_key = loaded.public_key()
        self._created_at = iso_time()
        self._lock = threading.RLock()
        self._errors: list[str] = []
        self._requests: list[tuple[str, str]] = []
        self._token_requests = 0
        self._installations: dict[int, _Installation] = {}
        self._repos: dict[str, _Repo] = {}
        self._tokens: dict[str, _Token] = {}
        self._codeload: dict[str, _Codeload] = {}
        self._check_runs: dict[int, CheckRun] = {}
        self._check_suites: dict[tuple[str, str], int] = {}
        self._deployments: dict[int, Deployment] = {}
        self._comments: dict[int, _Comment] = {}
        self._ids: dict[str, int] = {
            "repository": 700_000_000,
            "check_run": 10_000_000_000,
            "check_suite": 20_000_000_000,
            "deployment": 1_000_000_000,
            "deployment_status": 3_000_000_000,
            "comment": 2_000_000_000,
        }
        self._server = _Server((host, 0), self)
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], _Route]] = [
            (method, re.compile(pattern), route)
            for method, pattern, route in [
                ("GET", r"/app", self._get_app),
                ("GET", r"/app/installations", self._list_installations),
                ("GET", r"/app/installations/(?P<installation_id>\d+)", self._get_installation),
                (
                    "POST",
                    r"/app/installations/(?P<installation_id>\d+)/access_tokens",
                    self._create_token,
                ),
                ("GET", r"/installation/repositories", self._list_installation_repositories),
                ("GET", _REPO, self._get_repository),
                ("GET", _REPO + r"/installation", self._get_repository_installation),
                ("GET", _REPO + r"/tarball(?:/(?P<ref>.+))?", self._tarball),
                (
                    "GET",
                    r"/_codeload/(?P<owner>[^/]+)/(?P<repo>[^/]+)/legacy\.tar\.gz/(?P<sha>[0-9a-f]{40})",
                    self._codeload_archive,
                ),
                ("POST", _REPO + r"/check-runs", self._create_check_run),
                ("GET", _REPO + r"/check-runs/(?P<check_run_id>\d+)", self._get_check_run),
                ("PATCH", _REPO + r"/check-runs/(?P<check_run_id>\d+)", self._update_check_run),
                ("GET", _REPO + r"/commits/(?P<ref>.+)/check-runs", self._list_check_runs),
                ("POST", _REPO + r"/deployments", self._create_deployment),
                ("GET", _REPO + r"/deployments", self._list_deployments),
                ("DELETE", _REPO + r"/deployments/(?P<deployment_id>\d+)", self._delete_deployment),
                (
                    "POST",
                    _REPO + r"/deployments/(?P<deployment_id>\d+)/statuses",
                    self._create_deployment_status,
                ),
                (
                    "GET",
                    _REPO + r"/deployments/(?P<deployment_id>\d+)/statuses",
                    self._list_deployment_statuses,
                ),
                ("POST", _REPO + r"/issues/(?P<issue_number>\d+)/comments", self._create_comment),
                ("GET", _REPO + r"/issues/(?P<issue_number>\d+)/comments", self._list_comments),
                ("PATCH", _REPO + r"/issues/comments/(?P<comment_id>\d+)", self._update_comment),
                ("DELETE", _REPO + r"/issues/comments/(?P<comment_id>\d+)", self._delete_comment),
            ]
        ]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeGitHub:
        """Serve in a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeGitHub already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"fake-github-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The API base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self._server.server_address[0]!s}:{self.port}"

    @property
    def private_key_pem(self) -> str:
        """The App's RSA private key (PKCS#1 PEM) to configure the app under test with."""
        return self._private_key_pem

    @property
    def public_key_pem(self) -> str:
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def add_installation(
        self,
        installation_id: int,
        account_login: str,
        *,
        account_type: str = "User",
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        """Install the App on ``account_login`` (a User or an Organization)."""
        with self._lock:
            if installation_id in self._installations:
                raise ValueError(f"installation {installation_id} already exists")
            self._installations[installation_id] = _Installation(
                id=installation_id,
                account=user_object(account_login, user_type=account_type, api_url=self.url),
                permissions=dict(DEFAULT_PERMISSIONS if permissions is None else permissions),
                created_at=iso_time(),
            )

    def suspend_installation(self, installation_id: int, suspended: bool = True) -> None:
        """Suspend (or unsuspend) an installation: its tokens then get 403."""
        with self._lock:
            self._installation(installation_id).suspended_at = iso_time() if suspended else None

    def remove_installation(self, installation_id: int) -> None:
        """Uninstall: the installation, its repositories and tokens disappear."""
        with self._lock:
            del self._installations[installation_id]
            self._repos = {
                key: repo
                for key, repo in self._repos.items()
                if repo.installation_id != installation_id
            }
            self._tokens = {
                value: token
                for value, token in self._tokens.items()
                if token.installation_id != installation_id
            }

    def add_repository(
        self,
        installation_id: int,
        owner: str,
        name: str,
        git_dir: Path,
        default_branch: str = "main",
        *,
        private: bool = True,
    ) -> JSON:
        """Give the installation a repository backed by ``git_dir`` (a work tree or bare repo).

        Returns the repository object as GitHub puts it in webhook payloads.
        """
        git_dir = Path(git_dir)
        with self._lock:
            installation = self._installation(installation_id)
            if owner.lower() != str(installation.account["login"]).lower():
                raise ValueError(
                    f"installation {installation_id} is on {installation.account['login']!r}; "
                    f"it cannot hold a repository of {owner!r}"
                )
            if f"{owner}/{name}".lower() in self._repos:
                raise ValueError(f"repository {owner}/{name} already exists")
        if _git(git_dir, "rev-parse", "--git-dir").returncode != 0:
            raise ValueError(f"{git_dir} is not a git repository")
        with self._lock:
            repo_id = self._next_id("repository")
            repo_json = self._repository_json(
                installation.account, name, repo_id, default_branch, private
            )
            repo = _Repo(installation_id, owner, name, git_dir, default_branch, repo_json)
            self._repos[repo.key] = repo
            return copy.deepcopy(repo_json)

    def remove_repository(self, full_name: str) -> None:
        """Take a repository away from its installation."""
        with self._lock:
            del self._repos[full_name.lower()]

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expired (GitHub answers 401 to them)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, time.time() - 1)

    # ------------------------------------------------------------------ what was seen

    @property
    def errors(self) -> list[str]:
        """Every contract violation seen, as ``"METHOD /path: STATUS what was wrong"``."""
        with self._lock:
            return list(self._errors)

    def clear_errors(self) -> None:
        with self._lock:
            self._errors.clear()

    def assert_no_errors(self) -> None:
        errors = self.errors
        if errors:
            raise AssertionError("fake GitHub saw contract violations:\n  " + "\n  ".join(errors))

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request, in order (path without the query string)."""
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> int:
        """How many installation tokens were issued."""
        with self._lock:
            return self._token_requests

    def check_runs(self, full_name: str) -> list[CheckRun]:
        """Copies of the repository's check runs, in creation order."""
        key = full_name.lower()
        with self._lock:
            runs = sorted(
                (run for run in self._check_runs.values() if run.repository.lower() == key),
                key=lambda run: run.id,
            )
            return copy.deepcopy(runs)

    def deployments(self, full_name: str) -> list[Deployment]:
        """Copies of the repository's deployments (deleted ones too), in creation order."""
        key = full_name.lower()
        with self._lock:
            found = sorted(
                (dep for dep in self._deployments.values() if dep.repository.lower() == key),
                key=lambda dep: dep.id,
            )
            return copy.deepcopy(found)

    def comments(self, full_name: str, issue_number: int) -> list[JSON]:
        """The issue's (or pull request's) comments that still exist, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(comment.json)
                for comment in self._comment_list(full_name.lower(), issue_number)
            ]

    # ------------------------------------------------------------------ internals

    def _record(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def _next_id(self, kind: str) -> int:
        with self._lock:
            self._ids[kind] += 1
            return self._ids[kind]

    def _installation(self, installation_id: int) -> _Installation:
        installation = self._installations.get(installation_id)
        if installation is None:
            raise KeyError(f"no installation {installation_id}")
        return installation

    def _dispatch(self, request: _Request) -> _Response:
        with self._lock:
            self._requests.append((request.method, request.path))
        try:
            self._check_common(request)
            for method, pattern, route in self._routes:
                match = pattern.fullmatch(request.raw_path)
                if match and method == request.method:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return route(request, params)
            raise HttpError(404, "Not Found", detail="no such endpoint in the fake GitHub")
        except HttpError as error:
            self._record(f"{request.method} {request.path}: {error.status} {error.detail}")
            return error.response()

    def _check_common(self, request: _Request) -> None:
        if not (request.header("User-Agent") or "").strip():
            raise HttpError(
                403,
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header",
                detail="request has no User-Agent header",
            )
        version = request.header("X-GitHub-Api-Version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:
            raise HttpError(
                400,
                f"API version {version} is not supported.",
                detail=f"unsupported X-GitHub-Api-Version {version!r}",
            )
        if request.body.strip():
            try:
                request.parsed = json.loads(request.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HttpError(
                    400, "Problems parsing JSON", detail=f"request body is not JSON: {exc}"
                ) from exc

    # ------------------------------------------------------------------ auth

    def _credentials(self, request: _Request) -> tuple[str, str]:
        value = (request.header("Authorization") or "").strip()
        if not value:
            raise HttpError(401, "Requires authentication", detail="no Authorization header")
        scheme, _, credential = value.partition(" ")
        credential = credential.strip()
        if scheme.lower() not in ("bearer", "token") or not credential:
            raise HttpError(
                401,
                "Bad credentials",
                detail="Authorization must be 'Bearer <credential>' or 'token <credential>'",
            )
        return scheme.lower(), credential

    def _require_app_jwt(self, request: _Request) -> None:
        scheme, credential = self._credentials(request)
        if credential.count(".") != 2:
            raise HttpError(
                401,
                "A JSON web token could not be decoded",
                detail="this endpoint needs the App JWT, got another credential "
                "(an installation token?)",
            )
        if scheme != "bearer":
            raise HttpError(
                401, "Bad credentials", detail="the App JWT must be sent as 'Bearer <jwt>'"
            )
        problem = self._jwt_problem(credential)
        if problem is not None:
            raise HttpError(401, problem)

    def _jwt_problem(self, token: str) -> str | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            return f"A JSON web token could not be decoded: {exc}"
        if header.get("alg") != "RS256":
            return f"the App JWT must be signed with RS256, not {header.get('alg')!r}"
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_aud": False,
                },
            )
        except jwt.InvalidSignatureError:
            return "the App JWT's signature does not verify with the App's public key"
        except jwt.PyJWTError as exc:
            return f"A JSON web token could not be decoded: {exc}"
        issuer = claims.get("iss")
        if isinstance(issuer, bool) or str(issuer) != str(self.app_id):
            return f"'Issuer' claim ('iss') must be the App id {self.app_id}, not {issuer!r}"
        issued, expires = claims.get("iat"), claims.get("exp")
        for claim, value in (("iat", issued), ("exp", expires)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"'{claim}' claim must be a number of seconds since the epoch, not {value!r}"
        now = time.time()
        assert isinstance(issued, int | float) and isinstance(expires, int | float)
        if issued > now + CLOCK_SKEW:
            return f"'Issued at' claim ('iat') is {issued - now:.0f} s in the future"
        if expires <= now:
            return f"'Expiration time' claim ('exp') passed {now - expires:.0f} s ago"
        if expires - issued > JWT_MAX_LIFETIME + CLOCK_SKEW:
            return (
                f"'Expiration time' claim ('exp') is {expires - issued:.0f} s after 'iat'; "
                "GitHub allows at most 10 minutes"
            )
        if expires > now + JWT_MAX_LIFETIME + CLOCK_SKEW:
            return "'Expiration time' claim ('exp') is too far in the future"
        return None

    def _require_token(self, request: _Request) -> _Token:
        _, credential = self._credentials(request)
        if credential.count(".") == 2:
            raise HttpError(
                401,
                "Bad credentials",
                detail="an App JWT was sent where an installation token is required",
            )
        with self._lock:
            token = self._tokens.get(credential)
            if token is None:
                raise HttpError(401, "Bad credentials", detail="unknown installation token")
            if time.time() >= token.expires_at:
                raise HttpError(
                    401,
                    "Bad credentials",
                    detail="installation token expired at "
                    + iso_time(datetime.fromtimestamp(token.expires_at, UTC)),
                )
            installation = self._installations.get(token.installation_id)
            if installation is None:
                raise HttpError(401, "Bad credentials", detail="the token's installation is gone")
            if installation.suspended_at is not None:
                raise HttpError(403, "This installation has been suspended")
            return token

    def _repo_access(
        self, request: _Request, params: Mapping[str, str], permission: str, level: str
    ) -> tuple[_Repo, _Token]:
        """The repository in the path, if the installation token may use it with ``permission``.

        ``permission`` may name alternatives separated by ``|`` (e.g. ``issues|pull_requests``).
        """
        token = self._require_token(request)
        full_name = f"{params['owner']}/{params['repo']}"
        with self._lock:
            repo = self._repos.get(full_name.lower())
        if repo is None:
            raise HttpError(404, "Not Found", detail=f"no repository {full_name}")
        if repo.installation_id != token.installation_id or (
            token.repositories is not None and repo.key not in token.repositories
        ):
            raise HttpError(
                404,
                "Not Found",
                detail=f"the installation token (installation {token.installation_id}) "
                f"cannot see {full_name}",
            )
        wanted = _PERMISSION_RANK[level]
        names = permission.split("|")
        if not any(_PERMISSION_RANK.get(token.permissions.get(n, ""), 0) >= wanted for n in names):
            raise HttpError(
                403,
                "Resource not accessible by integration",
                detail=f"needs {' or '.join(names)}: {level}; the token has {token.permissions}",
            )
        return repo, token

    # ------------------------------------------------------------------ JSON builders

    def _bot(self) -> JSON:
        return user_object(f"{self.app_slug}[bot]", user_type="Bot", api_url=self.url)

    def _app_json(self) -> JSON:
        with self._lock:
            count = len(self._installations)
        return {
            "id": self.app_id,
            "slug": self.app_slug,
            "node_id": node_id("Integration", self.app_id),
            "client_id": f"Iv1.{self.app_id:016x}",
            "owner": user_object(self.app_owner, user_type="Organization", api_url=self.url),
            "name": self.app_name,
            "description": "Push-to-deploy (test App)",
            "external_url": "https://slipway.example.com",
            "html_url": f"{GITHUB_WEB}/apps/{self.app_slug}",
            "created_at": self._created_at,
            "updated_at": self._created_at,
            "permissions": dict(DEFAULT_PERMISSIONS),
            "events": list(APP_EVENTS),
            "installations_count": count,
        }

    def _installation_json(self, installation: _Installation) -> JSON:
        return installation_object(
            installation.id,
            installation.account,
            app_id=self.app_id,
            app_slug=self.app_slug,
            permissions=installation.permissions,
            suspended_by=installation.account if installation.suspended_at else None,
            suspended_at=installation.suspended_at,
            created_at=installation.created_at,
            api_url=self.url,
        )

    def _repository_json(
        self, owner: Mapping[str, Any], name: str, repo_id: int, default_branch: str, private: bool
    ) -> JSON:
        full = f"{owner['login']}/{name}"
        api = f"{self.url}/repos/{full}"
        html = f"{GITHUB_WEB}/{full}"
        now = iso_time()
        templates = {
            "forks_url": "/forks",
            "keys_url": "/keys{/key_id}",
            "collaborators_url": "/collaborators{/collaborator}",
            "teams_url": "/teams",
            "hooks_url": "/hooks",
            "issue_events_url": "/issues/events{/number}",
            "events_url": "/events",
            "assignees_url": "/assignees{/user}",
            "branches_url": "/branches{/branch}",
            "tags_url": "/tags",
            "blobs_url": "/git/blobs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "trees_url": "/git/trees{/sha}",
            "statuses_url": "/statuses/{sha}",
            "languages_url": "/languages",
            "stargazers_url": "/stargazers",
            "contributors_url": "/contributors",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "commits_url": "/commits{/sha}",
            "git_commits_url": "/git/commits{/sha}",
            "comments_url": "/comments{/number}",
            "issue_comment_url": "/issues/comments{/number}",
            "contents_url": "/contents/{+path}",
            "compare_url": "/compare/{base}...{head}",
            "merges_url": "/merges",
            "archive_url": "/{archive_format}{/ref}",
            "downloads_url": "/downloads",
            "issues_url": "/issues{/number}",
            "pulls_url": "/pulls{/number}",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "labels_url": "/labels{/name}",
            "releases_url": "/releases{/id}",
            "deployments_url": "/deployments",
        }
        repo: JSON = {
            "id": repo_id,
            "node_id": node_id("Repository", repo_id),
            "name": name,
            "full_name": full,
            "private": private,
            "owner": dict(owner),
            "html_url": html,
            "description": None,
            "fork": False,
            "url": api,
        }
        repo.update({key: api + suffix for key, suffix in templates.items()})
        repo.update(
            {
                "created_at": now,
                "updated_at": now,
                "pushed_at": now,
                "git_url": f"git://github.com/{full}.git",
                "ssh_url": f"git@github.com:{full}.git",
                "clone_url": f"{html}.git",
                "svn_url": html,
                "homepage": None,
                "size": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "language": None,
                "has_issues": True,
                "has_projects": True,
                "has_downloads": True,
                "has_wiki": True,
                "has_pages": False,
                "has_discussions": False,
                "forks_count": 0,
                "mirror_url": None,
                "archived": False,
                "disabled": False,
                "open_issues_count": 0,
                "license": None,
                "allow_forking": True,
                "is_template": False,
                "web_commit_signoff_required": False,
                "topics": [],
                "visibility": "private" if private else "public",
                "forks": 0,
                "open_issues": 0,
                "watchers": 0,
                "default_branch": default_branch,
                "master_branch": default_branch,
                "custom_properties": {},
            }
        )
        return repo

    def _check_run_json(self, run: CheckRun) -> JSON:
        api = f"{self.url}/repos/{run.repository}/check-runs/{run.id}"
        return {
            "id": run.id,
            "head_sha": run.head_sha,
            "node_id": node_id("CheckRun", run.id),
            "external_id": run.external_id or "",
            "url": api,
            "html_url": f"{GITHUB_WEB}/{run.repository}/runs/{run.id}",
            "details_url": run.details_url or f"{GITHUB_WEB}/apps/{self.app_slug}",
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "output": {
                "title": run.output.get("title"),
                "summary": run.output.get("summary"),
                "text": run.output.get("text"),
                "annotations_count": len(run.annotations),
                "annotations_url": f"{api}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": run.check_suite_id},
            "app": self._app_json(),
            "pull_requests": [],
        }

    def _deployment_json(self, deployment: Deployment) -> JSON:
        repo_api = f"{self.url}/repos/{deployment.repository}"
        url = f"{repo_api}/deployments/{deployment.id}"
        return {
            "url": url,
            "id": deployment.id,
            "node_id": node_id("Deployment", deployment.id),
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": copy.deepcopy(deployment.payload),
            "original_environment": deployment.original_environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": self._bot(),
            "created_at": deployment.created_at,
            "updated_at": deployment.updated_at,
            "statuses_url": f"{url}/statuses",
            "repository_url": repo_api,
            "transient_environment": deployment.transient_environment,
            "production_environment": deployment.production_environment,
            "performed_via_github_app": self._app_json(),
        }

    def _deployment_status_json(
        self,
        deployment: Deployment,
        state: str,
        *,
        description: str = "",
        environment: str,
        log_url: str = "",
        environment_url: str = "",
    ) -> JSON:
        status_id = self._next_id("deployment_status")
        repo_api = f"{self.url}/repos/{deployment.repository}"
        deployment_url = f"{repo_api}/deployments/{deployment.id}"
        now = iso_time()
        return {
            "url": f"{deployment_url}/statuses/{status_id}",
            "id": status_id,
            "node_id": node_id("DeploymentStatus", status_id),
            "state": state,
            "creator": self._bot(),
            "description": description,
            "environment": environment,
            "target_url": log_url,
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment_url,
            "repository_url": repo_api,
            "environment_url": environment_url,
            "log_url": log_url,
            "performed_via_github_app": self._app_json(),
        }

    def _paginate(
        self, request: _Request, items: Sequence[JSON]
    ) -> tuple[list[JSON], dict[str, str]]:
        try:
            per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
        except ValueError:
            per_page = 30
        try:
            page = max(int(request.query.get("page", "1")), 1)
        except ValueError:
            page = 1
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = list(items[(page - 1) * per_page : page * per_page])

        def link(number: int) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f"{self.url}{quote(request.path)}?{urlencode(query)}"

        links = []
        if page < last:
            links += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            links += [f'<{link(1)}>; rel="first"', f'<{link(min(page - 1, last))}>; rel="prev"']
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # ------------------------------------------------------------------ app routes

    def _get_app(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_app_jwt(request)
        return _json(200, self._app_json())

    def _list_installations(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_app_jwt(request)
        with self._lock:
            installations = sorted(self._installations.values(), key=lambda i: i.id)
            found = [self._installation_json(i) for i in installations]
        page, headers = self._paginate(request, found)
        return _json(200, page, headers)

    def _installation_for_path(self, params: Mapping[str, str]) -> _Installation:
        installation_id = int(params["installation_id"])
        with self._lock:
            installation = self._installations.get(installation_id)
        if installation is None:
            raise HttpError(404, "Not Found", detail=f"no installation {installation_id}")
        return installation

    def _get_installation(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_app_jwt(request)
        return _json(200, self._installation_json(self._installation_for_path(params)))

    def _get_repository_installation(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_app_jwt(request)
        full_name = f"{params['owner']}/{params['repo']}"
        with self._lock:
            repo = self._repos.get(full_name.lower())
            installation = self._installations.get(repo.installation_id) if repo else None
        if installation is None:
            raise HttpError(404, "Not Found", detail=f"the App is not installed on {full_name}")
        return _json(200, self._installation_json(installation))

    def _create_token(self, request: _Request, params: dict[str, str]) -> _Response:
        self._require_app_jwt(request)
        installation = self._installation_for_path(params)
        if installation.suspended_at is not None:
            raise HttpError(403, "This installation has been suspended")
        body = _Body(request.json_object(), "InstallationToken")
        names = body.string_list("repositories")
        ids = body.array("repository_ids")
        if ids is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            body.fail("repository_ids", "repository_ids must be an array of integers")
            ids = None
        wanted = body.obj("permissions")
        body.check()
        with self._lock:
            installed = [r for r in self._repos.values() if r.installation_id == installation.id]
        selected: list[_Repo] | None = None
        if names is not None or ids is not None:
            by_name = {r.name.lower(): r for r in installed}
            by_id = {int(r.json["id"]): r for r in installed}
            picked: dict[str, _Repo] = {}
            missing: list[str] = []
            for repo_name in names or []:
                if repo_name.lower() in by_name:
                    picked[by_name[repo_name.lower()].key] = by_name[repo_name.lower()]
                else:
                    missing.append(repo_name)
            for repo_id in ids or []:
                if repo_id in by_id:
                    picked[by_id[repo_id].key] = by_id[repo_id]
                else:
                    missing.append(str(repo_id))
            if missing:
                raise HttpError(
                    422,
                    "There is at least one repository that does not exist or is not accessible "
                    "to the parent installation.",
                    detail=f"token requested for repositories not in the installation: {missing}",
                )
            selected = list(picked.values())
        permissions = dict(installation.permissions)
        if wanted is not None:
            too_much = {
                name: level
                for name, level in wanted.items()
                if not isinstance(level, str)
                or level not in _PERMISSION_RANK
                or _PERMISSION_RANK[level]
                > _PERMISSION_RANK.get(installation.permissions.get(name, ""), 0)
            }
            if too_much:
                raise HttpError(
                    422,
                    "The permissions requested are not granted to this installation.",
                    detail=f"token permissions {too_much} exceed the installation's "
                    f"{installation.permissions}",
                )
            permissions = {str(name): str(level) for name, level in wanted.items()}
        token = "ghs_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36))
        expires_at = int(time.time() + self.token_lifetime.total_seconds())
        with self._lock:
            self._tokens[token] = _Token(
                token=token,
                installation_id=installation.id,
                expires_at=expires_at,
                repositories=None if selected is None else frozenset(r.key for r in selected),
                permissions=permissions,
            )
            self._token_requests += 1
        answer: JSON = {
            "token": token,
            "expires_at": iso_time(datetime.fromtimestamp(expires_at, UTC)),
            "permissions": permissions,
            "repository_selection": "all" if selected is None else "selected",
        }
        if selected is not None:
            answer["repositories"] = [copy.deepcopy(r.json) for r in selected]
        return _json(201, answer)

    def _list_installation_repositories(
        self, request: _Request, params: dict[str, str]
    ) -> _Response:
        token = self._require_token(request)
        with self._lock:
            repos = [
                copy.deepcopy(r.json)
                for r in sorted(self._repos.values(), key=lambda r: int(r.json["id"]))
                if r.installation_id == token.installation_id
                and (token.repositories is None or r.key in token.repositories)
            ]
        page, headers = self._paginate(request, repos)
        return _json(
            200,
            {"total_count": len(repos), "repository_selection": "selected", "repositories": page},
            headers,
        )

    def _get_repository(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "metadata", "read")
        answer = copy.deepcopy(repo.json)
        answer.update({"network_count": 0, "subscribers_count": 0})
        return _json(200, answer)

    # ------------------------------------------------------------------ tarballs

    def _tarball(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "contents", "read")
        ref = params.get("ref") or repo.default_branch
        sha = _rev_parse(repo.git_dir, ref)
        if sha is None:
            raise HttpError(404, "Not Found", detail=f"no ref {ref!r} in {repo.full_name}")
        link_token = secrets.token_urlsafe(24)
        with self._lock:
            self._codeload[link_token] = _Codeload(repo.key, sha, time.time() + CODELOAD_LIFETIME)
        location = (
            f"{self.url}/_codeload/{quote(repo.owner)}/{quote(repo.name)}/legacy.tar.gz/{sha}"
            f"?token={link_token}"
        )
        return _Response(302, b"", {"Location": location, "Content-Type": "text/html"})

    def _codeload_archive(self, request: _Request, params: dict[str, str]) -> _Response:
        key = f"{params['owner']}/{params['repo']}".lower()
        with self._lock:
            link = self._codeload.get(request.query.get("token", ""))
            repo = self._repos.get(key)
        if link is None or repo is None or link.repo_key != key or link.sha != params["sha"]:
            raise HttpError(404, "Not Found", detail="unknown or mismatched tarball link token")
        if time.time() >= link.expires_at:
            raise HttpError(404, "Not Found", detail="tarball link expired (after 5 minutes)")
        prefix = f"{repo.owner}-{repo.name}-{link.sha[:7]}"
        proc = _git(repo.git_dir, "archive", "--format=tar.gz", f"--prefix={prefix}/", link.sha)
        if proc.returncode != 0:
            raise HttpError(
                500, "Server Error", detail=f"git archive failed: {proc.stderr.decode()}"
            )
        return _Response(
            200,
            proc.stdout,
            {
                "Content-Type": "application/x-gzip",
                "Content-Disposition": f"attachment; filename={prefix}.tar.gz",
            },
        )

    # ------------------------------------------------------------------ check runs

    def _check_run_fields(self, body: _Body, run: CheckRun | None) -> JSON:
        """Validate the fields create and update share; returns the changes to apply."""
        changes: JSON = {}
        if "name" in body.data or run is None:
            name = body.string("name", required=run is None, non_empty=True)
            if name is not None:
                changes["name"] = name
        details_url = body.url("details_url")
        if details_url is not None:
            changes["details_url"] = details_url
        external_id = body.string("external_id")
        if external_id is not None:
            changes["external_id"] = external_id
        status = body.string("status", choices=CHECK_RUN_STATUSES)
        conclusion = body.string("conclusion", choices=CHECK_RUN_CONCLUSIONS)
        if conclusion == "stale":
            body.fail("conclusion", "only GitHub can set a check run's conclusion to stale")
            conclusion = None
        started_at = body.timestamp("started_at")
        completed_at = body.timestamp("completed_at")
        if started_at is not None:
            changes["started_at"] = started_at
        if conclusion is not None:
            status = "completed"  # GitHub completes a run that is given a conclusion
            changes["conclusion"] = conclusion
        if status is not None:
            changes["status"] = status
        completing = status == "completed" or "completed_at" in body.data
        known_conclusion = run.conclusion if run is not None else None
        if completing and "conclusion" not in body.data and known_conclusion is None:
            body.fail(
                "conclusion",
                "conclusion is required when status is completed or completed_at is given",
                "missing_field",
            )
        if completed_at is not None:
            changes["completed_at"] = completed_at
        if "output" in body.data:
            output = body.obj("output")
            if output is not None:
                changes["output"] = self._check_run_output(body, output)
        actions = body.array("actions")
        if actions is not None:
            changes["actions"] = self._check_run_actions(body, actions)
        return changes

    def _check_run_output(self, body: _Body, output: JSON) -> JSON:
        title = body.string("title", required=True, data=output, label="output.title")
        summary = body.string(
            "summary",
            required=True,
            max_length=MAX_OUTPUT_TEXT,
            data=output,
            label="output.summary",
        )
        text = body.string(
            "text", nullable=True, max_length=MAX_OUTPUT_TEXT, data=output, label="output.text"
        )
        annotations = body.array("annotations", data=output) or []
        if len(annotations) > MAX_ANNOTATIONS:
            body.fail("output.annotations", f"at most {MAX_ANNOTATIONS} annotations per request")
        for index, annotation in enumerate(annotations):
            label = f"output.annotations[{index}]"
            if not isinstance(annotation, dict):
                body.fail(label, f"{label} must be an object")
                continue
            body.string("path", required=True, data=annotation, label=f"{label}.path")
            body.integer("start_line", data=annotation, label=f"{label}.start_line")
            body.integer("end_line", data=annotation, label=f"{label}.end_line")
            body.string(
                "annotation_level",
                required=True,
                choices=ANNOTATION_LEVELS,
                data=annotation,
                label=f"{label}.annotation_level",
            )
            body.string(
                "message",
                required=True,
                max_length=64 * 1024,
                data=annotation,
                label=f"{label}.message",
            )
        for index, image in enumerate(body.array("images", data=output) or []):
            label = f"output.images[{index}]"
            if not isinstance(image, dict):
                body.fail(label, f"{label} must be an object")
                continue
            body.string("alt", required=True, data=image, label=f"{label}.alt")
            url = body.string("image_url", required=True, data=image, label=f"{label}.image_url")
            if url is not None and not _is_http_url(url):
                body.fail(f"{label}.image_url", f"{label}.image_url must be an http(s) URL")
        return {"title": title, "summary": summary, "text": text, "annotations": annotations}

    def _check_run_actions(self, body: _Body, actions: list[Any]) -> list[JSON]:
        if len(actions) > 3:
            body.fail("actions", "a check run can have at most 3 actions")
        for index, action in enumerate(actions):
            label = f"actions[{index}]"
            if not isinstance(action, dict):
                body.fail(label, f"{label} must be an object")
                continue
            body.string("label", required=True, max_length=20, data=action, label=f"{label}.label")
            body.string(
                "description",
                required=True,
                max_length=40,
                data=action,
                label=f"{label}.description",
            )
            body.string(
                "identifier",
                required=True,
                max_length=20,
                data=action,
                label=f"{label}.identifier",
            )
        return [a for a in actions if isinstance(a, dict)]

    @staticmethod
    def _apply_check_run_changes(run: CheckRun, changes: JSON) -> None:
        now = iso_time()
        for name in ("name", "details_url", "external_id", "started_at"):
            if name in changes:
                setattr(run, name, changes[name])
        if "output" in changes:
            output = changes["output"]
            run.output = {key: output[key] for key in ("title", "summary", "text")}
            run.annotations.extend(copy.deepcopy(output["annotations"]))
        if "actions" in changes:
            run.actions = copy.deepcopy(changes["actions"])
        if "status" in changes:
            run.status = changes["status"]
            if run.status != "completed":
                run.conclusion = None
                run.completed_at = None
        if "conclusion" in changes:
            run.conclusion = changes["conclusion"]
        if run.status == "completed":
            run.completed_at = changes.get("completed_at") or run.completed_at or now
        if run.started_at is None:
            run.started_at = now
        run.history.append(run.snapshot())

    def _create_check_run(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "checks", "write")
        body = _Body(request.json_object(), "CheckRun")
        head_sha = body.string("head_sha", required=True, non_empty=True)
        changes = self._check_run_fields(body, None)
        if head_sha:
            if not _SHA.fullmatch(head_sha.lower()):
                body.fail(
                    "head_sha", f"head_sha must be a 40-character commit SHA, not {head_sha!r}"
                )
            elif _rev_parse(repo.git_dir, head_sha.lower()) != head_sha.lower():
                body.fail("head_sha", f"No commit found for SHA: {head_sha}")
        body.check()
        assert head_sha is not None
        sha = head_sha.lower()
        with self._lock:
            suite = self._check_suites.get((repo.key, sha))
            if suite is None:
                suite = self._check_suites[(repo.key, sha)] = self._next_id("check_suite")
            run = CheckRun(
                id=self._next_id("check_run"),
                repository=repo.full_name,
                name=str(changes["name"]),
                head_sha=sha,
                status="queued",
                conclusion=None,
                started_at=None,
                completed_at=None,
                check_suite_id=suite,
            )
            self._apply_check_run_changes(run, changes)
            self._check_runs[run.id] = run
            return _json(201, self._check_run_json(run))

    def _find_check_run(self, repo: _Repo, params: Mapping[str, str]) -> CheckRun:
        run = self._check_runs.get(int(params["check_run_id"]))
        if run is None or run.repository.lower() != repo.key:
            raise HttpError(
                404,
                "Not Found",
                detail=f"no check run {params['check_run_id']} in {repo.full_name}",
            )
        return run

    def _get_check_run(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "checks", "read")
        with self._lock:
            return _json(200, self._check_run_json(self._find_check_run(repo, params)))

    def _update_check_run(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "checks", "write")
        with self._lock:
            run = self._find_check_run(repo, params)
            body = _Body(request.json_object(), "CheckRun")
            changes = self._check_run_fields(body, run)
            body.check()
            self._apply_check_run_changes(run, changes)
            return _json(200, self._check_run_json(run))

    def _list_check_runs(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "checks", "read")
        sha = _rev_parse(repo.git_dir, params["ref"])
        if sha is None:
            raise HttpError(422, f"No commit found for SHA: {params['ref']}")
        query = request.query
        filter_ = query.get("filter", "latest")
        if filter_ not in ("latest", "all"):
            raise HttpError(422, f"filter must be latest or all, not {filter_!r}")
        status = query.get("status")
        if status is not None and status not in ("queued", "in_progress", "completed"):
            raise HttpError(422, f"status must be queued, in_progress or completed, not {status!r}")
        with self._lock:
            runs = [
                run
                for run in self._check_runs.values()
                if run.repository.lower() == repo.key and run.head_sha == sha
            ]
            if "check_name" in query:
                runs = [run for run in runs if run.name == query["check_name"]]
            if status is not None:
                runs = [run for run in runs if run.status == status]
            if "app_id" in query and query["app_id"] != str(self.app_id):
                runs = []
            if filter_ == "latest":
                newest: dict[str, CheckRun] = {}
                for run in runs:
                    if run.name not in newest or run.id > newest[run.name].id:
                        newest[run.name] = run
                runs = list(newest.values())
            runs.sort(key=lambda run: run.id, reverse=True)
            found = [self._check_run_json(run) for run in runs]
        page, headers = self._paginate(request, found)
        return _json(200, {"total_count": len(found), "check_runs": page}, headers)

    # ------------------------------------------------------------------ deployments

    def _failing_contexts(self, repo: _Repo, sha: str, required: list[str] | None) -> list[JSON]:
        """Commit contexts (check runs) that block a deployment of ``sha``, GitHub-style."""
        latest: dict[str, CheckRun] = {}
        for run in self._check_runs.values():
            if (
                run.repository.lower() == repo.key
                and run.head_sha == sha
                and (run.name not in latest or run.id > latest[run.name].id)
            ):
                latest[run.name] = run
        names = sorted(latest) if required is None else required
        failing: list[JSON] = []
        for name in names:
            found = latest.get(name)
            if found is None:
                failing.append({"context": name, "state": "missing"})
            elif found.status != "completed":
                failing.append({"context": name, "state": "pending"})
            elif found.conclusion not in _SUCCESSFUL_CONCLUSIONS:
                failing.append({"context": name, "state": "failure"})
        return failing

    def _create_deployment(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "deployments", "write")
        body = _Body(request.json_object(), "Deployment")
        ref = body.string("ref", required=True, non_empty=True)
        task = body.string("task") or "deploy"
        auto_merge = body.boolean("auto_merge")
        required_contexts = body.string_list("required_contexts")
        payload: JSON | str = {}
        if "payload" in body.data:
            raw = body.data["payload"]
            if isinstance(raw, dict | str):
                payload = raw
            else:
                body.fail(
                    "payload", f"payload must be an object or a string, not {_json_type(raw)}"
                )
        environment = body.string("environment", non_empty=True)
        environment = "production" if environment is None else environment
        description = body.string("description", nullable=True, max_length=MAX_DESCRIPTION)
        transient = body.boolean("transient_environment")
        production = body.boolean("production_environment")
        body.check()
        assert ref is not None
        sha = _rev_parse(repo.git_dir, ref)
        if sha is None:
            raise HttpError(422, f"No ref found for: {ref}")
        if auto_merge is None or auto_merge:
            self._record(
                f"POST {request.path}: auto_merge should be false for a deploy of an exact commit "
                f"(it is {'omitted (default true)' if auto_merge is None else 'true'}; GitHub "
                "answers 409 when the ref is behind the default branch)"
            )
        with self._lock:
            failing = self._failing_contexts(repo, sha, required_contexts)
            if failing:
                raise HttpError(
                    409,
                    f"Conflict: Commit status checks failed for {ref}.",
                    detail=(
                        "required_contexts "
                        + (
                            "omitted (GitHub then requires every context on the commit)"
                            if required_contexts is None
                            else f"= {required_contexts}"
                        )
                        + f" but these are not successful: {failing}; pass required_contexts=[] "
                        "to deploy regardless of checks"
                    ),
                    errors=[
                        {
                            "resource": "Deployment",
                            "field": "required_contexts",
                            "code": "invalid",
                            "contexts": failing,
                        }
                    ],
                )
            now = iso_time()
            deployment = Deployment(
                id=self._next_id("deployment"),
                repository=repo.full_name,
                sha=sha,
                ref=ref,
                task=task,
                payload=payload,
                environment=environment,
                original_environment=environment,
                description=description or "",
                transient_environment=bool(transient),
                production_environment=(
                    environment == "production" if production is None else production
                ),
                auto_merge=True if auto_merge is None else auto_merge,
                required_contexts=required_contexts,
                created_at=now,
                updated_at=now,
            )
            self._deployments[deployment.id] = deployment
            return _json(201, self._deployment_json(deployment))

    def _list_deployments(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "deployments", "read")
        query = request.query
        with self._lock:
            found = [
                self._deployment_json(dep)
                for dep in sorted(self._deployments.values(), key=lambda d: d.id, reverse=True)
                if dep.repository.lower() == repo.key
                and not dep.deleted
                and all(
                    query[name] == getattr(dep, name)
                    for name in ("sha", "ref", "task", "environment")
                    if name in query
                )
            ]
        page, headers = self._paginate(request, found)
        return _json(200, page, headers)

    def _find_deployment(self, repo: _Repo, params: Mapping[str, str]) -> Deployment:
        deployment = self._deployments.get(int(params["deployment_id"]))
        if deployment is None or deployment.deleted or deployment.repository.lower() != repo.key:
            raise HttpError(
                404,
                "Not Found",
                detail=f"no deployment {params['deployment_id']} in {repo.full_name}",
            )
        return deployment

    def _delete_deployment(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "deployments", "write")
        with self._lock:
            deployment = self._find_deployment(repo, params)
            others = [
                d
                for d in self._deployments.values()
                if d.repository.lower() == repo.key
                and not d.deleted
                and d.id != deployment.id
                and d.environment == deployment.environment
            ]
            if deployment.state != "inactive" and others:
                raise HttpError(
                    422,
                    "We cannot delete an active deployment unless it is the only deployment in a "
                    "given environment.",
                )
            deployment.deleted = True
        return _Response(204)

    def _create_deployment_status(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "deployments", "write")
        body = _Body(request.json_object(), "DeploymentStatus")
        state = body.string("state", required=True, choices=DEPLOYMENT_STATES)
        target_url = body.url("target_url", allow_empty=True)
        log_url = body.url("log_url", allow_empty=True)
        environment_url = body.url("environment_url", allow_empty=True)
        description = body.string("description", max_length=MAX_DESCRIPTION)
        environment = body.string("environment", non_empty=True)
        auto_inactive = body.boolean("auto_inactive")
        body.check()
        assert state is not None
        with self._lock:
            deployment = self._find_deployment(repo, params)
            if environment is not None:
                deployment.environment = environment
            status = self._deployment_status_json(
                deployment,
                state,
                description=description or "",
                environment=deployment.environment,
                log_url=log_url or target_url or "",
                environment_url=environment_url or "",
            )
            deployment.statuses.append(status)
            deployment.updated_at = status["created_at"]
            if state == "success" and auto_inactive is not False:
                for other in self._deployments.values():
                    if (
                        other.id < deployment.id
                        and other.repository.lower() == repo.key
                        and not other.deleted
                        and other.environment == deployment.environment
                        and not other.transient_environment
                        and not other.production_environment
                        and other.state == "success"
                    ):
                        other.statuses.append(
                            self._deployment_status_json(
                                other, "inactive", environment=other.environment
                            )
                        )
                        other.updated_at = status["created_at"]
            return _json(201, copy.deepcopy(status))

    def _list_deployment_statuses(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "deployments", "read")
        with self._lock:
            found = copy.deepcopy(list(reversed(self._find_deployment(repo, params).statuses)))
        page, headers = self._paginate(request, found)
        return _json(200, page, headers)

    # ------------------------------------------------------------------ issue comments

    def _comment_list(self, repo_key: str, issue_number: int) -> list[_Comment]:
        return sorted(
            (
                c
                for c in self._comments.values()
                if c.repo_key == repo_key and c.issue_number == issue_number and not c.deleted
            ),
            key=lambda c: int(c.json["id"]),
        )

    def _comment_body(self, request: _Request) -> str:
        body = _Body(request.json_object(), "IssueComment")
        text = body.string("body", required=True, non_empty=True, max_length=MAX_COMMENT_BODY)
        body.check()
        assert text is not None
        return text

    def _create_comment(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "write")
        issue_number = int(params["issue_number"])
        if issue_number < 1:
            raise HttpError(404, "Not Found", detail=f"no issue {issue_number}")
        text = self._comment_body(request)
        with self._lock:
            comment_id = self._next_id("comment")
            now = iso_time()
            api = f"{self.url}/repos/{repo.full_name}"
            comment = {
                "id": comment_id,
                "node_id": node_id("IssueComment", comment_id),
                "url": f"{api}/issues/comments/{comment_id}",
                "html_url": f"{GITHUB_WEB}/{repo.full_name}/issues/{issue_number}"
                f"#issuecomment-{comment_id}",
                "body": text,
                "user": self._bot(),
                "created_at": now,
                "updated_at": now,
                "issue_url": f"{api}/issues/{issue_number}",
                "author_association": "NONE",
                "performed_via_github_app": self._app_json(),
                "reactions": {
                    "url": f"{api}/issues/comments/{comment_id}/reactions",
                    "total_count": 0,
                    **{k: 0 for k in ("+1", "-1", "laugh", "hooray", "confused", "heart")},
                    "rocket": 0,
                    "eyes": 0,
                },
            }
            self._comments[comment_id] = _Comment(repo.key, issue_number, comment)
            return _json(201, copy.deepcopy(comment))

    def _list_comments(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "read")
        with self._lock:
            found = [
                copy.deepcopy(c.json)
                for c in self._comment_list(repo.key, int(params["issue_number"]))
            ]
        page, headers = self._paginate(request, found)
        return _json(200, page, headers)

    def _find_comment(self, repo: _Repo, params: Mapping[str, str]) -> _Comment:
        comment = self._comments.get(int(params["comment_id"]))
        if comment is None or comment.deleted or comment.repo_key != repo.key:
            raise HttpError(
                404, "Not Found", detail=f"no comment {params['comment_id']} in {repo.full_name}"
            )
        return comment

    def _update_comment(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "write")
        text = self._comment_body(request)
        with self._lock:
            comment = self._find_comment(repo, params)
            comment.json["body"] = text
            comment.json["updated_at"] = iso_time()
            return _json(200, copy.deepcopy(comment.json))

    def _delete_comment(self, request: _Request, params: dict[str, str]) -> _Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "write")
        with self._lock:
            self._find_comment(repo, params).deleted = True
        return _Response(204)
