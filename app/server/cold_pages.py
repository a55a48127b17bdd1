"""Cold pages: give back the memory a part touched only while it started.

The router is one ~50 MB static Go binary. Starting it touches ~38 MiB of that file (every
module's registration, the runtime's tables), of which ~25 MiB stay in use at rest. The
kernel drops the other pages only under memory pressure; until then they are resident and
count as the router's memory: ~23 MiB of the ~205 MiB PSS the whole platform held with one
deployment (issue 22, docs/benchmarks/scale.md).

So once the router has run a while, the supervisor asks the kernel to reclaim the router's
file-backed pages (`process_madvise(MADV_PAGEOUT)`, Linux 5.10+; the proactive reclaim that
Android applies to background apps and Meta's TMO to cold memory). A page still in use comes
back at its next touch, from the page cache or the disk, so what stays resident is the working
set. The kernel leaves alone pages another process also maps (a second Caddy of the same
binary), and anonymous memory is never asked for (without swap it could go nowhere).

It needs CAP_SYS_NICE (root has it). Without it, or on an older kernel, nothing is reclaimed
and one line says why.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21
SYS_PROCESS_MADVISE = 440
"""process_madvise's number: the same on every architecture (new calls share one table)."""
UNAVAILABLE = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES})
"""The kernel has no process_madvise, or this user may not advise another process."""


class ColdPagesUnavailable(Exception):
    """This kernel, or this user, cannot reclaim another process's pages."""


def file_ranges(maps: str) -> list[tuple[int, int]]:
    """The address ranges of the file mappings in a /proc/<pid>/maps text: the executable and
    the libraries, not anonymous memory, the heap or the stack, devices, or deleted files."""
    ranges: list[tuple[int, int]] = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue
        path = fields[5]
        if not path.startswith("/") or path.startswith("/dev/") or path.endswith("(deleted)"):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        ranges.append((start, end))
    return ranges


def pss_kib(pid: int) -> int | None:
    """The process's proportional set size, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def reclaim_file_pages(pid: int) -> int:
    """Ask the kernel to reclaim `pid`'s file-backed pages; the bytes of mappings advised.

    Raises ColdPagesUnavailable when the kernel or the user's rights do not allow it."""
    import ctypes  # here: a supervisor whose parts never get this far does not load it

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, FileNotFoundError):
        return 0  # it ended meanwhile: a restarted part gets its own turn
    advised = 0
    try:
        for start, end in file_ranges(maps):
            vector = IoVec(start, end - start)
            done = libc.syscall(
                SYS_PROCESS_MADVISE, pidfd, ctypes.byref(vector), 1, MADV_PAGEOUT, 0
            )
            if done >= 0:
                advised += done
                continue
            error = ctypes.get_errno()
            if error in UNAVAILABLE:
                raise ColdPagesUnavailable(os.strerror(error))
            # EINVAL: a mapping the kernel will not page out (locked, special); ESRCH: ended.
    finally:
        os.close(pidfd)
    return advised


@dataclass
class ColdPages:
    """Reclaims one part's cold pages once its process has run `after_seconds`, and again
    for each new process after a restart. `after_seconds` 0 turns it off."""

    name: str
    pid: Callable[[], int | None]
    after_seconds: float
    reclaim: Callable[[int], int] = reclaim_file_pages
    clock: Callable[[], float] = time.monotonic
    _seen: int | None = None
    _seen_at: float = 0.0
    _done: int | None = None
    _unavailable: bool = False

    def tend(self) -> None:
        """Called on every supervisor tick; never raises."""
        if self._unavailable or self.after_seconds <= 0:
            return
        pid = self.pid()
        if pid is None or pid == self._done:
            return
        now = self.clock()
        if pid != self._seen:
            self._seen, self._seen_at = pid, now
            return
        if now - self._seen_at < self.after_seconds:
            return
        self._done = pid
        before = pss_kib(pid)
        try:
            self.reclaim(pid)
        except ColdPagesUnavailable as exc:
            self._unavailable = True
            log.info(
                "cold pages stay resident: the kernel refused to reclaim them",
                extra={"component": self.name, "reason": str(exc)},
            )
            return
        except OSError as exc:
            log.warning(
                "could not reclaim cold pages", extra={"component": self.name, "error": str(exc)}
            )
            return
        log.info(
            "reclaimed the pages only its start used",
            extra={"component": self.name, "pss_kib_before": before, "pss_kib_after": pss_kib(pid)},
        )
