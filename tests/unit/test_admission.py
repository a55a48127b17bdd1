"""Limits: at most N builds at once on the platform, at most M previews per repository.

Work beyond them waits in order and says why; freed capacity lets the next one start.
"""

from __future__ import annotations

from app.kernel.models import RevisionState
from app.rollout.admission import AdmissionLimits, Queued, plan
from tests.unit.world import DOCKERFILE, Platform

LIMITS = AdmissionLimits(max_builds=2, max_previews_per_repository=2)


def queued(revision_id: str, *, repository: int = 1, preview: str | None = None) -> Queued:
    return Queued(revision_id, repository, preview or f"dep_{revision_id}", preview is not None)


def test_builds_beyond_the_limit_wait_in_order() -> None:
    decisions = plan([queued("a"), queued("b"), queued("c")], 1, {}, LIMITS)

    assert decisions["a"] is None
    assert "Waiting for a build slot: 2 builds are running" in str(decisions["b"])
    assert decisions["c"] == decisions["b"]


def test_a_new_preview_beyond_the_repositorys_places_waits_and_others_go_on() -> None:
    places = {1: frozenset({"dep_p1", "dep_p2"})}
    queue = [queued("new", preview="dep_p3"), queued("elsewhere", repository=2, preview="dep_q")]

    decisions = plan(queue, 0, places, LIMITS)

    assert "Waiting for a preview place: 2 previews of this repository" in str(decisions["new"])
    assert "Closing a pull request frees one" in str(decisions["new"])
    assert decisions["elsewhere"] is None


def test_a_running_preview_keeps_its_place_for_its_next_commit() -> None:
    places = {1: frozenset({"dep_p1", "dep_p2"})}

    assert plan([queued("next", preview="dep_p1")], 0, places, LIMITS) == {"next": None}


def test_production_takes_no_preview_place() -> None:
    places = {1: frozenset({"dep_p1", "dep_p2"})}

    assert plan([queued("prod")], 0, places, LIMITS) == {"prod": None}


def test_a_build_beyond_the_platform_limit_waits_and_says_why(platform: Platform) -> None:
    platform.limit(max_builds=1)
    first = platform.push()
    [other] = platform.pull_request_event("opened", 7, platform.commit()).start_revisions
    seen: list[RevisionState] = []
    platform.builder.during_build = lambda: seen.append(platform.pipeline.run(other))
    dispatched_before = len(platform.dispatches)

    assert platform.pipeline.run(first) is RevisionState.live

    assert seen == [RevisionState.queued]
    waiting = platform.revision(other)
    assert waiting.state is RevisionState.queued
    assert "Waiting for a build slot" in str(platform.check_run(other).output["summary"])
    assert platform.check_run(other).status == "queued"
    assert "Waiting for a build slot" in platform.comments_on(7)[0]
    assert len(platform.dispatches) > dispatched_before  # the finished build freed its slot
    platform.builder.during_build = None
    assert platform.pipeline.startable() == [other]
    assert platform.pipeline.run(other) is RevisionState.live
    assert "Waiting" not in platform.comments_on(7)[0]


def test_a_pull_request_beyond_the_preview_places_waits_until_one_closes(
    platform: Platform,
) -> None:
    platform.limit(max_previews_per_repository=1)
    first_head = platform.commit()
    [first] = platform.pull_request_event("opened", 7, first_head).start_revisions
    assert platform.pipeline.run(first) is RevisionState.live
    [second] = platform.pull_request_event(
        "opened", 8, platform.commit({"Dockerfile": DOCKERFILE})
    ).start_revisions

    assert platform.pipeline.run(second) is RevisionState.queued
    assert "Waiting for a preview place" in platform.comments_on(8)[0]
    assert platform.pipeline.startable() == []

    platform.pull_request_event("closed", 7, first_head)

    assert platform.pipeline.startable() == [second]
    assert platform.pipeline.run(second) is RevisionState.live


def test_a_first_try_never_takes_over_a_revision_another_job_builds(platform: Platform) -> None:
    first = platform.push()
    states: list[RevisionState] = []
    platform.builder.during_build = lambda: states.append(
        platform.pipeline.run(first, resume=False)
    )

    assert platform.pipeline.run(first) is RevisionState.live

    assert states == [RevisionState.building]
    assert len(platform.builder.images) == 1
