"""GitHub App authentication: an App JWT buys installation tokens, cached until near expiry.

An installation token lives one hour; asking for one per API call would cost a round trip each
time and run into GitHub's rate limits, so tokens are reused until REFRESH_MARGIN before expiry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.exception import GitHubException, RateLimitExceeded, RequestFailed
from githubkit.retry import RetryOption

from app.kernel.errors import GitHubError
from app.kernel.timestamps import utcnow

REFRESH_MARGIN = timedelta(minutes=5)
"""Renew a token this long before GitHub says it expires: a build can outlast a stale token."""

USER_AGENT = "Slipway"
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_RETRIES = 2
MAX_RETRY_WAIT = timedelta(seconds=2)
"""A worker thread never sleeps longer than this for GitHub: a rate limit resetting in an hour
fails the call now (its report is sent again by a later one) instead of stalling the worker."""


def bounded_retry(exc: GitHubException, retry_count: int) -> RetryOption:
    """githubkit's retry decision, with short waits only (its default waits out rate limits)."""
    if retry_count >= MAX_RETRIES:
        return RetryOption(False)
    if isinstance(exc, RateLimitExceeded):
        wait = exc.retry_after
        return RetryOption(wait <= MAX_RETRY_WAIT, wait)
    if isinstance(exc, RequestFailed) and exc.response.status_code >= 500:
        return RetryOption(True, timedelta(seconds=0.5 * (retry_count + 1)))
    return RetryOption(False)


class SharedTransport(httpx.BaseTransport):
    """A connection pool that outlives the short-lived clients githubkit makes per request.

    githubkit closes its client after each call, and a client closes its transport; this one
    ignores that close, so connections (and TLS sessions) are reused across calls.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Kept open on purpose; the pool lives as long as the process."""


class InstallationClients(Protocol):
    """What the REST calls need of the App: a client per installation, and a way to drop one
    whose token GitHub refused (`GitHubApp`, or `LazyGitHubApp` before the App exists)."""

    def client(self, installation_id: int) -> GitHub[Any]: ...

    def forget_installation(self, installation_id: int) -> None: ...


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: datetime


class GitHubApp:
    """The App itself: signs JWTs and hands out per-installation tokens from a cache."""

    def __init__(
        self,
        app_id: int,
        private_key_pem: str,
        api_url: str,
        *,
        transport: httpx.BaseTransport,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`transport` carries every request to GitHub (bootstrap's real connection pool; the
        unit tier's hands them to the fake GitHub in-process)."""
        self.api_url = api_url.rstrip("/")
        # One transport for every client: its connection pool (and TLS context) is reused, where
        # a client per call would pay a new connection and handshake each time.
        self._transport = SharedTransport(transport)
        self._app_client = GitHub(
            AppAuthStrategy(str(app_id), private_key_pem),
            base_url=self.api_url + "/",
            user_agent=USER_AGENT,
            timeout=REQUEST_TIMEOUT_SECONDS,
            transport=self._transport,
            http_cache=False,
            auto_retry=bounded_retry,
        )
        self._clients: dict[int, tuple[str, GitHub]] = {}  # type: ignore[type-arg]
        self._clock = clock
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()

    def installation_token(self, installation_id: int) -> str:
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and cached.expires_at - REFRESH_MARGIN > self._clock():
                return cached.token
            fresh = self._request_token(installation_id)
            self._tokens[installation_id] = fresh
            return fresh.token

    def forget_installation(self, installation_id: int) -> None:
        """Drop a cached token, e.g. after the installation was deleted or suspended."""
        with self._lock:
            self._tokens.pop(installation_id, None)
            self._clients.pop(installation_id, None)

    def client(self, installation_id: int) -> GitHub:  # type: ignore[type-arg]
        """A REST client acting as one installation, following redirects (tarballs)."""
        token = self.installation_token(installation_id)
        with self._lock:
            cached = self._clients.get(installation_id)
            if cached is not None and cached[0] == token:
                return cached[1]
            client = GitHub(
                token,
                base_url=self.api_url + "/",
                user_agent=USER_AGENT,
                timeout=REQUEST_TIMEOUT_SECONDS,
                follow_redirects=True,
                transport=self._transport,
                http_cache=False,
                auto_retry=bounded_retry,
            )
            self._clients[installation_id] = (token, client)
            return client

    def _request_token(self, installation_id: int) -> InstallationToken:
        try:
            response = self._app_client.rest.apps.create_installation_access_token(installation_id)
        except RequestFailed as exc:
            status = exc.response.status_code
            raise GitHubError(
                f"GitHub refused an installation token for installation {installation_id} "
                f"(HTTP {status}): check SLIPWAY_GITHUB_APP_ID and the private key, and that the "
                "App is still installed"
            ) from exc
        except GitHubException as exc:
            raise GitHubError(f"cannot reach GitHub at {self.api_url}: {exc!r}") from exc
        body = response.json()
        expires_at = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
        return InstallationToken(token=str(body["token"]), expires_at=expires_at)
