"""The start-up heap is out of the collector's full passes, and what is made later is not."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.kernel.heap import freeze_startup_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("unfrozen")
def test_what_lives_at_start_is_frozen_and_later_garbage_is_still_collected() -> None:
    startup = Node()
    frozen = freeze_startup_objects("test")

    assert frozen > 1000 and gc.get_freeze_count() > 1000  # a frozen object may still be freed
    assert not any(o is startup for o in gc.get_objects())  # no full pass walks it now
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector can free
    del a, b
    assert gc.collect() >= 2
