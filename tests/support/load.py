"""Real load from Debian's `hey`, sent to the router on 127.0.0.1 with a deployment's Host.

Always bounded: a duration (`-z`) and, when asked, a rate; `hey` itself stops after it, and the
wait for it has a deadline of its own.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

STATUS_LINE = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.MULTILINE)
ERROR_LINE = re.compile(r"^\s*\[(\d+)\]\s+(.+)$", re.MULTILINE)
LATENCY_LINE = re.compile(r"^\s*(\d+)% in ([0-9.]+) secs", re.MULTILINE)
MAX_SECONDS = 120


@dataclass
class Load:
    process: subprocess.Popen[str]
    seconds: float
    output: str = ""
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    """Requests that got no HTTP answer at all (reset, refused, timed out), by message."""
    latency: dict[int, float] = field(default_factory=dict)
    """hey's latency distribution: percentile -> seconds (10, 25, 50, 75, 90, 95, 99)."""

    def wait(self) -> Load:
        self.output, _ = self.process.communicate(timeout=self.seconds + 60)
        self.statuses = {int(code): int(n) for code, n in STATUS_LINE.findall(self.output)}
        self.latency = {int(p): float(s) for p, s in LATENCY_LINE.findall(self.output)}
        if "Error distribution:" in self.output:
            tail = self.output.split("Error distribution:", 1)[1]
            self.errors = {message.strip(): int(n) for n, message in ERROR_LINE.findall(tail)}
        return self

    def stop(self) -> Load:
        """End the load now (before its duration is over) and collect what it saw: hey
        answers an interrupt by sending no more and reporting what it sent."""
        self.process.send_signal(signal.SIGINT)
        return self.wait()

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx answer."""
        bad = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return bad + sum(self.errors.values())

    def summary(self) -> str:
        return f"{self.requests} requests, {self.failed} failed: {self.statuses} {self.errors}"


def start_load(
    router_port: int,
    host: str,
    path: str = "/",
    *,
    seconds: float,
    concurrency: int,
    rate_per_worker: float | None = None,
    address: str = "127.0.0.1",
) -> Load:
    """Start `hey` in the background for `seconds`; `.wait()` collects what it saw.

    `address` is loopback (the router, a published port) or a container this run started."""
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"a load runs between 0 and {MAX_SECONDS} s, not {seconds}")
    binary = shutil.which("hey")
    assert binary, "hey is missing: `make test` installs it (scripts/ensure-test-tools.sh)"
    argv = [binary, "-z", f"{seconds:g}s", "-c", str(concurrency), "-t", "10", "-host", host]
    if rate_per_worker is not None:
        argv += ["-q", f"{rate_per_worker:g}"]
    argv.append(f"http://{address}:{router_port}{path}")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Load(process=process, seconds=seconds)
