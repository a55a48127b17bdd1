"""What one revision's run costs the control plane: sessions opened, and how often the revision
row is read. Before the pipeline was split into phases a second revision's run opened 37
sessions and read the revision 12 times; the phases read it once when the run starts and once
under the route switch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from app.kernel.db import SessionFactory
from app.kernel.models import Revision, RevisionState
from tests.support.fake_github import FakeGitHub
from tests.unit.world import world_platform


@dataclass
class Counts:
    on: bool = False
    sessions: int = 0
    revision_reads: int = 0
    revision_ids: set[str] = field(default_factory=set)


class CountingSessions(SessionFactory):
    """The same engine, counting the sessions handed out and the Revision rows read by id
    (the heartbeat's thread left out: how often it beats depends on how long a run takes)."""

    def __init__(self, inner: SessionFactory) -> None:
        self.engine = inner.engine
        self._autocommit = inner._autocommit
        self.counts = Counts()

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        counts = self.counts
        counting = counts.on and not threading.current_thread().name.startswith("heartbeat")
        counts.sessions += counting
        with Session(self.engine, expire_on_commit=False) as session:
            get = session.get

            def counted_get(entity: Any, ident: Any, *args: Any, **kwargs: Any) -> Any:
                if counting and entity is Revision:
                    counts.revision_reads += 1
                    counts.revision_ids.add(str(ident))
                return get(entity, ident, *args, **kwargs)

            session.get = counted_get  # type: ignore[method-assign]
            yield session


def test_a_run_reads_its_revision_once_per_phase_not_per_step(
    sessions: SessionFactory, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    counting = CountingSessions(sessions)
    platform = world_platform(counting, fake_github, tmp_path)
    platform.reports.use_queue(lambda revision_id: None)  # sent by their own job, as in a worker
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    second = platform.push()

    counting.counts.on = True
    assert platform.pipeline.run(second) is RevisionState.live
    counting.counts.on = False

    # Read when the run starts, and under the route lock (with the live revision it replaces).
    assert counting.counts.revision_reads == 3
    assert counting.counts.revision_ids == {first, second}
    assert counting.counts.sessions <= 30, counting.counts
