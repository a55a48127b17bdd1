"""What every client command shares: its `--json` and `--url` options, its examples, and a
connection to the platform found the one way (app.cli.client.find_login)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from cyclopts import App, Group, Parameter

from app.cli.client import URL_VARIABLE, SlipwayClient, config_path, find_login

Json = Annotated[
    bool, Parameter(name="--json", help="Print JSON, for scripts.", show_default=False)
]
Url = Annotated[
    str | None,
    Parameter(
        name="--url",
        metavar="URL",
        show_default=False,
        help=f"The platform's API. Default: {URL_VARIABLE}, else the stored login's. A stored "
        "token is sent only to the URL it was stored for.",
    ),
]
Wait = Annotated[
    bool,
    Parameter(
        name="--wait",
        show_default=False,
        help="Follow the revision until it is live (exit 0) or fails (exit 1).",
    ),
]


def examples(*lines: str) -> str:
    """The help's closing section: commands to copy, one a line; a line that starts with
    `#` is a note about the one before."""
    return "Examples:\n" + "\n".join(
        f"  {line}" if line.startswith("#") else f"  $ {line}" for line in lines
    )


CLIENT = Group("Using a platform", sort_key=1)
"""The root help's panel of the commands that use a platform through its API."""
SERVER = Group("Running a platform", sort_key=2)
"""The root help's panel of the commands that run one on this machine."""


def noun(name: str, help: str, *example_lines: str) -> App:
    """A group of commands (`slipway deployments ...`): its help lists them."""
    return App(
        name=name,
        help=help,
        help_epilogue=examples(*example_lines),
        version_flags=(),
        group=CLIENT,
    )


@contextmanager
def connect(url: str | None) -> Iterator[SlipwayClient]:
    with SlipwayClient(find_login(url, config_path())) as client:
        yield client


class UsageError(Exception):
    """The command line is wrong in a way the parser cannot see (exit code 2)."""
