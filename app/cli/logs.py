"""`slipway logs`: a deployment's server logs (what its replicas print), or with `--build` a
revision's build log.

Until server logs were kept, `slipway logs web#3` printed the build log; that is now
`slipway logs web#3 --build` (or `slipway logs web --build 3`), and `slipway logs web#3` prints
what revision 3's replicas wrote.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from cyclopts import Parameter

from app.cli.addresses import REVISION_ID_PREFIX, AddressError, RevisionAddress, resolve
from app.cli.common import Json, Url, connect, examples
from app.cli.output import Output

EXAMPLES = examples(
    "slipway logs web                   # what web's replicas printed, newest last",
    "slipway logs web -f --since 10m    # the last ten minutes, then as it is printed",
    "slipway logs web --grep Traceback --since 2026-12-07T09:00:00Z",
    "slipway logs web#3                 # revision 3's replicas only",
    "slipway logs web --build           # the newest revision's build log",
    "slipway logs web --build 3         # revision 3's build log (also: web#3 --build)",
)


def logs(
    target: Annotated[
        str,
        Parameter(
            help="The deployment (its name), or one revision of it as DEPLOYMENT#NUMBER "
            "(e.g. web#3, as `revisions list` shows it) or a revision id."
        ),
    ],
    build_revision: Annotated[
        str | None,
        Parameter(
            help="With --build: the revision's number (3) or address (web#3); the newest "
            "revision's when left out."
        ),
    ] = None,
    /,
    *,
    build: Annotated[
        bool,
        Parameter(
            name="--build",
            show_default=False,
            help="The build log of a revision instead of the server logs.",
        ),
    ] = False,
    follow: Annotated[
        bool,
        Parameter(
            name=["--follow", "-f"],
            show_default=False,
            help="Keep printing new lines as they are written (a build log: until its "
            "revision is live or ends).",
        ),
    ] = False,
    since: Annotated[
        str | None,
        Parameter(help="Lines from this long ago (90s, 10m, 2h, 7d) or this time (ISO 8601)."),
    ] = None,
    until: Annotated[
        str | None, Parameter(help="Lines up to this long ago or this time (as --since).")
    ] = None,
    grep: Annotated[
        str | None, Parameter(help="Only lines that contain this text (as it is, case and all).")
    ] = None,
    replica: Annotated[str | None, Parameter(help="Only this replica's lines (its name).")] = None,
    limit: Annotated[
        int | None, Parameter(help="At most this many lines, the newest (default 1000).")
    ] = None,
    json_: Json = False,
    url: Url = None,
) -> int:
    """Print a deployment's server logs, or a revision's build log."""
    output = Output(json=json_)
    if build:
        return _build_log(output, target, build_revision, follow=follow, url=url)
    if build_revision is not None:
        raise AddressError(
            f"{build_revision!r}: a second name is only for --build; for one revision's "
            f"server logs write {target}#NUMBER"
        )
    address = RevisionAddress.parse(target)
    params = {
        key: value
        for key, value in (
            ("since", since),
            ("until", until),
            ("q", grep),
            ("replica", replica),
            ("limit", None if limit is None else str(limit)),
        )
        if value is not None
    }
    with connect(url) as client:
        if address.deployment is None or address.number is not None:
            found = resolve(client, address)
            deployment_id = found.deployment["id"]
            params["revision"] = found.revision["id"]
        else:
            deployment_id = client.deployment(address.deployment)["id"]
        if follow:
            for line in client.follow_server_logs(deployment_id, params):
                output.raw(json.dumps(line) + "\n" if json_ else _shown(line))
        elif json_:
            output.data(client.server_logs(deployment_id, params))
        else:
            output.raw("".join(_shown(line) for line in client.server_logs(deployment_id, params)))
    return 0


def _build_log(
    output: Output, target: str, revision: str | None, *, follow: bool, url: str | None
) -> int:
    if revision is None:
        address = RevisionAddress.parse(target)
    elif revision.startswith(REVISION_ID_PREFIX) or "#" in revision:
        address = RevisionAddress.parse(revision)
    else:
        address = RevisionAddress.parse(f"{target.partition('#')[0]}#{revision}")
    with connect(url) as client:
        revision_id = resolve(client, address).revision["id"]
        if follow:
            for chunk in client.follow_log(revision_id):
                output.raw(chunk)
        else:
            output.raw(client.log(revision_id))
    return 0


def _shown(line: dict[str, Any]) -> str:
    """`TIME #REVISION REPLICA TEXT`: the time to the millisecond, UTC."""
    at = str(line.get("at", ""))
    short = f"{at[:23]}Z" if len(at) > 23 else at
    number = line.get("revision")
    revision = f"#{number}" if number is not None else str(line.get("revision_id", ""))
    return f"{short} {revision} {line.get('replica', '')} {line.get('text', '')}\n"
