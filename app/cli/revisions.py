"""`slipway revisions ...`: a deployment's revisions, each addressed as `web#3`."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import Parameter

from app.cli.addresses import RevisionAddress, address_of, resolve
from app.cli.common import Json, Url, connect, examples, noun
from app.cli.output import Column, Output

COLUMNS = [
    Column("revision"),
    Column("state"),
    Column("commit"),
    Column("build_method", "build"),
    Column("requested_by", "by"),
    Column("created_at", "created"),
    Column("error"),
]
FIELDS = [
    "revision",
    "id",
    "state",
    "commit_sha",
    "commit_message",
    "build_method",
    "image",
    "requested_by",
    "rollback_of",
    "error",
    "created_at",
    "build_started_at",
    "deploy_started_at",
    "live_at",
    "finished_at",
    "logs_url",
]

app = noun(
    "revisions",
    "A deployment's revisions, each addressed as web#3.",
    "slipway revisions list web",
    "slipway revisions view web#3",
    "slipway logs web#3",
)


def with_address(slug: str, revision: dict[str, Any]) -> dict[str, Any]:
    """The API's revision plus what people use: its address and a short commit."""
    return revision | {"revision": address_of(slug, revision), "commit": revision["commit_sha"][:7]}


@app.command(
    name="list",
    help_epilogue=examples("slipway revisions list web", "slipway revisions list web --json"),
)
def list_(
    deployment: Annotated[
        str, Parameter(help="The deployment: its name (as `deployments list` shows) or its id.")
    ],
    /,
    *,
    json: Json = False,
    url: Url = None,
) -> int:
    """List a deployment's revisions, newest first.

    The REVISION column (web#3) is what `logs`, `revisions view` and
    `deployments rollback` take."""
    with connect(url) as client:
        found = client.deployment(deployment)
        rows = [with_address(found["slug"], r) for r in client.revisions(found["id"])]
    Output(json=json).table(rows, COLUMNS)
    return 0


@app.command(
    help_epilogue=examples(
        "slipway revisions view web#3",
        "slipway revisions view web   # its newest revision",
        "slipway revisions view rev_0123456789ab --json",
    )
)
def view(
    revision: Annotated[
        str,
        Parameter(
            help="The revision: DEPLOYMENT#NUMBER (e.g. web#3), a deployment's name alone for "
            "its newest revision, or a revision id."
        ),
    ],
    /,
    *,
    json: Json = False,
    url: Url = None,
) -> int:
    """Show a revision: state, commit, image, error, phase times."""
    address = RevisionAddress.parse(revision)
    with connect(url) as client:
        found = resolve(client, address)
    Output(json=json).fields(with_address(found.deployment["slug"], found.revision), FIELDS)
    return 0
