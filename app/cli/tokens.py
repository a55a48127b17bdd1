"""`slipway tokens ...`: the platform's API tokens (a new one is shown once, when made)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from app.cli.common import Json, Url, connect, examples, noun
from app.cli.output import Column, Output

COLUMNS = [
    Column("name"),
    Column("read_only", "read-only"),
    Column("created_at", "created"),
    Column("last_used_at", "last used"),
    Column("revoked_at", "revoked"),
]

app = noun(
    "tokens",
    "API tokens: who may use the platform's API and this CLI.",
    "slipway tokens create ci --read-only",
    "slipway tokens list",
    "slipway tokens revoke ci",
)

Name = Annotated[
    str,
    Parameter(help="The token's name: 1-63 letters, digits, '.', '_' or '-'."),
]


@app.command(
    help_epilogue=examples(
        "slipway tokens create ci --read-only",
        "slipway tokens create deploy-bot > token.txt",
    )
)
def create(
    name: Name,
    /,
    *,
    read_only: Annotated[
        bool,
        Parameter(
            name="--read-only",
            show_default=False,
            help="It may read (list, view, logs) but change nothing.",
        ),
    ] = False,
    json: Json = False,
    url: Url = None,
) -> int:
    """Make a token, printed once on stdout (only a hash is kept)."""
    output = Output(json=json)
    with connect(url) as client:
        made = client.create_token(name, read_only=read_only)
    if json:
        output.data(made)
    else:
        print(made["token"], file=output.out, flush=True)
        output.note(f"(token {made['name']}: shown this once; store it now)")
    return 0


@app.command(
    name="list", help_epilogue=examples("slipway tokens list", "slipway tokens list --json")
)
def list_(*, json: Json = False, url: Url = None) -> int:
    """List the tokens (names and use, never the tokens themselves)."""
    with connect(url) as client:
        Output(json=json).table(client.tokens(), COLUMNS)
    return 0


@app.command(help_epilogue=examples("slipway tokens revoke ci"))
def revoke(name: Name, /, *, json: Json = False, url: Url = None) -> int:
    """Revoke a token: the API refuses it from now on."""
    output = Output(json=json)
    with connect(url) as client:
        revoked = client.revoke_token(name)
    if json:
        output.data(revoked)
    else:
        output.say(f"token {name} revoked")
    return 0
