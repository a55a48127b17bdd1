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


class UserRef(_Lenient):
    login: str
    type: str = "User"


class BranchRepository(_Lenient):
    id: int
    full_name: str
    fork: bool = False


class PullRequestBranch(_Lenient):
    ref: str
    sha: str
    repo: BranchRepository | None = None
    """None when the head repository (a fork) was deleted."""


class LabelRef(_Lenient):
    name: str


class PullRequestRef(_Lenient):
    number: int
    state: str = "open"
    draft: bool = False
    merged: bool | None = False
    title: str = ""
    head: PullRequestBranch
    base: PullRequestBranch
    user: UserRef | None = None
    labels: list[LabelRef] = Field(default_factory=list)
    """The labels it carries once this delivery's change is made (`unlabeled`: without it)."""


class PullRequestEvent(_Lenient):
    action: str
    number: int
    pull_request: PullRequestRef
    repository: RepositoryRef
    installation: InstallationRef | None = None
    sender: UserRef | None = None
    label: LabelRef | None = None
    """The label put on or taken off, for `labeled` and `unlabeled`."""

    @property
    def from_fork(self) -> bool:
        """Code from another repository: nobody with access to this one has reviewed it."""
        head_repo = self.pull_request.head.repo
        return head_repo is None or head_repo.id != self.repository.id


class CheckSuiteRef(_Lenient):
    id: int | None = None
    head_sha: str
    head_branch: str | None = None


class CheckRunRef(_Lenient):
    id: int
    head_sha: str
    external_id: str | None = None
    name: str = ""
    check_suite: CheckSuiteRef | None = None


class RequestedAction(_Lenient):
    identifier: str


class CheckRunEvent(_Lenient):
    action: str
    check_run: CheckRunRef
    repository: RepositoryRef
    installation: InstallationRef | None = None
    sender: UserRef | None = None
    requested_action: RequestedAction | None = None


class CheckSuiteEvent(_Lenient):
    action: str
    check_suite: CheckSuiteRef
    repository: RepositoryRef
    installation: InstallationRef | None = None
    sender: UserRef | None = None
