"""Slipway as a systemd service: one unit that runs `slipway up`.

One unit, not a target of one unit per part: `slipway up` is already the supervisor of the
parts (it starts the embedded Postgres, Valkey and Caddy on ports it picks, hands their
addresses to the API and the worker, restarts whichever dies with a growing delay, and stops
them in order). A unit per part would have to repeat that order and that hand-over in unit
files, and would restart parts systemd's way while the supervisor's own is tested. systemd's
part is what the supervisor cannot do for itself: start at boot, and start it again if the
supervisor itself fails (Restart=on-failure). Stopping sends SIGTERM to the supervisor only
(KillMode=mixed), which stops its children in order; what is left after TimeoutStopSec is
killed. The apps' containers are Docker's and keep running across a restart.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "slipway.service"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_ENV_FILE = Path("/etc/slipway/slipway.env")
MARK = "# Written by `slipway service install`; `slipway service uninstall` removes it."
STOP_TIMEOUT_SECONDS = 90
"""The supervisor stops the API, the worker (which finishes its running step), Caddy, Valkey
and Postgres one after another; 90 s covers a worker in the middle of a build step."""


class ServiceError(RuntimeError):
    """The unit cannot be written or removed; the message says what to do."""


@dataclass(frozen=True)
class ServicePlan:
    python: Path
    """The interpreter of Slipway's environment: the unit runs `python -m app.cli up`."""
    working_dir: Path
    """The checkout (its `.env` is read, as `make up` reads it)."""
    env_file: Path
    data_dir: Path
    user: str | None = None
    """Run as this user; None: root, which the network policy needs (or CAP_NET_ADMIN)."""


def current_plan(env_file: Path, data_dir: Path, user: str | None) -> ServicePlan:
    """The unit for this very installation: this interpreter, this checkout."""
    checkout = Path(__file__).resolve().parents[2]
    return ServicePlan(
        python=Path(sys.executable).absolute(),
        working_dir=checkout if (checkout / "pyproject.toml").is_file() else data_dir.parent,
        env_file=env_file.absolute(),
        data_dir=data_dir.absolute(),
        user=user,
    )


def render_unit(plan: ServicePlan) -> str:
    docs = plan.working_dir / "docs" / "operations.md"
    lines = [
        MARK,
        "[Unit]",
        "Description=Slipway: push-to-deploy (API, worker, router and embedded services)",
        *([f"Documentation=file:{_escape(str(docs))}"] if docs.is_file() else []),
        "Wants=network-online.target docker.service",
        "After=network-online.target docker.service",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={_escape(str(plan.working_dir))}",
        f"EnvironmentFile={_escape(str(plan.env_file))}",
        f"ExecStart={_quote(str(plan.python))} -m app.cli up",
        *([f"User={plan.user}"] if plan.user else []),
        "Restart=on-failure",
        "RestartSec=5s",
        "KillMode=mixed",
        f"TimeoutStopSec={STOP_TIMEOUT_SECONDS}s",
        "LimitNOFILE=65536",
        "UMask=0077",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def render_env_file(plan: ServicePlan) -> str:
    return "\n".join(
        [
            "# Slipway's settings for its systemd unit, one SLIPWAY_NAME=value a line",
            "# (docs/configuration.md lists them). Written once by `slipway service install`,",
            "# never overwritten: edit it, then `systemctl restart slipway`.",
            f"SLIPWAY_DATA_DIR={plan.data_dir}",
            "",
        ]
    )


def install(plan: ServicePlan, unit_dir: Path) -> list[Path]:
    """Write the unit (and the environment file, when there is none); the paths written."""
    unit = unit_dir / UNIT_NAME
    if unit.exists() and MARK not in unit.read_text(errors="replace"):
        raise ServiceError(f"{unit} exists and was not written by Slipway: move it away first")
    written = []
    unit_dir.mkdir(parents=True, exist_ok=True)
    _write(unit, render_unit(plan), 0o644)
    written.append(unit)
    if not plan.env_file.exists():
        plan.env_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(plan.env_file, render_env_file(plan), 0o600)  # it will hold secrets
        written.append(plan.env_file)
    return written


def uninstall(unit_dir: Path) -> Path | None:
    """Remove the unit Slipway wrote; the environment file (the settings) stays."""
    unit = unit_dir / UNIT_NAME
    if not unit.exists():
        return None
    if MARK not in unit.read_text(errors="replace"):
        raise ServiceError(f"{unit} was not written by Slipway: left as it is")
    unit.unlink()
    return unit


def _write(path: Path, text: str, mode: int) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    partial.chmod(mode)
    os.replace(partial, path)


def _escape(value: str) -> str:
    """systemd expands %-specifiers in unit values: a literal % is %%."""
    if "\n" in value:
        raise ServiceError(f"{value!r}: a path with a line break cannot go in a unit")
    return value.replace("%", "%%")


def _quote(value: str) -> str:
    """One ExecStart argument, in systemd's double quotes ($ and % escaped too)."""
    escaped = _escape(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'
