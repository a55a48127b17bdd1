"""The commands that run a platform: `up` runs all of it, `combined` the API and a worker in
one process, `api` and `worker` one part each (the processes `up` starts), `migrate` and `check`
prepare it.

No CLI library is imported here: `up` starts `python -m app.cli combined` (or `api` and
`worker`) children, and
app.cli's fast path runs them without loading the parser (its memory stays out of every
worker).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.kernel.logs import configure_logging
from manifests.errors import SlipwayError

if TYPE_CHECKING:
    from app.kernel.settings import Settings

SERVER_COMMANDS = ("up", "api", "worker", "combined", "migrate", "check")


def run_server(name: str) -> int:
    configure_logging(name)
    # Everything Slipway writes (control plane, logs, builds, keys) is its user's alone.
    os.umask(0o077)
    return _started(RUNNERS[name])


def _started(start: Callable[[Settings], int]) -> int:
    """Run a start-up on the settings; what stops it is said in one line, as an exit code
    (2: the settings are wrong, 1: something they name cannot be started), not a traceback."""
    # Imported here: the client commands, which load this module for the help's server
    # commands, start without the settings' imports (pydantic-settings, the LangGraph CLI's
    # config: ~0.7 s of CPU for each `slipway deployments list`).
    from app.kernel.settings import SettingsError, load_settings
    from app.server.embedded import EmbeddedServiceError

    try:
        return start(load_settings())
    except SettingsError as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return 2
    except (SlipwayError, EmbeddedServiceError) as exc:
        print(f"slipway: cannot start: {exc}", file=sys.stderr)
        return 1


def _check(settings: Settings) -> int:
    print("settings are valid")
    if not settings.github_app_in_env:
        print(
            "no GitHub App in the environment: the one made at "
            f"{settings.api_url}/setup is used (open it after `make up` if there is none)"
        )
    return 0


def _migrate(settings: Settings) -> int:
    from app.bootstrap import open_database

    open_database(settings)
    return 0


def _up(settings: Settings) -> int:
    from app.server.supervisor import up

    return up()


def run_prepare(options: list[str]) -> int:
    """`python -m app.cli prepare [--routes]`: `slipway up`'s start-up work, in a child that
    exits once done, so the supervisor never holds what it imports (internal: not in the help)."""
    if any(option != "--routes" for option in options):
        print(f"slipway prepare: unknown option in {options}", file=sys.stderr)
        return 2
    configure_logging("prepare")
    os.umask(0o077)
    from app.server.prepare import run

    return _started(lambda settings: run(settings, routes_only="--routes" in options))


def _api(settings: Settings) -> int:
    import uvicorn

    from app.api import create_app
    from app.api.application import server_options

    if settings.api_workers > 1:
        # The receiver is CPU-bound (signature, JSON, a write): a burst of deliveries is
        # answered by several processes at once.
        uvicorn.run(
            "app.api.factory:make_app",
            factory=True,
            workers=settings.api_workers,
            **server_options(settings),
        )
    else:
        uvicorn.run(
            create_app(settings),
            **server_options(settings),
        )
    return 0


def _worker(settings: Settings) -> int:
    from jobs.worker import make_worker

    make_worker(settings).run()
    return 0


def _combined(settings: Settings) -> int:
    from app.server.combined import serve

    return serve(settings)


RUNNERS: dict[str, Callable[[Settings], int]] = {
    "up": _up,
    "api": _api,
    "worker": _worker,
    "combined": _combined,
    "migrate": _migrate,
    "check": _check,
}


# What the help shows: one function per command, its docstring the help.
def up() -> int:
    """Start the whole platform in the foreground (Ctrl-C stops it).

    API, worker and router, with an embedded Postgres and Valkey unless
    DATABASE_URL and REDIS_URL name others."""
    return run_server("up")


def api() -> int:
    """Serve the webhook receiver and the API (started by `up`)."""
    return run_server("api")


def worker() -> int:
    """Run a worker: builds, deploys, jobs (started by `up`)."""
    return run_server("worker")


def combined() -> int:
    """Run the API and a worker in one process (started by `up` unless PROCESSES=split)."""
    return run_server("combined")


def migrate() -> int:
    """Apply the control plane's database migrations and exit."""
    return run_server("migrate")


def check() -> int:
    """Validate the settings (environment and .env) and exit."""
    return run_server("check")
