"""Reports reach GitHub in the order they were made, once each, off the revision's path."""

from __future__ import annotations

import threading

from sqlmodel import select

from app.kernel.models import Report
from tests.unit.world import Platform


def test_reports_queued_while_nobody_drains_are_sent_in_order_later(platform: Platform) -> None:
    drains: list[str] = []
    platform.reports.use_queue(drains.append)
    revision_id = platform.push()  # the delivery queues the announce

    platform.pipeline.run(revision_id)  # building, deploying, succeeded queue up

    assert platform.check_runs() == []  # nothing sent yet: GitHub is not on the path
    assert set(drains) == {revision_id}
    platform.reports.drain(revision_id)
    run = platform.check_run(revision_id)
    assert run.status == "completed" and run.conclusion == "success"
    assert platform.deployment_state(platform.revision(revision_id).commit_sha) == ("success")
    with platform.sessions() as session:
        assert session.exec(select(Report)).all() == []


def test_concurrent_drains_send_each_report_once_in_order(platform: Platform) -> None:
    platform.reports.use_queue(lambda _id: None)
    revision_id = platform.push()
    platform.pipeline.run(revision_id)
    barrier = threading.Barrier(4)

    def drain() -> None:
        barrier.wait()
        platform.reports.drain(revision_id)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(platform.check_runs()) == 1
    assert len(platform.github_deployments()) == 1
    [statuses] = [d.statuses for d in platform.github_deployments()]
    assert [s["state"] for s in statuses] == ["success"]  # "building" was overtaken


def test_a_report_that_breaks_does_not_hold_back_the_ones_after_it(platform: Platform) -> None:
    platform.reports.use_queue(lambda _id: None)
    revision_id = platform.push()
    platform.reports.add(revision_id, "superseded", by_id="rev_that_does_not_exist")
    platform.reports.add(revision_id, "cancelled")

    platform.reports.drain(revision_id)

    assert platform.check_run(revision_id).conclusion == "cancelled"


def test_a_check_run_github_failed_to_open_is_opened_by_the_next_report(
    platform: Platform,
) -> None:
    platform.github.unreachable = True
    revision_id = platform.push()  # its announce fails: GitHub does not answer
    assert platform.check_runs() == []
    platform.github.unreachable = False

    platform.pipeline.run(revision_id)

    run = platform.check_run(revision_id)
    assert run.status == "completed" and run.conclusion == "success"
    assert len(platform.check_runs()) == 1


def test_progress_overtaken_by_a_later_report_is_not_sent(platform: Platform) -> None:
    """GitHub far away: what it has not heard yet of the way to live is skipped for the
    outcome, so `success` arrives one round trip after live, not three."""
    platform.reports.use_queue(lambda _id: None)
    revision_id = platform.push()
    platform.reports.drain(revision_id)  # the check run and the deployment are open
    updates: list[object] = []
    platform.github.on_check_run_update = lambda run: updates.append(run.output["title"])
    platform.pipeline.run(revision_id)  # queues building, deploying and succeeded

    platform.reports.drain(revision_id)

    assert len(updates) == 1 and str(updates[0]).startswith("Live at ")
    [statuses] = [d.statuses for d in platform.github_deployments()]
    assert [s["state"] for s in statuses] == ["success"]


def test_progress_still_reaches_github_while_nothing_overtook_it(platform: Platform) -> None:
    platform.reports.use_queue(lambda _id: None)
    revision_id = platform.push()
    platform.reports.drain(revision_id)
    platform.reports.add(revision_id, "building")

    platform.reports.drain(revision_id)

    assert platform.check_run(revision_id).status == "in_progress"
    [statuses] = [d.statuses for d in platform.github_deployments()]
    assert [s["state"] for s in statuses] == ["in_progress"]
