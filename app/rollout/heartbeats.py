"""A running revision's heartbeat: the sign of life recovery (app/rollout/recovery.py) looks for.

A beat that cannot be written (the control plane's database restarting, a lock held too long)
is logged and tried again at the next beat: the thread never dies of it, so the heartbeat
resumes as soon as the database is back. An outage longer than SLIPWAY_RECOVERY_SECONDS ends
the normal way: recovery fails the revision, and the beat, which only touches a building or
starting revision, stops finding it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import update
from sqlmodel import col

from app.kernel.db import SessionFactory
from app.kernel.models import Revision, RevisionState
from app.kernel.ports import Clock

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
"""How often a running revision's job says it is alive; recovery waits far longer."""
BEATING = (RevisionState.building, RevisionState.deploying)


def beat_once(sessions: SessionFactory, revision_id: str, clock: Clock) -> None:
    with sessions() as session:
        session.execute(
            update(Revision)
            .where(col(Revision.id) == revision_id, col(Revision.state).in_(BEATING))
            .values(heartbeat_at=clock())
        )
        session.commit()


@contextmanager
def heartbeat(
    sessions: SessionFactory,
    revision_id: str,
    clock: Clock,
    every: float = HEARTBEAT_SECONDS,
) -> Iterator[None]:
    """Beat every `every` seconds in a thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        missed = 0
        while True:
            try:
                beat_once(sessions, revision_id, clock)
            except Exception as exc:  # the next beat tries again; never end the thread
                missed += 1
                if missed == 1:
                    log.warning(
                        "heartbeat not written; trying again at the next beat",
                        extra={"revision_id": revision_id, "error": repr(exc)[:300]},
                    )
            else:
                if missed:
                    log.info(
                        "heartbeat written again",
                        extra={"revision_id": revision_id, "beats_missed": missed},
                    )
                missed = 0
            if stop.wait(every):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{revision_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every)
