"""How `make integration` and `make e2e` hand their modules to two workers
(tests/support/scheduling.py): modules that must not meet go to one worker together, and the
longest units go first."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.support import scheduling

TIER = scheduling.ROOT / "tests" / "a_tier_of_this_test"
PREFIX = "tests/a_tier_of_this_test"


class Worker:
    """Stands in for xdist's WorkerController: what it was asked to run."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[list[int]] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.append(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_modules_that_must_not_meet_are_one_unit_and_the_longest_units_go_first() -> None:
    scheduling.register(
        TIER,
        together={"test_makes_networks.py": "networks", "test_probes_networks.py": "networks"},
        seconds={
            "test_makes_networks.py": 20,
            "test_probes_networks.py": 25,
            "test_long.py": 60,
            "test_short.py": 5,
        },
    )
    collection = [
        f"{PREFIX}/test_makes_networks.py::test_one",
        f"{PREFIX}/test_new.py::test_not_in_the_table",
        f"{PREFIX}/test_probes_networks.py::test_one",
        f"{PREFIX}/test_long.py::test_one",
        f"{PREFIX}/test_long.py::test_two",
        f"{PREFIX}/test_short.py::test_one",
    ]
    config = SimpleNamespace(
        getvalue=lambda name: {"tx": ["2*popen"], "dist": "loadfile"}[name],
        option=SimpleNamespace(loadscopereorder=True),
    )
    scheduler = scheduling.make_scheduler(cast(pytest.Config, config), cast(Any, None))
    assert scheduler is not None
    first, second = Worker("gw0"), Worker("gw1")
    for worker in (first, second):
        scheduler.add_node(cast(Any, worker))
        scheduler.add_node_collection(cast(Any, worker), collection)

    scheduler.schedule()

    # test_long.py (60 s) first, both network modules (45 s) on one worker, then the short
    # one (xdist queues a next unit on a worker with two tests or fewer left), the unknown last.
    assert [first.sent[0], second.sent[0]] == [[3, 4], [0, 2]]
    assert first.sent[1:] + second.sent[1:] == [[5], [1]]


def test_other_modes_keep_xdists_own_scheduler() -> None:
    config = SimpleNamespace(getvalue=lambda name: {"dist": "load"}[name])
    assert scheduling.make_scheduler(cast(pytest.Config, config), cast(Any, None)) is None
