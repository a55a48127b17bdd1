"""Followed build logs, counted per caller: a token or a signed link holds a few at most.

A follow is a connection held open while a revision builds. Without a cap, one leaked link
(they are posted in pull-request comments) could open thousands and hold the API's sockets
and file handles; with it, the caller's next follow is refused (429) until one ends. Counted
in the API process that serves it: with SLIPWAY_API_WORKERS > 1, each process has its own.
"""

from __future__ import annotations

import threading
from collections import Counter


class LogFollows:
    def __init__(self, per_caller: int) -> None:
        self._per_caller = per_caller
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, caller: str) -> bool:
        """One more follow for `caller`, or False when it already holds its share."""
        with self._lock:
            if self._open[caller] >= self._per_caller:
                return False
            self._open[caller] += 1
            return True

    def give_back(self, caller: str) -> None:
        with self._lock:
            self._open[caller] -= 1
            if self._open[caller] <= 0:
                del self._open[caller]

    def held(self, caller: str) -> int:
        with self._lock:
            return self._open[caller]
