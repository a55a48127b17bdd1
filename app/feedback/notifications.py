"""What the pipeline tells the rest of the platform as it goes, without waiting on it.

The worker points `capacity_freed` at the queue (dispatch waiting revisions) and the comments
at the queue too, so neither GitHub nor another build is ever on a revision's own path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.feedback.comments import PreviewComments

log = logging.getLogger(__name__)


class PlatformNotifier:
    def __init__(self, comments: PreviewComments) -> None:
        self._comments = comments
        self._on_capacity: Callable[[], None] = lambda: None

    def use_dispatcher(self, on_capacity: Callable[[], None]) -> None:
        self._on_capacity = on_capacity

    def deployment_changed(self, deployment_id: str) -> None:
        """Best effort: a comment that cannot be queued now is written by the next change."""
        try:
            self._comments.deployment_changed(deployment_id)
        except Exception:
            log.warning(
                "comment update not queued", extra={"deployment_id": deployment_id}, exc_info=True
            )

    def capacity_freed(self) -> None:
        """Best effort: the periodic dispatch starts what a lost wake-up left waiting."""
        try:
            self._on_capacity()
        except Exception:
            log.warning("dispatch not queued", exc_info=True)
