"""What every area of the fake GitHub shares: configuration, lifecycle, the stores of
installations, repositories and tokens, the record of what was seen, and request dispatch.

The areas (``apps.py``, ``repos.py``, ``pulls.py``, ``checks.py``, ``deployments.py``,
``comments.py``) are mixins on :class:`FakeCore`; ``server.py`` combines them into
:class:`~tests.support.fake_github.server.FakeGitHub`.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote, unquote, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.keys import new_private_key_pem

from .http import DOCS, JSON, HttpError, Request, Response, Route, RouteSpec, Server, json_response
from .payloads import (
    APP_EVENTS,
    DEFAULT_APP_ID,
    DEFAULT_APP_SLUG,
    GITHUB_WEB,
    iso_time,
    node_id,
    user_object,
)

SUPPORTED_API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
DEFAULT_PERMISSIONS: Mapping[str, str] = {
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}


@dataclass
class Installation:
    id: int
    account: JSON
    permissions: dict[str, str]
    created_at: str
    suspended_at: str | None = None


@dataclass
class Repo:
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

    @property
    def private(self) -> bool:
        return bool(self.json["private"])


@dataclass
class Token:
    token: str
    installation_id: int
    expires_at: float
    repositories: frozenset[str] | None
    permissions: dict[str, str]


@dataclass
class _Outage:
    method: str
    pattern: re.Pattern[str]
    status: int
    left: int
    rate_limited: bool

    def response(self) -> Response:
        if self.rate_limited:
            reset = int(time.time()) + 3600
            body = {
                "message": "API rate limit exceeded for installation.",
                "documentation_url": DOCS,
                "status": "403",
            }
            answer = json_response(403, body)
            answer.headers.update(
                {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(reset),
                    "retry-after": "3600",
                }
            )
            return answer
        return json_response(
            self.status,
            {
                "message": "Server Error" if self.status >= 500 else "Error",
                "status": str(self.status),
            },
        )


class FakeCore:
    """Configuration, lifecycle, shared stores and dispatch; see ``FakeGitHub`` for the whole."""

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
        latency_seconds: float = 0.0,
    ) -> None:
        self.app_id = app_id
        self.app_slug = app_slug
        self.app_name = app_name
        self.app_owner = app_owner
        self.token_lifetime = token_lifetime
        self.latency_seconds = latency_seconds
        self.unreachable = False
        """True: every request goes unanswered (the connection drops), as in an outage."""
        self.app_permissions: dict[str, str] = dict(DEFAULT_PERMISSIONS)
        self.app_events: list[str] = list(APP_EVENTS)
        self.hook_url = "https://slipway.example.com/webhooks/github"
        """The App's settings as GET /app and /app/hook/config show them (a test changes them
        as the App's owner would on its GitHub page)."""
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
        self._outages: list[_Outage] = []
        self._token_requests = 0
        self._installations: dict[int, Installation] = {}
        self._repos: dict[str, Repo] = {}
        self._tokens: dict[str, Token] = {}
        self._ids: dict[str, int] = {
            "repository": 700_000_000,
            "check_run": 10_000_000_000,
            "check_suite": 20_000_000_000,
            "deployment": 1_000_000_000,
            "deployment_status": 3_000_000_000,
            "comment": 2_000_000_000,
            "pull_request": 1_500_000_000,
            "issue": 2_500_000_000,
        }
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        self._server = Server((host, 0), self)
        self._thread: threading.Thread | None = None
        self._init_areas()

    def _init_areas(self) -> None:
        """Each area's stores and routes; the FakeGitHub that combines the areas sets them."""

    def _set_routes(self, routes: Sequence[RouteSpec]) -> None:
        """The routing table: the first route whose method and pattern match serves a request."""
        self._routes = [(method, re.compile(pattern), route) for method, pattern, route in routes]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
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

    def __enter__(self) -> Self:
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

    @property
    def latency_seconds(self) -> float:
        """How long every API answer is held back before it is sent (0: not at all).

        Each request waits in its own handler thread, so concurrent requests wait concurrently.
        Tarball redirects wait; the codeload download they point to does not. Settable at any
        time; requests already being answered keep the delay they started with.
        """
        return self._latency_seconds

    @latency_seconds.setter
    def latency_seconds(self, seconds: float) -> None:
        value = float(seconds)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"latency_seconds must be a finite number >= 0, not {seconds!r}")
        self._latency_seconds = value

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

    # ------------------------------------------------------------------ internals

    def _record(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def _next_id(self, kind: str) -> int:
        with self._lock:
            self._ids[kind] += 1
            return self._ids[kind]

    def _installation(self, installation_id: int) -> Installation:
        installation = self._installations.get(installation_id)
        if installation is None:
            raise KeyError(f"no installation {installation_id}")
        return installation

    def _repo(self, full_name: str) -> Repo:
        """A repository by name, for the test helpers (KeyError when there is none)."""
        with self._lock:
            repo = self._repos.get(full_name.lower())
        if repo is None:
            raise KeyError(f"no repository {full_name}")
        return repo

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int,
        times: int = 1,
        rate_limited: bool = False,
    ) -> None:
        """Answer the next `times` matching requests with `status`, as GitHub does in an outage.

        `rate_limited`: a primary rate limit (403, `x-ratelimit-remaining: 0`, reset an hour
        from now), which a client must not wait out on a worker thread.
        """
        with self._lock:
            self._outages.append(
                _Outage(method, re.compile(path_pattern), status, times, rate_limited)
            )

    def _outage_for(self, request: Request) -> Response | None:
        with self._lock:
            for outage in self._outages:
                matches = outage.method == request.method and outage.pattern.search(request.path)
                if outage.left and matches:
                    outage.left -= 1
                    return outage.response()
        return None

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self._requests.append((request.method, request.path))
        injected = self._outage_for(request)
        if injected is not None:
            return injected
        try:
            self._check_common(request)
            for method, pattern, route in self._routes:
                match = pattern.fullmatch(request.raw_path)
                if match and method == request.method:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return route(request, params)
            raise HttpError(404, "Not Found", detail="no such endpoint in the fake GitHub")
        except HttpError as error:
            if error.record:
                self._record(f"{request.method} {request.path}: {error.status} {error.detail}")
            return error.response()

    def _check_common(self, request: Request) -> None:
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
        form = (request.header("Content-Type") or "").startswith(
            "application/x-www-form-urlencoded"
        )
        if request.body.strip() and not form:  # forms: github.com's web pages, not the API
            try:
                request.parsed = json.loads(request.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HttpError(
                    400, "Problems parsing JSON", detail=f"request body is not JSON: {exc}"
                ) from exc

    # ------------------------------------------------------------------ shared JSON

    def _bot(self) -> JSON:
        return user_object(f"{self.app_slug}[bot]", user_type="Bot", api_url=self.url)

    def _user(self, login: str, user_type: str = "User") -> JSON:
        return user_object(login, user_type=user_type, api_url=self.url)

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
            "permissions": dict(self.app_permissions),
            "events": list(self.app_events),
            "installations_count": count,
        }

    def _paginate(
        self, request: Request, items: Sequence[JSON]
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
