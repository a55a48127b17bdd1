"""Who is looking at the dashboard, and which deployments they may see and change.

A browser session is a GitHub sign-in or an API token (app/access/browser_sessions.py). A
GitHub user sees the deployments of repositories GitHub says they can read (asked with their
own token, kept `ACCESS_TTL` so a page does not wait on GitHub each time) and acts where they
may push; an API token sees everything and acts unless it is read-only. A signed link from a
check run opens its one revision page, read-only, without any session.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from app.access.browser_sessions import BrowserSession, BrowserSessions
from app.access.tokens import Caller, authenticate
from app.github.oauth import Access, GitHubOAuth, OAuthClient
from app.kernel.db import SessionFactory
from app.kernel.errors import GitHubError, PermissionDenied
from app.kernel.ports import Clock

log = logging.getLogger(__name__)

ACCESS_TTL = timedelta(seconds=60)
"""How long GitHub's answer about a person's repositories is reused: a removed collaborator
loses the dashboard within a minute, and a page costs no GitHub round trip."""
ACCESS_CACHE_SIZE = 1_000


@dataclass(frozen=True)
class Viewer:
    """A signed-in person (or token): what they may read and change."""

    name: str
    caller: Caller
    """Who the domain operations record as having asked (`requested_by`)."""
    csrf: str
    everything: bool = False
    """An API token: every deployment."""
    access: Mapping[int, Access] = field(default_factory=dict)
    """A GitHub user: per repository id, their permission."""

    def may_read(self, repository_id: int) -> bool:
        return self.everything or self.access.get(repository_id, Access.none) >= Access.read

    def may_write(self, repository_id: int) -> bool:
        if self.everything:
            return not self.caller.read_only
        return self.access.get(repository_id, Access.none) >= Access.write

    def role(self, repository_id: int) -> str:
        """Their permission on the repository in GitHub's words ("read", "write", "admin")."""
        if self.everything:
            return "read" if self.caller.read_only else "write"
        return self.access.get(repository_id, Access.none).name

    def require_read(self, repository_id: int) -> None:
        if not self.may_read(repository_id):
            raise PermissionDenied("you have no access to this deployment's repository")

    def require_write(self, repository_id: int) -> None:
        self.require_read(repository_id)
        if not self.may_write(repository_id):
            raise PermissionDenied(
                f"{self.name} may read this deployment but not change it (it takes write "
                "permission on its repository, or a token that is not read-only)"
            )


class AccessCache:
    """GitHub's answer per user token, for `ACCESS_TTL`; bounded, oldest entries dropped."""

    def __init__(self, ttl: timedelta = ACCESS_TTL, now: Callable[[], float] = time.monotonic):
        self._ttl = ttl.total_seconds()
        self._now = now
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict[int, Access]]] = {}

    def get(self, token: str, ask: Callable[[], dict[int, Access]]) -> dict[int, Access]:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] > self._now():
                return found[1]
        fresh = ask()
        with self._lock:
            self._entries[key] = (self._now() + self._ttl, fresh)
            while len(self._entries) > ACCESS_CACHE_SIZE:
                del self._entries[next(iter(self._entries))]
        return fresh

    def forget(self, token: str) -> None:
        with self._lock:
            self._entries.pop(hashlib.sha256(token.encode()).hexdigest(), None)


class Doorman:
    """Turns a session cookie into a Viewer (or None: not signed in, or no longer allowed)."""

    def __init__(
        self,
        *,
        browser_sessions: BrowserSessions,
        sessions: SessionFactory,
        github: GitHubOAuth,
        oauth_client: Callable[[], OAuthClient | None],
        clock: Clock,
        cache: AccessCache | None = None,
    ) -> None:
        self.browser_sessions = browser_sessions
        self.github = github
        self.oauth_client = oauth_client
        self._sessions = sessions
        self._clock = clock
        self._cache = cache or AccessCache()

    def viewer(self, cookie: str | None) -> Viewer | None:
        """Blocking (database, GitHub): call it in a thread."""
        found = self.browser_sessions.open(cookie)
        if found is None:
            return None
        if found.api_token:
            with self._sessions() as session:
                caller = authenticate(session, found.api_token, self._clock())
            if caller is None:
                return None
            return Viewer(
                name=f"token {caller.name}", caller=caller, csrf=found.csrf, everything=True
            )
        if found.github_login and found.github_token:
            token = found.github_token
            try:
                access = self._cache.get(token, lambda: self.github.repository_access(token))
            except GitHubError as exc:
                log.warning(
                    "dashboard: GitHub did not say what a user may see",
                    extra={"login": found.github_login, "error": str(exc)},
                )
                return None
            return Viewer(
                name=found.github_login,
                caller=Caller(name=found.github_login, read_only=False),
                csrf=found.csrf,
                access=access,
            )
        return None

    def sign_in_with_token(self, api_token: str) -> BrowserSession | None:
        with self._sessions() as session:
            caller = authenticate(session, api_token.strip(), self._clock())
        return None if caller is None else BrowserSession(api_token=api_token.strip())

    def sign_in_with_github(
        self, client: OAuthClient, code: str, redirect_uri: str
    ) -> BrowserSession:
        token = self.github.exchange(client, code, redirect_uri)
        login = self.github.login(token)
        self._cache.forget(token)
        log.info("dashboard: signed in with GitHub", extra={"login": login})
        return BrowserSession(github_login=login, github_token=token)
