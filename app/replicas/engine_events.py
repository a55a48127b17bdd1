"""The runtime's events drive the reconciler: a replica's container dying, being killed by the
OOM killer, starting, going or changing health marks its deployment for the next tick.

The reconciler no longer lists every container and converges every deployment each tick (a
cost that grew with deployments doing nothing); it looks at the deployments something happened
to. Events can be lost (the engine's stream dropped, the worker was busy starting), so every
(re)connection asks for a full resync, and the reconciler does one every
SLIPWAY_RECONCILE_RESYNC_SECONDS anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.kernel.ports import ContainerRuntime, ReplicaEvents
from manifests.errors import SlipwayError

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
"""A stream that cannot be opened (the engine restarting) is tried again 0.5, 1, 2 ... s later,
at most 30 s apart; one that was open is reopened at once."""
STEADY_SECONDS = 5.0
"""A stream that lasted less than this before it dropped counts as one that could not be
opened: the next try waits as above."""


class EngineEventFollower:
    """Follows the runtime's replica events in a thread of its own until `stop`.

    `on_event(deployment_id)` for each event; `on_resync()` each time the stream is (re)opened,
    once it is open, so nothing between the lost stream and the new one goes unseen.
    """

    def __init__(
        self,
        runtime: ContainerRuntime,
        on_event: Callable[[str], None],
        on_resync: Callable[[], None],
        *,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
    ) -> None:
        self._runtime = runtime
        self._on_event = on_event
        self._on_resync = on_resync
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._stopping = threading.Event()
        self._feed: ReplicaEvents | None = None
        self._feed_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="engine-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._feed_lock:
            feed = self._feed
        if feed is not None:
            feed.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        retry = self._first_retry
        while not self._stopping.is_set():
            try:
                feed = self._runtime.replica_events()
            except SlipwayError as exc:
                log.warning(
                    "runtime events not followed; trying again",
                    extra={"error": str(exc), "seconds": retry},
                )
                self._stopping.wait(retry)
                retry = min(self._max_retry, retry * 2)
                continue
            with self._feed_lock:
                self._feed = feed
            if self._stopping.is_set():
                feed.close()
                break
            self._on_resync()
            opened = time.monotonic()
            self._follow(feed)
            with self._feed_lock:
                self._feed = None
            if self._stopping.is_set():
                break
            log.warning("runtime events stream dropped; reopening it and resyncing")
            if time.monotonic() - opened < STEADY_SECONDS:
                # Dropped as soon as opened (an engine refusing the stream): not at once again,
                # or the worker would spin on resyncs.
                self._stopping.wait(retry)
                retry = min(self._max_retry, retry * 2)
            else:
                retry = self._first_retry

    def _follow(self, feed: ReplicaEvents) -> None:
        try:
            for event in feed.events:
                self._on_event(event.deployment_id)
        except SlipwayError as exc:
            log.warning("runtime events stream failed", extra={"error": str(exc)})
        except Exception:  # never let the thread die: the reconciler would go blind
            log.exception("runtime events stream failed")
        finally:
            feed.close()
