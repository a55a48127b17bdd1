"""The event follower on its own: what it does when the runtime's stream will not stay open."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from app.kernel.ports import ContainerRuntime, ReplicaEvents
from app.replicas.engine_events import EngineEventFollower
from tests.support.platform import wait_for


class DroppingRuntime:
    """Its event stream opens, then ends at once, every time (an engine refusing it)."""

    def __init__(self) -> None:
        self.opened = 0

    def replica_events(self) -> ReplicaEvents:
        self.opened += 1
        return ReplicaEvents(events=iter(()), close=lambda: None)


def test_a_stream_that_drops_as_soon_as_it_opens_is_not_reopened_in_a_spin() -> None:
    runtime = DroppingRuntime()
    resyncs: list[float] = []
    follower = EngineEventFollower(
        cast(ContainerRuntime, cast(Any, runtime)),
        on_event=lambda _deployment_id: None,
        on_resync=lambda: resyncs.append(time.monotonic()),
        first_retry_seconds=0.05,
        max_retry_seconds=0.2,
    )
    follower.start()
    try:
        wait_for("a few reopenings", lambda: len(resyncs) >= 4, timeout=5, every=0.01)
        time.sleep(0.5)  # the window measured, not a wait for an outcome
    finally:
        follower.stop()

    # Backing off 0.05, 0.1, 0.2, 0.2 ... s: a handful in the window, not thousands.
    assert 4 <= runtime.opened <= 12, runtime.opened
    assert not [t for t in threading.enumerate() if t.name == "engine-events"]
