"""`slipway logs`: a revision's build log (a platform's own logs may join it later, as an
option of this command)."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from app.cli.addresses import RevisionAddress, resolve
from app.cli.common import Url, connect, examples
from app.cli.output import Output

EXAMPLES = examples(
    "slipway logs web#3",
    "slipway logs web --follow   # the newest revision's, until it ends",
    "slipway revisions list web  # the REVISION column is what logs takes",
)


def logs(
    revision: Annotated[
        str,
        Parameter(
            help="The revision: DEPLOYMENT#NUMBER (e.g. web#3, as `revisions list` shows it), "
            "a deployment's name alone for its newest revision, or a revision id."
        ),
    ],
    /,
    *,
    follow: Annotated[
        bool,
        Parameter(
            name=["--follow", "-f"],
            show_default=False,
            help="Keep printing as the log is written, until the revision is live or ends.",
        ),
    ] = False,
    url: Url = None,
) -> int:
    """Print a revision's build log."""
    output = Output()
    address = RevisionAddress.parse(revision)
    with connect(url) as client:
        found = resolve(client, address)
        revision_id = found.revision["id"]
        if follow:
            for chunk in client.follow_log(revision_id):
                output.raw(chunk)
        else:
            output.raw(client.log(revision_id))
    return 0
