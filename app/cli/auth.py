"""`slipway auth ...` and `slipway whoami`: which platform this CLI talks to, with which token.

The token comes from SLIPWAY_TOKEN, stdin (`auth login --with-token`), a prompt that does not
echo, or the stored login; never from argv, which every user of the machine can read.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated, Any

from cyclopts import Parameter

from app.cli.client import (
    TOKEN_VARIABLE,
    ClientError,
    Login,
    NotLoggedIn,
    SlipwayClient,
    config_path,
    find_login,
    forget_login,
    save_login,
    token_from_environment,
)
from app.cli.common import Json, Url, examples, noun
from app.cli.output import Output

app = noun(
    "auth",
    "Log in to a platform, see with which token, log out.",
    "slipway auth login https://slipway.example.org --with-token < token.txt",
    "slipway auth status",
    "slipway auth logout",
)


def describe(caller: dict[str, Any]) -> str:
    if caller.get("name") is None:  # a platform from before /api/whoami
        return "a token it accepts"
    access = "read-only" if caller.get("read_only") else "read-write"
    return f"token {caller['name']!r} ({access})"


@app.command(
    help_epilogue=examples(
        "slipway auth login https://slipway.example.org     # asks for the token",
        "slipway auth login https://slipway.example.org --with-token < token.txt",
    )
)
def login(
    url: Annotated[
        str,
        Parameter(help="The platform's API, e.g. https://slipway.example.org (its PUBLIC_URL)."),
    ],
    /,
    *,
    with_token: Annotated[
        bool,
        Parameter(
            name="--with-token",
            show_default=False,
            help="Read the token from stdin (the default when stdin is not a terminal).",
        ),
    ] = False,
) -> int:
    """Store the platform's URL and a token for the next commands.

    The token is checked against the platform before anything is stored,
    then kept 0600 in ~/.config/slipway/login.json (under XDG_CONFIG_HOME
    when set) and sent to this URL only."""
    output = Output()
    if with_token or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass("Token: ").strip()
    if not token:
        raise ClientError("no token was given (on stdin or at the prompt)")
    login = Login(url=url.rstrip("/"), token=token)
    with SlipwayClient(login) as client:
        caller = client.whoami()  # proves the URL and the token before anything is stored
    path = config_path()
    save_login(login, path)
    output.say(f"logged in to {login.url} as {describe(caller)}; saved in {path}")
    return 0


@app.command(help_epilogue=examples("slipway auth logout"))
def logout() -> int:
    """Forget the stored login (the token stays valid).

    `slipway tokens revoke NAME` ends the token itself."""
    output = Output()
    path = config_path()
    forgotten = forget_login(path)
    if forgotten is None:
        raise NotLoggedIn(f"not logged in: there is no stored login ({path})")
    output.say(f"logged out of {forgotten.url} (removed {path})")
    if token_from_environment(os.environ) is not None:
        output.note(f"{TOKEN_VARIABLE} is still set: commands keep using it")
    return 0


def _status(url: str | None) -> dict[str, Any]:
    login = find_login(url, config_path())
    with SlipwayClient(login) as client:
        caller = client.whoami()
    return {
        "url": login.url,
        "token_source": login.source,
        "name": caller.get("name"),
        "read_only": caller.get("read_only"),
    }


@app.command(
    help_epilogue=examples(
        "slipway auth status",
        "slipway auth status --url https://slipway.example.org",
        f"{TOKEN_VARIABLE}=$(cat token.txt) slipway auth status --json",
    )
)
def status(*, json: Json = False, url: Url = None) -> int:
    """Show the platform and token commands use, and that it works.

    Exits 4 when there is no login or the platform refuses the token."""
    output = Output(json=json)
    found = _status(url)
    if json:
        output.data(found)
        return 0
    output.say(found["url"])
    output.say(f"  logged in with {describe(found)}")
    output.say(f"  token from {found['token_source']}")
    return 0


def whoami(*, json: Json = False, url: Url = None) -> int:
    """Print the name of the token commands use."""
    output = Output(json=json)
    found = _status(url)
    if json:
        output.data(found)
    else:
        output.say(str(found["name"]))
    return 0


WHOAMI_EXAMPLES = examples("slipway whoami", "slipway whoami --json")
