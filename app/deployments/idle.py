"""The idle rules: when an unused deployment's owners are told, and when it is deleted.

A pure function of the days a deployment was used (`UsageDay` rows), so it is tested alone
(tests/unit/test_idle_rules.py) and the usage tick (app/deployments/usage.py) only gathers
those days and carries the verdict out. Days are whole units of SLIPWAY_IDLE_DAY_SECONDS since
the epoch; today, still running, never counts as unused. A preview is not judged by days but
by its repository's `[previews] idle_ttl` (`preview_removal_at`), also pure.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from manifests.config import idle_ttl_seconds


@dataclass(frozen=True)
class IdleRules:
    day_seconds: float = 86400.0
    notice_days: int = 7
    """Consecutive unused days before the owners are told; 0: never."""
    delete_days: int = 28
    """Consecutive unused days before the deployment is deleted; 0: never."""

    def day_of(self, moment: datetime) -> int:
        return math.floor(moment.timestamp() / self.day_seconds)

    def start_of(self, day: int) -> datetime:
        return datetime.fromtimestamp(day * self.day_seconds, UTC)

    def ttl_seconds(self, idle_ttl: str | None) -> float | None:
        """A preview's `idle_ttl` in seconds, its days being these rules' days."""
        return None if idle_ttl is None else idle_ttl_seconds(idle_ttl, self.day_seconds)


class IdleAction(enum.StrEnum):
    none = "none"
    notice = "notice"
    """Tell the owners (open the notice, or keep it open)."""
    withdraw = "withdraw"
    """Used again (or kept): close the notice."""
    delete = "delete"


@dataclass(frozen=True)
class IdleVerdict:
    unused_days: int
    """Whole days since the last one it was used on (or was first counted on)."""
    action: IdleAction
    notice_at: datetime | None
    """When the owners are (or were) told, if the rules tell them and it is not kept."""
    delete_at: datetime | None
    held: bool = False
    """A notice went out and no channel carried it yet (the GitHub issue refused, no
    notification delivered): it is not deleted until one does, `delete_at` moving on with now
    so the owners still get the full warning once told."""


def judge(
    *,
    rules: IdleRules,
    used_days: Iterable[int],
    counted_from: datetime,
    now: datetime,
    keep: bool = False,
    noticed_at: datetime | None = None,
    notice_tried_at: datetime | None = None,
    notice_retry_at: datetime | None = None,
) -> IdleVerdict:
    """What to do with one deployment now.

    `used_days`: the days it served a request or emitted a trace. `counted_from`: when the
    rules first looked at it (a day before that is not held against it). `noticed_at`: when a
    channel first carried the notice to its owners (the GitHub issue opened, or a notification
    delivered), if one did and it has not been used since. `notice_tried_at`: when that notice
    was first sent out, carried or not; `notice_retry_at`: when what did not carry it (a refused
    issue) is tried again, so a refusal costs one call a day, not one a tick.

    With notices on, a deletion always follows the notice by the days between the two rules,
    counted from when a channel carried it, even when the platform was off while they passed:
    owners are never surprised. A notice that reached no channel holds the deletion (`held`):
    a deployment is never deleted without its owners having been told.
    """
    today = rules.day_of(now)
    last_active = max([rules.day_of(counted_from), *used_days])
    unused = max(0, today - last_active - 1)

    def after(days: int) -> datetime | None:
        # Unused for `days` whole days once the day after the last active one plus `days` starts.
        return None if keep or days <= 0 else rules.start_of(last_active + 1 + days)

    notice_at, delete_at = after(rules.notice_days), after(rules.delete_days)
    warned = rules.notice_days <= 0 or rules.notice_days >= rules.delete_days
    out = noticed_at is not None or notice_tried_at is not None
    held = False
    if delete_at is not None and not warned:
        grace = timedelta(seconds=rules.day_seconds * (rules.delete_days - rules.notice_days))
        told = noticed_at if noticed_at is not None else max(now, notice_at or now)
        delete_at = max(delete_at, told + grace)
        held = out and noticed_at is None
    noticed = noticed_at is not None
    retry_due = notice_retry_at is not None and now >= notice_retry_at
    if keep:
        action = IdleAction.withdraw if out else IdleAction.none
    elif delete_at is not None and now >= delete_at and (noticed or warned):
        action = IdleAction.delete
    elif rules.notice_days > 0 and unused >= rules.notice_days:
        action = IdleAction.notice if not out or retry_due else IdleAction.none
    else:
        action = IdleAction.withdraw if out else IdleAction.none
    return IdleVerdict(
        unused_days=unused, action=action, notice_at=notice_at, delete_at=delete_at, held=held
    )


def preview_removal_at(
    *, ttl_seconds: float | None, last_used_at: datetime, keep: bool = False
) -> datetime | None:
    """When a preview unused since `last_used_at` is removed: its `idle_ttl` later (in
    seconds, days already turned into the idle rules' days). None: never (no `idle_ttl`, or
    kept with PATCH {"keep": true})."""
    if ttl_seconds is None or keep:
        return None
    return last_used_at + timedelta(seconds=ttl_seconds)
