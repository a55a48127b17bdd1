"""Work orders carried out: each kind of order becomes the jobs and the check-run reports the
workers made of it by hand before the bus, in the same order; carried out again (a retried job),
an API request's order changes nothing a user sees."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from app.access.tokens import Caller
from app.deliveries.bus import OrderBus
from app.deployments.environment import EnvChange
from app.kernel.models import Database, RevisionState
from app.kernel.orders import RefusedApproval, TeardownOrder, WorkOrder
from tests.support.fake_github import ZERO_SHA, push_payload
from tests.unit.world import INSTALLATION, Platform

ALICE = Caller(name="alice", read_only=False)

Call = tuple[Any, ...]


class Recorder:
    """The bus's queue and check runs in one: every call, in the order made."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    # the queue
    def run_revision(self, revision_id: str) -> None:
        self.calls.append(("run_revision", revision_id))

    def tear_down(self, deployment_id: str, *, drop_database: bool, reason: str) -> None:
        self.calls.append(("tear_down", deployment_id, drop_database, reason))

    def sync_comment(self, pull_request_id: str) -> None:
        self.calls.append(("sync_comment", pull_request_id))

    # the check runs
    def report_cancelled(self, revision_id: str) -> None:
        self.calls.append(("cancelled", revision_id))

    def announce(self, revision_id: str) -> None:
        self.calls.append(("announce", revision_id))

    def report_approval_refused(self, revision_id: str, login: str, role: str) -> None:
        self.calls.append(("approval_refused", revision_id, login, role))

    def report_approved(self, revision_id: str) -> None:
        self.calls.append(("approved", revision_id))


def carried_out(order: WorkOrder) -> list[Call]:
    recorder = Recorder()
    OrderBus(queue=recorder, check_runs=recorder).carry_out(order)
    return recorder.calls


# -- each kind of order -------------------------------------------------------------------------
def test_a_revision_to_start_gets_its_job_before_its_check_run() -> None:
    order = WorkOrder("push", start_revisions=["rev_a", "rev_b"])
    assert carried_out(order) == [
        ("run_revision", "rev_a"),
        ("announce", "rev_a"),
        ("run_revision", "rev_b"),
        ("announce", "rev_b"),
    ]


def test_a_cancelled_revision_is_reported_and_gets_no_job() -> None:
    assert carried_out(WorkOrder("push", cancelled_revisions=["rev_old"])) == [
        ("cancelled", "rev_old")
    ]


def test_a_teardown_is_queued_with_the_orders_summary_as_its_reason() -> None:
    order = WorkOrder(
        "pull request #7 closed",
        teardowns=[
            TeardownOrder("dep_preview", drop_database=True),
            TeardownOrder("dep_production", drop_database=False),
        ],
    )
    assert carried_out(order) == [
        ("tear_down", "dep_preview", True, "pull request #7 closed"),
        ("tear_down", "dep_production", False, "pull request #7 closed"),
    ]


def test_a_revision_waiting_for_approval_gets_a_check_run_and_no_job() -> None:
    assert carried_out(WorkOrder("fork", announce_revisions=["rev_fork"])) == [
        ("announce", "rev_fork")
    ]


def test_a_refused_approval_is_reported_and_starts_nothing() -> None:
    order = WorkOrder("press", refused_approvals=[RefusedApproval("rev_fork", "drive-by", "read")])
    assert carried_out(order) == [("approval_refused", "rev_fork", "drive-by", "read")]


def test_an_approved_revision_is_reported_approved_then_built() -> None:
    assert carried_out(WorkOrder("press", approved_revisions=["rev_fork"])) == [
        ("approved", "rev_fork"),
        ("run_revision", "rev_fork"),
    ]


def test_a_pull_request_with_news_gets_a_comment_job() -> None:
    assert carried_out(WorkOrder("opened", comments=["pr_1"])) == [("sync_comment", "pr_1")]


def test_every_kind_in_one_order_is_carried_out_in_the_workers_order() -> None:
    """Cancellations, teardowns, approval check runs, refusals, approvals, builds, comments."""
    order = WorkOrder(
        "everything",
        start_revisions=["rev_start"],
        cancelled_revisions=["rev_cancelled"],
        announce_revisions=["rev_waiting"],
        approved_revisions=["rev_approved"],
        refused_approvals=[RefusedApproval("rev_refused", "eve", "triage")],
        teardowns=[TeardownOrder("dep_gone", drop_database=True)],
        comments=["pr_1"],
    )
    assert carried_out(order) == [
        ("cancelled", "rev_cancelled"),
        ("tear_down", "dep_gone", True, "everything"),
        ("announce", "rev_waiting"),
        ("approval_refused", "rev_refused", "eve", "triage"),
        ("approved", "rev_approved"),
        ("run_revision", "rev_approved"),
        ("run_revision", "rev_start"),
        ("announce", "rev_start"),
        ("sync_comment", "pr_1"),
    ]
    # An API request's order reaches the worker as a job's arguments: the same order.
    assert carried_out(WorkOrder.from_dict(order.as_dict())) == carried_out(order)


def test_an_order_of_nothing_does_nothing() -> None:
    assert carried_out(WorkOrder("pong: the webhook reaches Slipway")) == []


# -- carried out twice, on the real services ----------------------------------------------------
def test_a_deploy_carried_out_twice_builds_once_behind_one_check_run(platform: Platform) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    done = platform.operations.change_env(
        platform.deployment().id, EnvChange(set={"GREETING": "hello"}), ALICE
    )
    [revision_id] = done.outcome.start_revisions

    platform.carry_out(done.outcome)
    platform.carry_out(done.outcome)  # the carry_out job, retried after its worker died

    assert platform.pipeline.run(revision_id) is RevisionState.live
    builds = len(platform.builder.images)
    # arq refuses a second job with the revision's id; one that ran anyway finds it live.
    assert platform.pipeline.run(revision_id, resume=False) is RevisionState.live
    assert len(platform.builder.images) == builds
    runs = [r for r in platform.check_runs() if r.external_id == revision_id]
    assert [(r.status, r.conclusion) for r in runs] == [("completed", "success")]


def test_a_cancellation_carried_out_twice_shows_one_cancelled_check_run(
    platform: Platform,
) -> None:
    queued = platform.push()
    payload = push_payload(
        platform.repository, INSTALLATION, "refs/heads/main", ZERO_SHA, platform.commit()
    )
    newer = platform.deliver("push", payload)  # carried out once already
    assert newer.cancelled_revisions == [queued]

    platform.carry_out(newer)

    runs = [r for r in platform.check_runs() if r.external_id == queued]
    assert [r.conclusion for r in runs] == ["cancelled"]
    assert platform.revision(queued).state is RevisionState.cancelled


def test_a_delete_carried_out_twice_takes_everything_down_once(platform: Platform) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    deployment = platform.deployment()
    done = platform.operations.delete(deployment.id, "web", ALICE)

    platform.carry_out(done.outcome)
    platform.carry_out(done.outcome)

    assert platform.router.routes == []
    assert not any(c.running for c in platform.runtime.containers.values())
    assert platform.databases.databases == {}
    with platform.sessions() as session:
        assert session.exec(select(Database)).all() == []
