"""The supervisor reclaims a part's cold pages once per process, after it has run a while."""

from __future__ import annotations

from dataclasses import dataclass

from app.server.cold_pages import ColdPages, ColdPagesUnavailable, file_ranges

MAPS = """\
00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/caddy
00651000-00652000 rw-p 00051000 08:02 173521      /usr/bin/caddy
00e03000-00e24000 rw-p 00000000 00:00 0           [heap]
7f1c4c000000-7f1c4c021000 rw-p 00000000 00:00 0
7f1c50000000-7f1c50001000 rw-s 00000000 00:05 1024  /dev/zero (deleted)
7f1c51000000-7f1c51002000 r--p 00000000 08:02 99    /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c52000000-7f1c52001000 r--p 00000000 08:02 98    /tmp/gone.so (deleted)
7ffd1a6f0000-7ffd1a711000 rw-p 00000000 00:00 0     [stack]
"""


def test_only_mappings_of_files_that_still_exist_are_reclaimed() -> None:
    assert file_ranges(MAPS) == [
        (0x400000, 0x452000),
        (0x651000, 0x652000),
        (0x7F1C51000000, 0x7F1C51002000),
    ]


@dataclass
class Router:
    pid: int | None = 100
    now: float = 0.0
    reclaimed: list[int] | None = None
    refuse: bool = False

    def reclaim(self, pid: int) -> int:
        if self.refuse:
            raise ColdPagesUnavailable("Operation not permitted")
        assert self.reclaimed is not None
        self.reclaimed.append(pid)
        return 4096

    def cold_pages(self, after: float = 30.0) -> ColdPages:
        self.reclaimed = []
        return ColdPages(
            "router", lambda: self.pid, after, reclaim=self.reclaim, clock=lambda: self.now
        )


def test_a_process_is_reclaimed_once_after_it_ran_the_delay_and_again_after_a_restart() -> None:
    router = Router()
    cold = router.cold_pages(after=30.0)
    cold.tend()
    router.now = 29.0
    cold.tend()
    assert router.reclaimed == []
    router.now = 30.0
    cold.tend()
    router.now = 300.0
    cold.tend()
    assert router.reclaimed == [100]
    router.pid, router.now = 101, 310.0  # restarted: its own start's pages, its own delay
    cold.tend()
    router.now = 339.0
    cold.tend()
    assert router.reclaimed == [100]
    router.now = 340.0
    cold.tend()
    assert router.reclaimed == [100, 101]


def test_nothing_is_asked_while_the_part_is_down_or_when_turned_off() -> None:
    router = Router(pid=None)
    cold = router.cold_pages()
    for router.now in (0.0, 100.0, 1000.0):
        cold.tend()
    off = Router()
    cold_off = off.cold_pages(after=0.0)
    for off.now in (0.0, 100.0, 1000.0):
        cold_off.tend()
    assert router.reclaimed == [] and off.reclaimed == []


def test_a_kernel_that_refuses_is_not_asked_again() -> None:
    router = Router(refuse=True)
    cold = router.cold_pages(after=1.0)
    cold.tend()
    router.now = 2.0
    cold.tend()  # refused: logged once
    router.refuse = False
    router.pid, router.now = 101, 3.0
    cold.tend()
    router.now = 10.0
    cold.tend()
    assert router.reclaimed == []
