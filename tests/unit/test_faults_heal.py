"""Faults heal: a database blip does not stop a build's heartbeat (nor let recovery fail the
build), and a preview teardown whose job was lost is ordered again by recovery."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from app.adapters.postgres import reapply_role_limits
from app.kernel.db import SessionFactory
from app.kernel.models import Database, Revision, RevisionState
from app.kernel.names import database_identifier
from app.kernel.orders import TeardownOrder, WorkOrder
from app.rollout.heartbeats import heartbeat
from app.rollout.recovery import LostTeardown
from manifests.containers import DeploymentType
from tests.unit.world import DOCKERFILE, Platform


class BlinkingSessions:
    """The control plane's sessions, failing while `down` is set (a restarting database)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self.down = threading.Event()
        self.refused = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Session]:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError("SELECT 1", {}, Exception("the database system is starting up"))
        with self._sessions() as session:
            yield session


def _until(what: str, check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _building(platform: Platform) -> str:
    revision_id = platform.push()
    with platform.sessions() as session:
        revision = session.get(Revision, revision_id)
        assert revision is not None
        revision.state = RevisionState.building
        revision.heartbeat_at = platform.clock.now
        session.add(revision)
        session.commit()
    return revision_id


def _heartbeat_of(platform: Platform, revision_id: str) -> object:
    return platform.revision(revision_id).heartbeat_at


def test_the_heartbeat_outlives_a_database_blip_and_recovery_spares_the_build(
    platform: Platform,
) -> None:
    revision_id = _building(platform)
    blinking = BlinkingSessions(platform.sessions)
    blinking.down.set()
    with heartbeat(blinking, revision_id, platform.clock, every=0.02):  # type: ignore[arg-type]
        _until("beats refused by the database", lambda: blinking.refused >= 3)
        before = _heartbeat_of(platform, revision_id)
        # Longer than recovery waits: a build whose beat stopped would now be failed.
        platform.clock.now += timedelta(seconds=121)
        blinking.down.clear()  # the database is back
        _until("the heartbeat to resume", lambda: _heartbeat_of(platform, revision_id) != before)
        assert platform.recovery.fail_stuck() == []
    assert platform.revision(revision_id).state is RevisionState.building


def test_a_long_outage_still_ends_in_recovery_and_the_beat_then_leaves_it_alone(
    platform: Platform,
) -> None:
    revision_id = _building(platform)
    blinking = BlinkingSessions(platform.sessions)
    blinking.down.set()
    with heartbeat(blinking, revision_id, platform.clock, every=0.02):  # type: ignore[arg-type]
        _until("beats refused by the database", lambda: blinking.refused >= 2)
        platform.clock.now += timedelta(seconds=121)
        assert platform.recovery.fail_stuck() == [revision_id]  # recovery's own path
        blinking.down.clear()
        refused = blinking.refused
        _until("a beat after the outage", lambda: blinking.refused == refused)
    stuck = platform.revision(revision_id)
    assert stuck.state is RevisionState.failed
    assert stuck.error == "the worker stopped during its build; push again or press Re-run"


def test_recovery_does_not_fail_a_build_whose_beat_came_back_after_it_looked(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: recovery selects a silent build, then its beat lands before the failure."""
    revision_id = _building(platform)
    platform.clock.now += timedelta(seconds=121)
    recovery = platform.recovery
    fail = recovery._fail

    def beat_then_fail(revision: Revision, cutoff: object) -> bool:
        with platform.sessions() as session:
            again = session.get(Revision, revision.id)
            assert again is not None
            again.heartbeat_at = platform.clock.now
            session.add(again)
            session.commit()
        return fail(revision, cutoff)  # type: ignore[arg-type]

    monkeypatch.setattr(recovery, "_fail", beat_then_fail)
    assert recovery.fail_stuck() == []
    assert platform.revision(revision_id).state is RevisionState.building


def test_a_closed_pull_requests_lost_teardown_is_resumed_by_recovery(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    production = platform.push()
    platform.pipeline.run(production)
    outcome = platform.pull_request_event("opened", 7, platform.commit({"Dockerfile": DOCKERFILE}))
    [preview_revision] = outcome.start_revisions
    assert platform.pipeline.run(preview_revision) is RevisionState.live
    preview = platform.preview_deployment(7)

    # The pull request closes, and the teardown job is lost (the queue was down).
    lost: list[TeardownOrder] = []

    def lose(outcome: WorkOrder) -> WorkOrder:
        lost.extend(outcome.teardowns)
        return outcome

    monkeypatch.setattr(platform, "carry_out", lose)
    platform.pull_request_event("closed", 7, platform.revision(production).commit_sha)
    assert lost == [TeardownOrder(preview.id, drop_database=True)]
    assert platform.runtime.of_revision(preview_revision)  # still running

    platform.clock.now = datetime.now(UTC)  # deliveries are applied at the wall clock's time
    assert platform.recovery.unfinished_teardowns() == []  # a teardown takes seconds
    platform.clock.now += timedelta(minutes=11)
    [order] = platform.recovery.unfinished_teardowns()
    assert order == LostTeardown(preview.id, drop_database=True, reason="the preview was removed")

    for _ in range(2):  # what recovery enqueues may run twice: the second run changes nothing
        platform.teardown.remove(order.deployment_id, drop_database=True, reason="resumed")
    assert platform.runtime.of_revision(preview_revision) == []
    with platform.sessions() as session:
        assert session.get(Database, preview.id) is None
    assert platform.recovery.unfinished_teardowns() == []
    assert platform.revision(production).state is RevisionState.live


class RecordingLimits:
    def __init__(self) -> None:
        self.applied: list[tuple[str, int]] = []

    def limit(self, roles: Iterable[tuple[str, int]]) -> int:
        self.applied.extend(roles)
        return len(self.applied)


def test_every_provisioned_role_is_given_the_limit_of_its_deployments_type(
    platform: Platform,
) -> None:
    production = platform.push()
    assert platform.pipeline.run(production) is RevisionState.live
    production_id = platform.deployment().id
    outcome = platform.pull_request_event("opened", 7, platform.commit({"Dockerfile": DOCKERFILE}))
    [preview_revision] = outcome.start_revisions
    assert platform.pipeline.run(preview_revision) is RevisionState.live
    preview = platform.preview_deployment(7)
    recorder = RecordingLimits()

    changed = reapply_role_limits(
        platform.sessions,
        recorder,  # type: ignore[arg-type]
        {DeploymentType.development: 10, DeploymentType.production: 40},
    )

    assert changed == 2
    assert sorted(recorder.applied) == sorted(
        [
            (database_identifier(production_id), 40),
            (database_identifier(preview.id), 10),
        ]
    )
