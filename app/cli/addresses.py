"""A revision's address, `web#3`: the deployment's name, `#`, and the revision's number.

That is what `slipway revisions list` shows and what every command that takes a revision
accepts; a revision's id (`rev_…`) works too, and where it makes sense the deployment's name
alone means its newest revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.cli.client import ClientError, SlipwayClient
from app.cli.common import UsageError

REVISION_ID_PREFIX = "rev_"


class AddressError(UsageError):
    """An address that cannot name a revision the way it is written (exit code 2, before
    anything is asked of the platform)."""


@dataclass(frozen=True)
class RevisionAddress:
    deployment: str | None
    """A slug or a deployment id; None when the address is a revision id."""
    number: int | None = None
    """None: the newest revision (or, with `revision_id`, whichever that is)."""
    revision_id: str | None = None

    @classmethod
    def parse(cls, text: str, *, newest: bool = True) -> RevisionAddress:
        """`newest`: a bare deployment name stands for its newest revision; otherwise it
        needs its `#NUMBER`."""
        text = text.strip()
        if text.startswith(REVISION_ID_PREFIX):
            return cls(deployment=None, revision_id=text)
        name, hash_, number = text.partition("#")
        if not name:
            raise AddressError(
                f"{text!r} names no deployment: write it as DEPLOYMENT#NUMBER, e.g. web#3"
            )
        if not hash_:
            if not newest:
                raise AddressError(
                    f"{text!r} is a deployment: name one of its revisions, e.g. {text}#3 "
                    f"(see `slipway revisions list {text}`)"
                )
            return cls(deployment=name)
        if not number.isdigit() or int(number) < 1:
            raise AddressError(
                f"{text!r}: the revision's number after '#' is a whole number from 1, e.g. web#3"
            )
        return cls(deployment=name, number=int(number))

    def __str__(self) -> str:
        if self.revision_id:
            return self.revision_id
        return f"{self.deployment}#{self.number}" if self.number else str(self.deployment)


def address_of(deployment_slug: str, revision: dict[str, Any]) -> str:
    return f"{deployment_slug}#{revision['number']}"


@dataclass(frozen=True)
class Resolved:
    deployment: dict[str, Any]
    revision: dict[str, Any]

    @property
    def address(self) -> str:
        return address_of(self.deployment["slug"], self.revision)


def resolve(client: SlipwayClient, address: RevisionAddress) -> Resolved:
    """The revision an address names, with its deployment."""
    if address.revision_id is not None:
        revision = client.revision(address.revision_id)
        return Resolved(client.deployment(revision["deployment_id"]), revision)
    assert address.deployment is not None
    deployment = client.deployment(address.deployment)
    revisions = client.revisions(deployment["id"])
    if address.number is None:
        if not revisions:
            raise ClientError(f"{deployment['slug']} has no revision yet", 404)
        return Resolved(deployment, revisions[0])
    for revision in revisions:
        if revision["number"] == address.number:
            return Resolved(deployment, revision)
    raise ClientError(
        f"{deployment['slug']} has no revision #{address.number} "
        f"(see `slipway revisions list {deployment['slug']}`)",
        404,
    )
