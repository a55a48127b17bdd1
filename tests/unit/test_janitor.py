"""Disk use stays bounded: old build logs, old payloads, failed images, the build cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from app.deliveries.inbox import record_delivery
from app.kernel.models import Delivery, RevisionState
from tests.unit.world import Platform


def test_only_the_newest_build_logs_of_each_deployment_are_kept(platform: Platform) -> None:
    revisions = []
    for _ in range(5):
        revisions.append(platform.push())
        platform.pipeline.run(revisions[-1])
    logs = [platform.config.log_path(platform.revision(r)) for r in revisions]
    assert all(path.exists() for path in logs)

    report = platform.janitor.run()

    assert report.logs_removed == 3
    assert [path.exists() for path in logs] == [False, False, False, True, True]
    assert platform.janitor.run().logs_removed == 0


def test_old_payloads_are_dropped_and_their_deliveries_kept(platform: Platform) -> None:
    now = datetime.now(UTC)
    platform.clock.now = now
    body = b'{"zen": "old"}'
    with platform.sessions() as session:
        record_delivery(session, "old", "ping", body, {}, now - timedelta(days=15))
        old = session.get(Delivery, "old")
        assert old is not None
        old.processed_at = now - timedelta(days=15)
        session.add(old)
        record_delivery(session, "unhandled", "ping", body, {}, now - timedelta(days=15))
        record_delivery(session, "recent", "ping", body, {}, now - timedelta(days=1))
        session.commit()

    assert platform.janitor.run().payloads_dropped == 1

    with platform.sessions() as session:
        payloads = {d.id: d.payload for d in session.exec(select(Delivery)).all()}
    assert payloads == {"old": "", "unhandled": body.decode(), "recent": body.decode()}


def test_a_failed_revisions_image_is_removed_when_it_fails(platform: Platform) -> None:
    platform.health.healthy = False
    platform.reconfigure(health_timeout_seconds=1e-9)
    revision_id = platform.push()

    assert platform.pipeline.run(revision_id) is RevisionState.failed

    assert platform.revision(revision_id).image is None
    assert platform.runtime.images == {}


def test_the_build_cache_is_pruned_to_its_limit(platform: Platform) -> None:
    platform.janitor.run()

    assert platform.cache_prunes == [10 * 1024**3]
