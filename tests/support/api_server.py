"""Slipway's API (a Litestar app) served by uvicorn in a thread, for tests that call it over
HTTP without a whole platform."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from app.server.embedded import free_port

START_SECONDS = 30.0
GRACE_SECONDS = 1
"""What requests in flight get once a test's block ends, then they are cancelled: a browser
page left open on a log follow held the end of each block until the join gave up (15 s)."""


@contextmanager
def serve_api(app: Any, port: int | None = None) -> Iterator[str]:
    """The app on `port` (default: a free one) of 127.0.0.1 while the block runs; yields its
    base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=GRACE_SECONDS + 10)
