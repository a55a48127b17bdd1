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


DATE_STEP_SECONDS = 1.0
"""The Date header's resolution: the server wakes this often at rest."""


class QuietServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers: the process's are `run_together`'s
    (uvicorn's would replace them, then raise the signal again once it stopped).

    Nor its 0.1 s tick: uvicorn's main loop wakes ten times a second to see whether it should
    stop, and dates its answers anew every tenth wake. This one wakes once a second for the
    date, and at once when asked to stop (`request_stop`)."""

    _stop_requested: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_stop(self) -> None:
        self.should_exit = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def main_loop(self) -> None:
        self._stop_requested = asyncio.Event()
        if self.should_exit:  # asked before the loop began
            self._stop_requested.set()
        ticks = 0
        # uvicorn's on_tick dates the answers when its counter is a multiple of ten.
        while not await self.on_tick(ticks):
            ticks += 10
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), DATE_STEP_SECONDS)


class ApiPart:
    def __init__(self, server: QuietServer) -> None:
        self.server = server

    async def run(self) -> None:
        await self.server.serve()

    def stop(self) -> None:
        self.server.request_stop()


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
