"""The `slipway` command. `main` is the console script's entry point.

The platform's own processes (`slipway up` starts `python -m app.cli combined`, or `... api`
and `... worker`, and `... prepare` for its start-up work) take the fast path: a bare server
command runs without the CLI library or rich in memory, and `up` without settings or adapters
either.
Everything else goes through the command tree in app.cli.root.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["up"]:
            # The supervisor lives as long as the platform: it imports only what watching
            # needs (no settings, no adapters); its start-up work runs in `prepare` children.
            from app.kernel.logs import configure_logging
            from app.server.supervisor import up

            configure_logging("up")
            return up()
        from app.cli.server import SERVER_COMMANDS, run_prepare, run_server

        if args[:1] == ["prepare"]:
            return run_prepare(args[1:])

        if len(args) == 1 and args[0] in SERVER_COMMANDS:
            without_httpx_command_line()
            return run_server(args[0])
        from app.cli.root import run

        return run(args)
    except KeyboardInterrupt:
        # Ctrl-C: the shell's code for it, and no traceback (also while a command waits).
        return EXIT_INTERRUPTED


def without_httpx_command_line() -> None:
    """httpx imports its own command-line client when it is imported and rich, pygments and
    click are installed (they are: this CLI uses rich), ~4 MiB that the platform's long-lived
    processes never use. A None in sys.modules makes that one import fail, and httpx falls back
    to leaving its `main` out, as it does when they are missing."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
