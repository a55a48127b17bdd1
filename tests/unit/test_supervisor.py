"""`slipway up` restarts whatever dies, with a backoff, and never gives up on a part."""

from __future__ import annotations

from dataclasses import dataclass, field

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
