"""Who may call: the App JWT (RS256, ``iss`` = App id, at most 10 minutes) and installation
tokens (scoped to an installation, maybe to some of its repositories, and to permissions)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

import jwt

from .core import FakeCore, Repo, Token
from .http import HttpError, Request
from .payloads import iso_time

JWT_MAX_LIFETIME = 600
"""GitHub refuses App JWTs whose ``exp`` is more than 10 minutes out."""
CLOCK_SKEW = 60
PERMISSION_RANK = {"read": 1, "write": 2, "admin": 3}


class AuthMixin(FakeCore):
    def _credentials(self, request: Request) -> tuple[str, str]:
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

    def _require_app_jwt(self, request: Request) -> None:
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

    def _require_token(self, request: Request) -> Token:
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
        self, request: Request, params: Mapping[str, str], permission: str, level: str
    ) -> tuple[Repo, Token]:
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
        wanted = PERMISSION_RANK[level]
        names = permission.split("|")
        if not any(PERMISSION_RANK.get(token.permissions.get(n, ""), 0) >= wanted for n in names):
            raise HttpError(
                403,
                "Resource not accessible by integration",
                detail=f"needs {' or '.join(names)}: {level}; the token has {token.permissions}",
            )
        return repo, token
