"""When backups are due: SLIPWAY_BACKUP_SCHEDULE, as a daily time or an interval.

`HH:MM` is once a day at that time (UTC); `<N>s`, `<N>m` or `<N>h` every N seconds, minutes
or hours since the last one; `off` never. A deployment is due when a scheduled moment passed
since its last backup was started (or, before its first, since its database was made), so a
worker that was down at 03:00 backs up when it is back, and a failed backup is tried again at
the next moment, not in a loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

_DAILY = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_INTERVAL = re.compile(r"([1-9][0-9]*)([smh])")
_UNITS = {"s": 1, "m": 60, "h": 3600}
FORMAT = "HH:MM (daily, UTC), an interval such as 30s, 15m or 6h, or off"


@dataclass(frozen=True)
class Schedule:
    daily_at: time | None = None
    every: timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        value = text.strip().lower()
        if value == "off":
            return cls()
        if match := _DAILY.fullmatch(value):
            return cls(daily_at=time(int(match[1]), int(match[2]), tzinfo=UTC))
        if match := _INTERVAL.fullmatch(value):
            return cls(every=timedelta(seconds=int(match[1]) * _UNITS[match[2]]))
        raise ValueError(f"{text!r} is not a backup schedule: give {FORMAT}")

    @property
    def enabled(self) -> bool:
        return self.daily_at is not None or self.every is not None

    @property
    def period(self) -> timedelta:
        """Time between two backups (a day when daily or off)."""
        return self.every or timedelta(days=1)

    def retention(self, keep: int) -> timedelta:
        """How long the oldest of `keep` backups is kept: a deleted deployment's last backup
        is kept this long after the deletion."""
        return self.period * keep

    def last_moment(self, now: datetime) -> datetime | None:
        """The latest scheduled moment at or before `now` (None for an interval or off)."""
        if self.daily_at is None:
            return None
        today = datetime.combine(now.astimezone(UTC).date(), self.daily_at)
        return today if today <= now else today - timedelta(days=1)

    def next_moment(self, now: datetime) -> datetime:
        """Nothing backed up by `now` is due before this: the next daily moment, or an
        interval from now (a backup's own age may bring it sooner: `DatabaseBackups`)."""
        if self.every is not None:
            return now + self.every
        moment = self.last_moment(now)
        return now + timedelta(days=1) if moment is None else moment + timedelta(days=1)

    def due(self, since: datetime, now: datetime) -> bool:
        """Whether a scheduled moment passed after `since` (the last backup's start)."""
        if self.every is not None:
            return now - since >= self.every
        moment = self.last_moment(now)
        return moment is not None and moment > since

    def tick_seconds(self) -> float:
        """How often the worker looks for due backups: every minute, or as often as the
        interval when it is shorter."""
        if self.every is not None and self.every < timedelta(minutes=1):
            return max(1.0, self.every.total_seconds())
        return 60.0
