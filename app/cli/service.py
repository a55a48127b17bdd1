"""`slipway service ...` and `slipway doctor`: running a platform on this machine for good.

`service install` writes one systemd unit that runs `slipway up` (why one unit and not a
target of several: app/server/service.py); `doctor` checks what the platform needs here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter

from app.cli.common import SERVER, Json, UsageError, examples
from app.cli.output import Output

app = App(
    name="service",
    help="Slipway as a systemd service: one unit that runs `slipway up` at boot.",
    help_epilogue=examples(
        "sudo slipway service install",
        "sudo systemctl daemon-reload && sudo systemctl enable --now slipway",
        "sudo slipway service uninstall",
    ),
    version_flags=(),
    group=SERVER,
)

UnitDir = Annotated[
    Path,
    Parameter(name="--dir", metavar="DIR", help="Where systemd reads units from."),
]


@app.command(
    help_epilogue=examples(
        "sudo slipway service install",
        "sudo slipway service install --env-file /etc/slipway/slipway.env --user slipway",
        "slipway service install --dir ./units   # to look at it first",
    )
)
def install(
    *,
    dir: UnitDir = Path("/etc/systemd/system"),
    env_file: Annotated[
        Path,
        Parameter(
            name="--env-file",
            metavar="FILE",
            help="The unit's EnvironmentFile (made 0600 with SLIPWAY_DATA_DIR when missing; "
            "never overwritten).",
        ),
    ] = Path("/etc/slipway/slipway.env"),
    user: Annotated[
        str | None,
        Parameter(
            name="--user",
            metavar="USER",
            show_default=False,
            help="Run as this user. Default: root, which the network policy needs.",
        ),
    ] = None,
) -> int:
    """Write the systemd unit slipway.service (Restart=on-failure).

    It runs `python -m app.cli up` with this installation's interpreter, in
    this checkout (its .env is read, as `make up` reads it), with the
    settings of --env-file. Nothing is started: systemctl does that."""
    from app.kernel.settings import SettingsError, load_settings
    from app.server.service import ServiceError, current_plan
    from app.server.service import install as write

    try:
        data_dir = load_settings().data_dir.resolve()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    output = Output()
    try:
        written = write(current_plan(env_file, data_dir, user), dir)
    except (ServiceError, OSError) as exc:
        raise UsageError(f"not installed: {exc}") from None
    for path in written:
        output.say(f"wrote {path}")
    output.say(
        "next: systemctl daemon-reload && systemctl enable --now slipway "
        "(stop a running `make up` first); logs: journalctl -u slipway"
    )
    return 0


@app.command(help_epilogue=examples("sudo slipway service uninstall"))
def uninstall(*, dir: UnitDir = Path("/etc/systemd/system")) -> int:
    """Remove slipway.service (stop it first: systemctl disable --now slipway).

    The environment file and DATA_DIR stay."""
    from app.server.service import ServiceError
    from app.server.service import uninstall as remove

    output = Output()
    try:
        removed = remove(dir)
    except (ServiceError, OSError) as exc:
        raise UsageError(f"not removed: {exc}") from None
    output.say(f"removed {removed}" if removed else f"no slipway.service in {dir}")
    return 0


def doctor(*, json: Json = False) -> int:
    """Check what a platform needs on this machine; each problem with its fix.

    The Docker engine and BuildKit, free ports, the ACME CA and the wildcard certificate's
    Caddy module, PUBLIC_URL, DNS of BASE_DOMAIN and its wildcard, disk space, the GitHub App.
    Exit 1 when a check fails."""
    from app.kernel.settings import SettingsError, load_settings
    from app.server.doctor import FAIL, run_checks, settings_problem

    output = Output(json=json)
    try:
        findings = run_checks(load_settings())
    except SettingsError as exc:
        findings = [settings_problem(str(exc))]
    if json:
        output.data([f.as_dict() for f in findings])
    else:
        width = max(len(f.check) for f in findings)
        for finding in findings:
            output.state(finding.state.ljust(4), f"{finding.check.ljust(width)}  {finding.detail}")
            if finding.fix:
                output.say(f"      fix: {finding.fix}")
    failed = [f for f in findings if f.state == FAIL]
    return 1 if failed else 0
