"""API tokens (hashed, revocable, one admin token on a new platform) and signed links."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar import Litestar, Router
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient
from sqlmodel import select

from app.access.links import LinkSigner, RevisionLinks
from app.access.tokens import authenticate, create_token, ensure_admin_token, revoke_token
from app.api.auth import BearerTokens
from app.api.tokens import whoami
from app.kernel.db import SessionFactory
from app.kernel.errors import ConflictError, InvalidRequest, NotFoundError
from app.kernel.models import ApiToken

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_token_is_stored_only_as_its_hash_and_authenticates(sessions: SessionFactory) -> None:
    with sessions() as session:
        _, token = create_token(session, "ci", NOW, read_only=True)
        stored = session.exec(select(ApiToken)).one()
        caller = authenticate(session, token, NOW)

    assert token.startswith("slw_") and token not in stored.token_hash
    assert caller is not None and caller.name == "ci" and caller.read_only
    with sessions() as session:
        assert authenticate(session, token + "x", NOW) is None


def test_whoami_names_the_token_a_request_came_with(sessions: SessionFactory) -> None:
    with sessions() as session:
        _, token = create_token(session, "ci", NOW, read_only=True)
    api = Litestar(
        route_handlers=[Router(path="/api", route_handlers=[whoami])],
        middleware=[
            DefineMiddleware(
                BearerTokens,
                sessions=sessions,
                signer=LinkSigner(b"k" * 32, timedelta(days=1), lambda: NOW),
                clock=lambda: NOW,
            )
        ],
    )

    with TestClient(app=api) as client:
        named = client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
        unknown = client.get("/api/whoami", headers={"Authorization": "Bearer slw_nobody"})

    assert named.json() == {"name": "ci", "read_only": True}
    assert unknown.status_code == 401


def test_a_revoked_token_no_longer_authenticates(sessions: SessionFactory) -> None:
    with sessions() as session:
        _, token = create_token(session, "laptop", NOW)
        revoke_token(session, "laptop", NOW)
        assert authenticate(session, token, NOW) is None
        with pytest.raises(NotFoundError):
            revoke_token(session, "nobody", NOW)


def test_token_names_are_unique_and_plain(sessions: SessionFactory) -> None:
    with sessions() as session:
        create_token(session, "ci", NOW)
        with pytest.raises(ConflictError):
            create_token(session, "ci", NOW)
        with pytest.raises(InvalidRequest):
            create_token(session, "has space", NOW)


def test_a_new_platform_writes_one_admin_token_readable_only_by_its_user(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    path = tmp_path / "admin-token"
    with sessions() as session:
        assert ensure_admin_token(session, path, NOW) is True
        assert ensure_admin_token(session, path, NOW) is False  # a second start: nothing
        token = path.read_text().strip()
        caller = authenticate(session, token, NOW)

    assert caller is not None and caller.name == "admin" and not caller.read_only
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_signed_link_opens_its_own_path_until_it_expires() -> None:
    signer = LinkSigner(b"s" * 32, timedelta(days=30), lambda: NOW)
    url = RevisionLinks("https://slipway.example.com", signer).log("rev_abc")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}

    assert parts.path == "/api/revisions/rev_abc/logs"
    assert signer.verify(parts.path, query["expires"], query["signature"], NOW)
    assert not signer.verify(
        "/api/revisions/rev_other/logs", query["expires"], query["signature"], NOW
    )
    assert not signer.verify(parts.path, query["expires"], query["signature"] + "0", NOW)
    later = NOW + timedelta(days=31)
    assert not signer.verify(parts.path, query["expires"], query["signature"], later)
    other_key = LinkSigner(b"t" * 32, timedelta(days=30), lambda: NOW)
    assert not other_key.verify(parts.path, query["expires"], query["signature"], NOW)
