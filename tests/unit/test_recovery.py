"""A revision whose worker died mid-way ends failed, with what it started stopped."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from app.kernel.models import RevisionState
from tests.unit.world import Platform, WorkerKilled


def die_while_healthy(host_port: int, path: str) -> bool:
    raise WorkerKilled


def test_a_revision_whose_worker_died_is_failed_once_it_stops_beating(
    platform: Platform,
) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    second = platform.push()
    platform.health.answer = die_while_healthy
    with contextlib.suppress(WorkerKilled):
        platform.pipeline.run(second)
    platform.health.answer = None
    assert platform.revision(second).state is RevisionState.deploying
    assert platform.runtime.of_revision(second)  # its container was left running

    assert platform.recovery.fail_stuck() == []  # it beat a moment ago: not stuck yet
    platform.clock.now += timedelta(seconds=121)

    assert platform.recovery.fail_stuck() == [second]

    stuck = platform.revision(second)
    assert stuck.state is RevisionState.failed
    assert stuck.error == "the worker stopped during its start; push again or press Re-run"
    assert platform.runtime.of_revision(second) == []
    run = platform.check_run(second)
    assert run.status == "completed" and run.conclusion == "failure"
    assert platform.revision(first).state is RevisionState.live  # still serving
    assert platform.recovery.fail_stuck() == []  # and only once


def test_a_retried_job_of_a_recovered_revision_changes_nothing(platform: Platform) -> None:
    revision_id = platform.push()
    platform.health.answer = die_while_healthy
    with contextlib.suppress(WorkerKilled):
        platform.pipeline.run(revision_id)
    platform.health.answer = None
    platform.clock.now += timedelta(seconds=121)
    platform.recovery.fail_stuck()

    assert platform.pipeline.run(revision_id) is RevisionState.failed


def test_a_delivery_stored_but_never_handled_is_found_for_the_queue(platform: Platform) -> None:
    from datetime import UTC, datetime

    from app.deliveries.inbox import record_delivery

    now = datetime.now(UTC)
    platform.clock.now = now
    with platform.sessions() as session:
        record_delivery(session, "lost-1", "ping", b"{}", {}, now - timedelta(minutes=5))
        record_delivery(session, "fresh-1", "ping", b"{}", {}, now)

    assert platform.recovery.lost_deliveries() == ["lost-1"]
