"""The `slipway` command: `up` runs the whole platform, `api` and `worker` one part of it;
the others use a running platform through its API (`slipway login` first)."""

from __future__ import annotations

import argparse
import os
import sys

from app.kernel.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["up"]:
        # The supervisor lives as long as the platform: it imports only what watching needs
        # (no settings, no adapters); its start-up work runs in `slipway prepare`.
        from app.server.supervisor import up

        configure_logging("up")
        return up()
    return _main(argv)


def _main(argv: list[str] | None) -> int:
    from app.commands import COMMANDS, add_commands, run_command
    from app.kernel.settings import SettingsError, load_settings
    from app.server.embedded import EmbeddedServiceError
    from manifests.errors import SlipwayError

    parser = argparse.ArgumentParser(prog="slipway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole platform in the foreground")
    sub.add_parser("api", help="serve the webhook receiver and the API")
    sub.add_parser("worker", help="run an arq worker (builds and deploys)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser("check", help="validate the settings and exit")
    prepare_parser = sub.add_parser(
        "prepare", help="`slipway up`'s start-up work: its plan as JSON on stdout (internal)"
    )
    prepare_parser.add_argument(
        "--routes", action="store_true", help="load the current routes into the router"
    )
    add_commands(sub)
    args = parser.parse_args(argv)
    if args.command in COMMANDS:
        # Using a platform, from anywhere: no settings, no logging set-up, only the API.
        return run_command(args)
    configure_logging(args.command)
    # Everything Slipway writes (control plane, logs, builds, keys) is its user's alone.
    os.umask(0o077)
    try:
        settings = load_settings()
        if args.command == "check":
            print("settings are valid")
            if not settings.github_app_in_env:
                print(
                    "no GitHub App in the environment: the one made at "
                    f"{settings.api_url}/setup is used (open it after `make up` if there is none)"
                )
            return 0
        if args.command == "migrate":
            from app.bootstrap import open_database

            open_database(settings)
            return 0
        if args.command == "prepare":
            from app.server.prepare import run as prepare

            return prepare(settings, routes_only=args.routes)
        if args.command == "up":
            from app.server.supervisor import up

            return up()
        if args.command == "api":
            import uvicorn

            from app.api import create_app

            if settings.api_workers > 1:
                # The receiver is CPU-bound (signature, JSON, a write): a burst of deliveries
                # is answered by several processes at once.
                uvicorn.run(
                    "app.api.factory:make_app",
                    factory=True,
                    workers=settings.api_workers,
                    host=settings.host,
                    port=settings.port,
                    log_level="warning",
                    access_log=False,
                )
            else:
                uvicorn.run(
                    create_app(settings),
                    host=settings.host,
                    port=settings.port,
                    log_level="warning",
                    access_log=False,
                )
            return 0
        if args.command == "worker":
            from jobs.worker import make_worker

            make_worker(settings).run()
            return 0
    except SettingsError as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return 2
    except (SlipwayError, EmbeddedServiceError) as exc:
        print(f"slipway: cannot start: {exc}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
