"""Signed links: what Slipway puts in check runs and comments opens without a token.

A person coming from GitHub has no API token; the link itself carries an expiry and an HMAC
of exactly one path, so it reads that one page until it expires and nothing else.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from hashlib import sha256
from urllib.parse import urlencode

from app.kernel.ports import Clock

EXPIRES = "expires"
SIGNATURE = "signature"


class LinkSigner:
    def __init__(self, key: bytes, lifetime: timedelta, clock: Clock) -> None:
        self._key = key
        self._lifetime = lifetime
        self._clock = clock

    def sign(self, base_url: str, path: str) -> str:
        """`base_url` + `path` with its expiry and signature as the query."""
        expires = int((self._clock() + self._lifetime).timestamp())
        query = urlencode({EXPIRES: expires, SIGNATURE: self._signature(path, expires)})
        return f"{base_url.rstrip('/')}{path}?{query}"

    def verify(self, path: str, expires: str, signature: str, now: datetime) -> bool:
        try:
            deadline = int(expires)
        except ValueError:
            return False
        if deadline < now.timestamp():
            return False
        return hmac.compare_digest(self._signature(path, deadline), signature)

    def _signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._key, message, sha256).hexdigest()[:40]


class RevisionLinks:
    """The links to a revision's page and build log that go to GitHub, signed.

    The page is the dashboard's (the check run's "Details", the PR comment's "details"): HTML
    with the build log, read-only for whoever holds the link; the log link is the raw text.
    """

    def __init__(self, api_url: str, signer: LinkSigner) -> None:
        self._api_url = api_url.rstrip("/")
        self._signer = signer

    @property
    def signer(self) -> LinkSigner:
        return self._signer

    def revision(self, revision_id: str) -> str:
        return self._signer.sign(self._api_url, revision_path(revision_id))

    def log(self, revision_id: str) -> str:
        return self._signer.sign(self._api_url, log_path(revision_id))


def revision_path(revision_id: str) -> str:
    """The revision's dashboard page (links signed before it went to /api/revisions/<id>,
    which keeps opening them)."""
    return f"/dashboard/revisions/{revision_id}"


def log_path(revision_id: str) -> str:
    return f"/api/revisions/{revision_id}/logs"


SIGNABLE_SUFFIXES = ("", "/logs")
"""What a signed link may open under /api/revisions/<id>: the revision and its log."""
