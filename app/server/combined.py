"""The API and the worker in one process, on one event loop (`python -m app.cli combined`).

The single-host default (SLIPWAY_PROCESSES=combined). The API and the worker import nearly the
same ~1,650 modules (Litestar, SQLAlchemy, githubkit, arq, docker, ...): as two processes each
held its own ~110 MiB of them; one process holds them once (~125 MiB for both at rest, measured
in docs/benchmarks/scale.md). Neither blocks the other: handlers and jobs do their blocking work
in threads, so the loop only moves bytes.

The two stay one unit to the supervisor: if either ends (the API cannot bind its port, the
worker's loop fails), the other is stopped and the process exits non-zero, so the supervisor
restarts both with its backoff. SIGTERM or SIGINT stops both cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol

import uvicorn

from app.api import create_app
from app.api.application import server_options
from app.kernel.settings import Settings
from jobs.worker import make_worker

log = logging.getLogger(__name__)

EXIT_PART_ENDED = 1
"""Either part ended by itself: the supervisor restarts the process (and so both parts)."""


class Part(Protocol):
    """One of the two halves, as `run_together` drives it."""

    def run(self) -> Coroutine[Any, Any, None]: ...

    def stop(self) -> Awaitable[None] | None: ...


class QuietServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers: the process's are `run_together`'s
    (uvicorn's would replace them, then raise the signal again once it stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiPart:
    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server

    async def run(self) -> None:
        await self.server.serve()

    def stop(self) -> None:
        self.server.should_exit = True


class WorkerPart:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker: Any = None

    async def run(self) -> None:
        # arq's worker takes the running loop when made: made here, on the shared loop.
        self.worker = make_worker(self.settings, handle_signals=False)
        await self.worker.async_run()

    async def stop(self) -> None:
        if self.worker is not None:
            # Cancels its jobs and main task, then runs on_shutdown and closes its pool.
            await self.worker.close()


async def run_together(
    parts: dict[str, Part],
    *,
    on_signals: Callable[[Callable[[], None]], None],
) -> int:
    """Run every part until a signal (0) or until one of them ends by itself (1, the others
    stopped first). `on_signals` is given the function a SIGTERM or SIGINT should call."""
    stopping = asyncio.Event()
    on_signals(stopping.set)
    tasks: dict[asyncio.Future[Any], str] = {
        asyncio.ensure_future(part.run()): name for name, part in parts.items()
    }
    signalled: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    done, _ = await asyncio.wait([*tasks, signalled], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is signalled:
            continue
        code = EXIT_PART_ENDED
        failure = None if task.cancelled() else task.exception()
        log.error(
            "a part of the combined process ended; stopping the other",
            extra={"component": tasks[task], "error": repr(failure)[:500]},
            exc_info=failure,
        )
    signalled.cancel()
    for name, part in parts.items():
        try:
            stopped = part.stop()
            if stopped is not None:
                await stopped
        except Exception:
            log.warning("could not stop cleanly", extra={"component": name}, exc_info=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    return code


def api_server(app: Any, settings: Settings) -> QuietServer:
    """The API's uvicorn server: on stop, requests in flight get SHUTDOWN_GRACE_SECONDS, then
    what still runs (log follows) is cancelled."""
    return QuietServer(uvicorn.Config(app, **server_options(settings)))


def serve(settings: Settings) -> int:
    """`slipway combined`: the API and a worker until SIGTERM/SIGINT."""

    async def main() -> int:
        server = api_server(create_app(settings), settings)

        def on_signals(stop: Callable[[], None]) -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop)

        return await run_together(
            {"api": ApiPart(server), "worker": WorkerPart(settings)}, on_signals=on_signals
        )

    return asyncio.run(main())
