"""`slipway db ...`: a deployment's database: dump it, restore into it, its backups.

The dump is pg_dump's custom format (what `pg_restore` reads); it streams from the API into
a file or stdout, and an archive streams to the API from a file. Both need a token that is
not read-only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, BinaryIO

from cyclopts import Parameter

from app.cli.client import ClientError
from app.cli.common import Json, Url, UsageError, connect, examples, noun
from app.cli.output import Column, Output

COLUMNS = [
    Column("id"),
    Column("reason"),
    Column("state"),
    Column("size_bytes", "bytes"),
    Column("started_at", "started"),
    Column("error"),
]

app = noun(
    "db",
    "A deployment's database: dump it, restore into it, list its scheduled backups.",
    "slipway db dump web -o web.dump",
    "slipway db restore web web.dump",
    "slipway db backups web",
)

Deployment = Annotated[
    str,
    Parameter(
        help="The deployment: its name (as `deployments list` shows) or its id (a deleted "
        "deployment's, for its last backup)."
    ),
]
Confirm = Annotated[
    str | None,
    Parameter(
        name="--confirm",
        metavar="NAME",
        show_default=False,
        help="The deployment's name, instead of typing it (for scripts).",
    ),
]


@app.command(
    help_epilogue=examples(
        "slipway db dump web -o web.dump",
        "slipway db dump web > web.dump",
        "slipway db dump web --backup bak_3f2c1a9e0b7d -o web.dump",
        "pg_restore --list web.dump   # what it holds",
    )
)
def dump(
    deployment: Deployment,
    /,
    *,
    output: Annotated[
        Path | None,
        Parameter(
            name=["--output", "-o"],
            metavar="FILE",
            show_default=False,
            help="Where to write it (made 0600). Default: stdout, unless it is a terminal.",
        ),
    ] = None,
    backup: Annotated[
        str | None,
        Parameter(
            name="--backup",
            metavar="ID",
            show_default=False,
            help="A stored backup (`db backups` lists them) instead of the live database.",
        ),
    ] = None,
    url: Url = None,
) -> int:
    """Dump a deployment's database (pg_dump's custom format).

    The app keeps serving: pg_dump reads a snapshot and blocks no reads or writes."""
    out = Output()
    if output is None and sys.stdout.isatty():
        raise UsageError("the dump is binary: give -o FILE, or redirect stdout to a file")
    with connect(url) as client:
        found = client.deployment(deployment)
        path = (
            f"/api/deployments/{found['id']}/backups/{backup}/archive"
            if backup
            else f"/api/deployments/{found['id']}/database/dump"
        )
        if output is None:
            written = client.download(path, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            written = _to_file(output, lambda sink: client.download(path, sink))
    out.note(f"{written} bytes of {found['slug']}'s database" + (f" to {output}" if output else ""))
    return 0


@app.command(
    help_epilogue=examples(
        "slipway db restore web web.dump",
        "slipway db restore web web.dump --confirm web",
        "slipway db restore web --backup bak_3f2c1a9e0b7d --confirm web",
    )
)
def restore(
    deployment: Deployment,
    file: Annotated[
        Path | None,
        Parameter(help="An archive of pg_dump's custom format (`db dump` makes one)."),
    ] = None,
    /,
    *,
    backup: Annotated[
        str | None,
        Parameter(
            name="--backup",
            metavar="ID",
            show_default=False,
            help="Restore a stored backup (`db backups` lists them) instead of a file.",
        ),
    ] = None,
    confirm: Confirm = None,
    json: Json = False,
    url: Url = None,
) -> int:
    """Replace a deployment's database with an archive's contents.

    What the archive holds is dropped and made again, in one transaction: a
    failed restore changes nothing. Unless --confirm is given, the
    deployment's name must be typed (on a terminal) or given on stdin."""
    if (file is None) == (backup is None):
        raise UsageError("give either FILE or --backup ID")
    if file is not None and not file.is_file():
        raise UsageError(f"{file} is not a file")
    output = Output(json=json)
    with connect(url) as client:
        found = client.deployment(deployment)
        slug = found["slug"]
        if confirm is None:
            output.say(
                f"This replaces what {slug}'s database holds with the "
                + (f"contents of {file}." if file else f"backup {backup}.")
            )
            confirm = (
                input(f"Type {slug} to confirm: ") if sys.stdin.isatty() else sys.stdin.readline()
            ).strip()
        if confirm != slug:
            raise ClientError("not restored: the name typed did not match")
        if file is not None:
            with file.open("rb") as source:
                done = client.upload(
                    f"/api/deployments/{found['id']}/database/restore", source, confirm=confirm
                )
        else:
            assert backup is not None
            done = client.restore_backup(found["id"], backup, confirm)
    if json:
        output.data(done)
    else:
        output.say(f"{slug}: {done['message']}")
    return 0


@app.command(
    help_epilogue=examples("slipway db backups web", "slipway db backups dep_3f2c1a9e0b7d --json")
)
def backups(deployment: Deployment, /, *, json: Json = False, url: Url = None) -> int:
    """List a deployment's stored backups, newest first (failed ones say why)."""
    with connect(url) as client:
        found = client.deployment(deployment)
        Output(json=json).table(client.backups(found["id"]), COLUMNS)
    return 0


def _to_file(path: Path, write: Callable[[BinaryIO], int]) -> int:
    """Into FILE.partial (0600), renamed once whole: a dump that broke off leaves no file
    that looks complete."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            written = write(sink)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return written
