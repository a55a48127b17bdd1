"""A signed-in browser's session: one encrypted, expiring cookie, no table.

The cookie holds who signed in (a GitHub login and their user token, or an API token) and the
session's CSRF token, encrypted and authenticated with a key derived from SECRET_KEY (Fernet):
a person cannot read their GitHub token out of it, nor forge or alter one, and a copied cookie
stops working after `lifetime`. Signing out deletes the cookie; revoking the API token (or
the GitHub authorisation) ends the session at its next request.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken

from app.kernel.ports import Clock

COOKIE = "slipway_session"
STATE_COOKIE = "slipway_oauth_state"
"""The OAuth `state` of a sign-in under way: the callback must bring the same one back."""
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class BrowserSession:
    """`github_login` + `github_token` for a GitHub sign-in; `api_token` for a token one."""

    github_login: str | None = None
    github_token: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)


class BrowserSessions:
    def __init__(self, key: bytes, lifetime: timedelta, clock: Clock) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(key[:32]))
        self._lifetime = lifetime
        self._clock = clock

    @property
    def lifetime(self) -> timedelta:
        return self._lifetime

    def seal(self, session: BrowserSession) -> str:
        data = json.dumps(asdict(session)).encode()
        return self._fernet.encrypt_at_time(data, int(self._clock().timestamp())).decode()

    def open(self, cookie: str | None) -> BrowserSession | None:
        """The session, or None for a missing, altered, foreign or expired cookie."""
        if not cookie:
            return None
        try:
            data = self._fernet.decrypt_at_time(
                cookie.encode(),
                int(self._lifetime.total_seconds()),
                int(self._clock().timestamp()),
            )
            loaded = json.loads(data)
        except (InvalidToken, ValueError):
            return None
        if not isinstance(loaded, dict):
            return None
        try:
            return BrowserSession(**{k: v for k, v in loaded.items() if isinstance(v, str)})
        except TypeError:
            return None
