"""API tokens: bearer tokens shown once, stored only as their SHA-256.

A stolen control-plane database therefore holds no usable token; a token's name is how
people tell tokens apart, list them and revoke one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.kernel.errors import ConflictError, InvalidRequest, NotFoundError
from app.kernel.models import ApiToken

log = logging.getLogger(__name__)

TOKEN_PREFIX = "slw_"  # noqa: S105 (a prefix, not a secret)
"""Marks Slipway tokens, so secret scanners (and people) recognise a leaked one."""
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ADMIN_TOKEN_NAME = "admin"  # noqa: S105 (a name, not a secret)
LAST_USED_EVERY = timedelta(minutes=1)
"""last_used_at is written at most this often: one write per request would make every read
a write."""


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a token, or a signed link that reads one path."""

    name: str
    read_only: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not TOKEN_NAME.fullmatch(name):
        raise InvalidRequest(
            f"token name {name!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def create_token(
    session: Session, name: str, now: datetime, *, read_only: bool = False
) -> tuple[ApiToken, str]:
    """The new token row and the token itself, which is never seen again."""
    check_name(name)
    if session.exec(select(ApiToken.id).where(ApiToken.name == name)).first() is not None:
        raise ConflictError(f"a token named {name!r} exists already (revoke it or pick another)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=token_hash(token), read_only=read_only, created_at=now)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"a token named {name!r} exists already") from None
    log.info("api token created", extra={"token": name, "read_only": read_only})
    return row, token


def authenticate(session: Session, token: str, now: datetime) -> Caller | None:
    """The caller a token stands for, or None for an unknown or revoked one."""
    row = session.exec(
        select(ApiToken).where(
            ApiToken.token_hash == token_hash(token), col(ApiToken.revoked_at).is_(None)
        )
    ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        session.execute(update(ApiToken).where(col(ApiToken.id) == row.id).values(last_used_at=now))
        session.commit()
    return Caller(name=row.name, read_only=row.read_only)


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.created_at))).all())


def revoke_token(session: Session, name: str, now: datetime) -> ApiToken:
    row = session.exec(select(ApiToken).where(ApiToken.name == name)).first()
    if row is None:
        raise NotFoundError(f"no token named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.commit()
        log.info("api token revoked", extra={"token": name})
    return row


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / "admin-token"


def ensure_admin_token(session: Session, path: Path, now: datetime) -> bool:
    """On a platform with no token at all, make one and write it to `path` (0600).

    True when it made one. Several API processes may start at once: the token's name is
    unique, so exactly one of them makes it and writes the file; the others find a token.
    """
    if session.exec(select(func.count()).select_from(ApiToken)).one():
        return False
    try:
        _, token = create_token(session, ADMIN_TOKEN_NAME, now)
    except ConflictError:
        return False
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(partial, path)
    log.warning(
        "no API token existed: an admin token was written to a file only this user can read",
        extra={"path": str(path)},
    )
    return True
