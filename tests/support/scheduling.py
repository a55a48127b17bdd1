"""How a tier's modules share pytest-xdist workers (`make integration` and `make e2e` run
`pytest -n $(TEST_WORKERS) --dist loadfile`, three by default).

As with xdist's own `loadfile`, a module is one unit of work, run by one worker (its
module-scoped fixtures, an embedded Postgres or a platform, are made once). Two things are added,
by a scheduler of our own (xdist's `pytest_xdist_make_scheduler` hook, from each tier's conftest):

- modules that must not run beside each other form one unit (a tier's `together`), run one
  after the other by one worker. (xdist's `loadgroup` would say this with marks, but with
  pytest 9 its renaming of the tests' ids has no effect, and every test became a unit of its own.)
- units are handed out longest first, by each module's measured seconds (a tier's `seconds`), so
  the workers finish at about the same time; a module not in the table is counted as short
  and goes last.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

ROOT = Path(__file__).resolve().parents[2]
"""The repository: pytest's rootdir, which test ids are relative to."""

_UNITS: dict[str, str] = {}
"""Test file (as in a test id) → the unit it belongs to, when that is not the file alone."""
_SECONDS: dict[str, float] = {}
"""Test file → its seconds on one worker."""


def register(tier: Path, together: Mapping[str, str], seconds: Mapping[str, float]) -> None:
    """A tier's tables, keyed by file name within `tier` (its conftest's folder)."""
    prefix = tier.resolve().relative_to(ROOT).as_posix()
    _UNITS.update({f"{prefix}/{name}": f"{prefix}: {unit}" for name, unit in together.items()})
    _SECONDS.update({f"{prefix}/{name}": taken for name, taken in seconds.items()})


class TierScheduling(LoadFileScheduling):
    """`loadfile`, with the registered units and longest-first order."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._longest_first = False

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return _UNITS.get(path, path)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._longest_first:  # the first hand-out: the queue is complete
            self._longest_first = True

            def seconds(unit: dict[str, bool]) -> float:
                files = {nodeid.split("::", 1)[0] for nodeid in unit}
                return sum(_SECONDS.get(path, 0.0) for path in files)

            queued = sorted(self.workqueue.items(), key=lambda entry: -seconds(entry[1]))
            self.workqueue = OrderedDict(queued)
        super()._assign_work_unit(node)


def make_scheduler(config: pytest.Config, log: Producer) -> TierScheduling | None:
    """The scheduler for `--dist loadfile`; xdist's own for any other mode."""
    if config.getvalue("dist") != "loadfile":
        return None
    return TierScheduling(config, log)
