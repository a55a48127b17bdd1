"""A row's lease: one holder at a time, renewed while it works, waited out in one lease when
its holder died (a worker killed in the middle of a report to GitHub)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col

from app.kernel.leases import Lease
from app.kernel.models import Revision
from app.kernel.timestamps import utcnow
from tests.support.platform import wait_for
from tests.unit.world import Platform

SHORT = timedelta(seconds=0.3)


def _lease(platform: Platform) -> Lease:
    return Lease(
        platform.sessions,
        utcnow,
        key=col(Revision.id),
        until=col(Revision.report_lease_until),
        duration=SHORT,
    )


def _until(platform: Platform, revision_id: str) -> datetime | None:
    with platform.sessions() as session:
        revision = session.get(Revision, revision_id)
        assert revision is not None
        return revision.report_lease_until


def test_a_holder_working_past_its_lease_keeps_the_others_out(platform: Platform) -> None:
    revision_id = platform.push()
    lease = _lease(platform)

    with lease.held(revision_id) as held:
        assert held
        first = _until(platform, revision_id)
        assert first is not None
        wait_for("the first lease's end to pass", lambda: utcnow() > first, 5)

        with lease.held(revision_id) as second:
            assert not second  # renewed: still the first holder's
        renewed = _until(platform, revision_id)
        assert renewed is not None and renewed > first

    assert _until(platform, revision_id) is None
    with lease.held(revision_id) as after:
        assert after


def test_a_holder_that_died_is_waited_out_within_one_lease(platform: Platform) -> None:
    revision_id = platform.push()
    lease = _lease(platform)
    assert lease._acquire(revision_id) is not None  # taken, then the worker was killed

    with lease.held(revision_id) as held:
        assert not held

    def taken() -> bool:
        with lease.held(revision_id) as held:
            return held

    wait_for("the dead holder's lease to lapse", taken, 10 * SHORT.total_seconds())


def test_a_late_holder_does_not_give_back_the_next_holders_lease(platform: Platform) -> None:
    revision_id = platform.push()
    lease = _lease(platform)
    stale = lease._acquire(revision_id)  # a holder that stalled past its lease
    assert stale is not None
    wait_for("the stalled lease to lapse", lambda: utcnow() > stale, 5)

    with lease.held(revision_id) as held:
        assert held
        lease._release(revision_id, stale)  # the stalled holder wakes up and lets go

        with lease.held(revision_id) as third:
            assert not third  # still the second holder's
