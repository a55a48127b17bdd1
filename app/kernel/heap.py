"""The long-lived part of a process's heap, taken out of the garbage collector's full passes.

A full (generation 2) collection walks every tracked object. Once the API or the worker has
started, most of those are the modules, classes and settings of Litestar, SQLAlchemy, githubkit
and arq, which live as long as the process: walking them took 120-140 ms per full collection,
and the API answered nothing meanwhile, so a burst of webhooks saw its p99 jump from ~30 to
~150 ms in about one round in five (`bench/webhook_burst.py`). Freezing them after start leaves
each full pass only the objects made since.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_objects(role: str) -> int:
    """Collect what start-up left behind, then move every surviving object to the permanent
    generation; returns how many were frozen. Call once, when the process is ready to serve."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("startup objects frozen", extra={"role": role, "objects": frozen})
    return frozen
