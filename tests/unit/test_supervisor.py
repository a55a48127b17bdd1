"""`slipway up` restarts whatever dies, with a backoff, and never gives up on a part."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from app.server.embedded._caddy import _admin_get_status
from app.server.supervisor import MAX_RETRY_SECONDS, STABLE_SECONDS, Backoff, Supervised


@dataclass
class FlakyPart:
    """A part that is down until started, and whose starts fail `failing_starts` times."""

    failing_starts: int = 0
    running: bool = True
    starts: list[bool] = field(default_factory=list)

    def alive(self) -> bool:
        return self.running

    def start(self) -> None:
        if self.failing_starts:
            self.failing_starts -= 1
            self.starts.append(False)
            raise RuntimeError("address in use")
        self.starts.append(True)
        self.running = True


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_part_that_dies_once_is_restarted_at_once() -> None:
    part = FlakyPart()
    supervised = Supervised("redis", part.alive, part.start, clock=Clock())
    supervised.tend()
    assert part.starts == []
    part.running = False
    supervised.tend()
    assert part.starts == [True] and not supervised.down


def test_a_crash_looping_part_is_retried_ever_more_slowly_and_never_given_up_on() -> None:
    part = FlakyPart(failing_starts=1000)
    clock = Clock()
    supervised = Supervised("worker", part.alive, part.start, clock=clock)
    part.running = False
    waits: list[float] = []
    last_try = clock.now
    for _ in range(4000):  # 2000 s of the supervisor's half-second ticks
        tries = len(part.starts)
        supervised.tend()
        if len(part.starts) > tries:
            waits.append(clock.now - last_try)
            last_try = clock.now
        clock.now += 0.5
    assert len(part.starts) > 30  # still trying after half an hour
    assert max(waits) <= MAX_RETRY_SECONDS + 0.5
    assert waits[-1] >= MAX_RETRY_SECONDS - 0.5  # capped, not hammering
    assert waits[1] < waits[3] < waits[5]  # the wait grows


def test_a_part_that_ran_long_enough_is_forgiven_its_past_deaths() -> None:
    backoff = Backoff()
    for moment in (0.0, 1.0, 2.0, 3.0):
        backoff.died(moment)
    assert backoff.died(4.0) > 1.0
    backoff.started(5.0)
    assert backoff.died(5.0 + STABLE_SECONDS) == 0.0


HEAVY = ("pydantic", "sqlalchemy", "sqlmodel", "httpx", "litestar", "docker", "arq", "valkey")
"""What the API and the worker need and the supervisor, which lives as long as they do, must
not carry: each costs it megabytes for as long as the platform runs."""


def test_the_supervisor_imports_nothing_heavy() -> None:
    probe = (
        "import sys, app.cli, app.server.supervisor\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(result.stdout.split())
    assert "app" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_caddy_is_ready_when_its_admin_socket_answers_200(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    answers = iter([b"HTTP/1.1 503 Service Unavailable\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(2)

        def answer() -> None:
            for status in answers:
                connection, _ = server.accept()
                with connection:
                    assert connection.recv(1024).startswith(b"GET /config/ HTTP/1.1\r\n")
                    connection.sendall(status)

        thread = threading.Thread(target=answer)
        thread.start()
        assert _admin_get_status(path, "/config/") == 503
        assert _admin_get_status(path, "/config/") == 200
        thread.join(timeout=5)
