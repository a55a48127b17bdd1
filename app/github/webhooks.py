"""Webhook deliveries: signature verification and the few payload fields Slipway reads.

Payloads are parsed leniently on purpose: GitHub adds fields and sometimes omits ones a strict
schema demands (see shared/github/README.md). A delivery is never lost because a field Slipway
does not use is absent or new; the raw body is kept on the Delivery row.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_PREFIX = "sha256="
NULL_SHA = "0" * 40


def signature_is_valid(body: bytes, secret: str, header: str | None) -> bool:
    """Constant-time check of X-Hub-Signature-256 against the body GitHub signed."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    given = header.removeprefix(SIGNATURE_PREFIX).encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Account(_Lenient):
    login: str
    id: int | None = None
    type: str = "User"


class InstallationRef(_Lenient):
    id: int
    account: Account | None = None


class RepositoryRef(_Lenient):
    id: int
    full_name: str
    default_branch: str | None = None
    master_branch: str | None = None

    @property
    def branch(self) -> str:
        return self.default_branch or self.master_branch or "main"


class RepositoryListed(_Lenient):
    """Repositories in installation payloads carry no default branch."""

    id: int
    full_name: str


class InstallationEvent(_Lenient):
    action: str
    installation: InstallationRef
    repositories: list[RepositoryListed] | None = None


class InstallationRepositoriesEvent(_Lenient):
    action: str
    installation: InstallationRef
    repositories_added: list[RepositoryListed] = Field(default_factory=list)
    repositories_removed: list[RepositoryListed] = Field(default_factory=list)


class HeadCommit(_Lenient):
    id: str
    message: str = ""


class PushEvent(_Lenient):
    ref: str
    before: str = NULL_SHA
    after: str
    created: bool = False
    deleted: bool = False
    repository: RepositoryRef
    installation: InstallationRef | None = None
    head_commit: HeadCommit | None = None

    @property
    def branch(self) -> str | None:
        """The branch name, or None for tags and other refs."""
        prefix = "refs/heads/"
        return self.ref.removeprefix(prefix) if self.ref.startswith(prefix) else None
