"""The worker's periodic passes (the reconciler's tick, the metrics step, recovery, the
dispatch, ...), run in its own event loop by the one worker that holds the platform's lease.

They were arq cron jobs: each pass was a job enqueued, looked for, started and recorded in
Redis, ~25 calls and a few milliseconds of the worker's and Valkey's CPU whether the pass found
work or not, ~66 times a minute at rest (the reconciler's 30 among them). Here a pass is a call:
when it is due, the worker holding the lease runs it, unless its previous run is still going
(a pass is never run twice at once, where arq started a slow cron's next run beside it).

The lease is one Redis key with a time to live, taken by the first worker to ask and renewed by
its holder every LEASE_RENEW_SECONDS (12 calls a minute); a worker that stops renewing (killed,
cut off from Redis) loses it within LEASE_SECONDS and another one takes it on, as Kubernetes'
controllers elect their leader. Several workers (on several hosts) thus run each pass once, as
arq's unique cron job ids made them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import RedisError

from app.kernel.processes import pid_alive

log = logging.getLogger(__name__)

LEASE_KEY_SUFFIX = ":periodic-lease"
"""After the queue's name: platforms sharing one Redis with queues of their own hold their own."""
LEASE_SECONDS = 15.0
"""A dead holder's passes stop for at most this long before another worker runs them."""
LEASE_RENEW_SECONDS = 5.0
"""Three renewals per lease: one lost call (a slow Redis) does not lose it."""

_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
"""Taken when free, renewed when held by this worker, left alone otherwise: one atomic step."""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Pass = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Periodic:
    """A pass and when it runs: at these seconds of every minute (of `minute` only, when set:
    hourly), as arq's cron counted them."""

    name: str
    run: Pass
    seconds: frozenset[int]
    timeout: float
    minute: int | None = None
    at_start: bool = True
    """Also run as soon as the worker holds the lease (what was missed while none did)."""

    def __post_init__(self) -> None:
        if not self.seconds or not all(0 <= s < 60 for s in self.seconds):
            raise ValueError(f"{self.name}: seconds of a minute are 0 to 59, at least one")
        if self.minute is not None and not 0 <= self.minute < 60:
            raise ValueError(f"{self.name}: a minute of the hour is 0 to 59")


def next_due(periodic: Periodic, after: datetime) -> datetime:
    """The first whole second strictly after `after` at which `periodic` runs (at most an
    hour's seconds looked at, once a run)."""
    moment = after.replace(microsecond=0) + timedelta(seconds=1)
    for _ in range(3601):
        if moment.second in periodic.seconds and periodic.minute in (None, moment.minute):
            return moment
        moment += timedelta(seconds=1)
    raise AssertionError("unreachable: every hour has each minute's seconds")


def holder_name(path: Path, pid: int | None = None) -> str:
    """This worker's name in the lease, kept in `path` (in DATA_DIR): the name the last worker
    of this DATA_DIR held when that worker is dead, so the supervisor's restart of a killed
    worker renews the lease at once instead of waiting LEASE_SECONDS for it; a new name while
    that worker still runs (two workers on one DATA_DIR are two holders)."""
    pid = os.getpid() if pid is None else pid
    name = uuid.uuid4().hex
    try:
        last_pid, _, last_name = path.read_text().strip().partition(":")
        if last_name.isalnum() and not pid_alive(int(last_pid)):
            name = last_name
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}:{name}\n")
    path.chmod(0o600)
    return name


class _Redis(Protocol):
    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...


class PeriodicLease:
    """The platform's periodic lease in Redis, as seen by one worker. Not a row lease of
    app/kernel/leases.py (held around one piece of work, in the control plane): this one is
    held for as long as the worker runs, and only matters while the queue's Redis is up."""

    def __init__(
        self,
        redis: _Redis,
        *,
        key: str,
        seconds: float = LEASE_SECONDS,
        holder: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = int(seconds * 1000)
        self.holder = holder or uuid.uuid4().hex
        self._monotonic = monotonic
        self._held_until = 0.0

    async def hold(self) -> bool:
        """Take or renew it; True while this worker holds it. Redis unreachable: held until
        the last renewal's time runs out (no other worker can take it before), then not."""
        asked = self._monotonic()
        try:
            held = bool(await self._redis.eval(_HOLD, 1, self._key, self.holder, self._ttl_ms))
        except (RedisError, OSError) as exc:
            log.warning("periodic lease not renewed", extra={"error": str(exc)})
            return asked < self._held_until
        self._held_until = asked + self._ttl_ms / 1000 if held else 0.0
        return held

    async def release(self) -> None:
        """Let another worker take it at once (a clean stop); best effort."""
        self._held_until = 0.0
        try:
            await self._redis.eval(_RELEASE, 1, self._key, self.holder)
        except (RedisError, OSError) as exc:
            log.info("periodic lease not released", extra={"error": str(exc)})


@dataclass
class Ticker:
    """Runs `passes` when due while `lease` is held; `run()` until cancelled."""

    passes: tuple[Periodic, ...]
    lease: PeriodicLease
    ctx: dict[str, Any]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(tz=UTC))
    renew_seconds: float = LEASE_RENEW_SECONDS
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _due: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [p.name for p in self.passes]
        if len(set(names)) != len(names):
            raise ValueError(f"two periodic passes share a name: {sorted(names)}")

    async def run(self) -> None:
        held = False
        renew_at = 0.0
        try:
            while True:
                if time.monotonic() >= renew_at:
                    was_held, held = held, await self.lease.hold()
                    renew_at = time.monotonic() + self.renew_seconds
                    if held and not was_held:
                        log.info("periodic passes run here", extra={"holder": self.lease.holder})
                        self._schedule(self.clock(), at_start=True)
                    elif was_held and not held:
                        log.warning("periodic lease lost: passes stop here")
                        self._due.clear()
                now = self.clock()
                if held:
                    self._start_due(now)
                wait = renew_at - time.monotonic()
                if held and self._due:
                    wait = min(wait, (min(self._due.values()) - self.clock()).total_seconds())
                await asyncio.sleep(max(0.0, wait))
        finally:
            await self.stop()

    async def stop(self) -> None:
        """The running passes cancelled (their threads finish on their own), the lease freed."""
        running = [task for task in self._running.values() if not task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._running.clear()
        await self.lease.release()

    def _schedule(self, now: datetime, *, at_start: bool) -> None:
        for periodic in self.passes:
            self._due[periodic.name] = (
                now if at_start and periodic.at_start else next_due(periodic, now)
            )

    def _start_due(self, now: datetime) -> None:
        for periodic in self.passes:
            due = self._due.get(periodic.name)
            if due is None or due > now:
                continue
            self._due[periodic.name] = next_due(periodic, now)
            running = self._running.get(periodic.name)
            if running is not None and not running.done():
                log.debug(
                    "periodic pass still running: this turn skipped", extra={"job": periodic.name}
                )
                continue
            self._running[periodic.name] = asyncio.create_task(
                self._one(periodic), name=f"periodic:{periodic.name}"
            )

    async def _one(self, periodic: Periodic) -> None:
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(periodic.run(self.ctx), periodic.timeout)
        except TimeoutError:
            log.error(
                "periodic pass timed out", extra={"job": periodic.name, "timeout": periodic.timeout}
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic pass failed", extra={"job": periodic.name})
        else:
            if result:
                log.debug(
                    "periodic pass done",
                    extra={
                        "job": periodic.name,
                        "result": str(result)[:300],
                        "ms": round((time.monotonic() - started) * 1000),
                    },
                )
