"""Who may use /api: a bearer token, or a signed link for the one page it was made for.

Unknown, revoked and missing tokens get 401 before any handler runs; a read-only token (or a
signed link) that tries to change something gets 403.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp, Receive, Scope, Scopes, Send

from app.access.links import EXPIRES, SIGNABLE_SUFFIXES, SIGNATURE, LinkSigner
from app.access.tokens import Caller, authenticate
from app.kernel.db import SessionFactory
from app.kernel.ports import Clock

SIGNED_LINK = Caller(name="signed link", read_only=True)
READ_METHODS = frozenset({"GET", "HEAD"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="slipway"'}


class BearerTokens(AbstractAuthenticationMiddleware):
    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: SessionFactory,
        signer: LinkSigner,
        clock: Clock,
        scopes: Scopes | None = None,
        also_guarded: frozenset[str] = frozenset(),
    ) -> None:
        """`also_guarded`: paths outside /api that need a token too (`/metrics`, unless the
        operator opened it)."""
        super().__init__(app, scopes=scopes)
        self._also_guarded = also_guarded
        self._sessions = sessions
        self._signer = signer
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Installed on the whole app (a Router deep-copies its middleware's arguments): only
        # /api is guarded; /healthz, the webhook receiver and the setup pages stay open.
        if not _is_api(scope["path"]) and scope["path"] not in self._also_guarded:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("Authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthorizedException(
                    detail="use the header 'Authorization: Bearer <token>'", headers=CHALLENGE
                )

            def lookup() -> Caller | None:
                with self._sessions() as session:
                    return authenticate(session, token.strip(), self._clock())

            caller = await asyncio.to_thread(lookup)
            if caller is None:
                raise NotAuthorizedException(
                    detail="the token is unknown or was revoked", headers=CHALLENGE
                )
            return AuthenticationResult(user=caller, auth=None)
        if self._signed_link_opens(connection):
            return AuthenticationResult(user=SIGNED_LINK, auth=None)
        raise NotAuthorizedException(
            detail="this API needs 'Authorization: Bearer <token>' (make one with `slipway "
            "tokens create`; a new platform's admin token is in DATA_DIR/admin-token), or a "
            "signed link that has not expired",
            headers=CHALLENGE,
        )

    def _signed_link_opens(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        params = connection.query_params
        expires, signature = params.get(EXPIRES), params.get(SIGNATURE)
        if not expires or not signature or connection.scope.get("method") not in READ_METHODS:
            return False
        path = connection.scope["path"]
        if not _signable(path):
            return False
        return self._signer.verify(path, expires, signature, self._clock())


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def _signable(path: str) -> bool:
    """Only a revision's page and its log are ever signed."""
    parts = path.split("/")
    if len(parts) < 4 or parts[:3] != ["", "api", "revisions"]:
        return False
    rest = "/" + "/".join(parts[4:]) if len(parts) > 4 else ""
    return rest in SIGNABLE_SUFFIXES


def writers_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard: read-only callers read."""
    if connection.scope.get("method") in READ_METHODS:
        return
    caller = connection.user
    if not isinstance(caller, Caller) or caller.read_only:
        raise PermissionDeniedException(
            detail=f"the token {getattr(caller, 'name', '?')!r} is read-only: it cannot change "
            "anything"
        )


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    caller = connection.user
    assert isinstance(caller, Caller)
    return caller
