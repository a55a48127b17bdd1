"""The one place a WorkOrder is carried out, for a webhook delivery and an API request alike.

A handler (or an API operation) saves what changed in its own transaction and writes down what
the workers should do next; the bus does it, in this order:

1. revisions the change cancelled are reported cancelled (their check runs close);
2. deployments to take down get their teardown jobs;
3. revisions waiting for an approval get their check run, which carries the approve button;
4. refused approvals are reported on the check run that was pressed;
5. approved revisions have their approval reported (the approval check run closes and the
   build gets its own), then their build job;
6. revisions to start get their build job, then their check run: the job opens the check run
   itself before its first progress report, so whichever of the two gets there first, the check
   run is opened before it says "building";
7. pull requests whose comment has something new get a comment job.

An order carried out again (arq retries a carry_out job whose worker died) does no harm for
what an API request orders (builds, cancellations, teardowns, comments): arq refuses a second job
with a revision's id while the first is queued, running or its result kept, a check run is opened
once, a cancellation said twice says the same, and a teardown or a comment sync left with nothing
to do does nothing. A delivery's order is carried out once: the delivery's job, retried, finds the
delivery applied and orders nothing. (An approval reported twice would close the build's new check
run as approved and open a third: approvals come only from deliveries.)
"""

from __future__ import annotations

from typing import Protocol

from app.kernel.orders import WorkOrder


class OrderQueue(Protocol):
    """The jobs an order hands on to the workers (the arq queue, in the worker)."""

    def run_revision(self, revision_id: str) -> None:
        """Queue the revision's build and rollout; one job per revision while it is queued or
        running."""

    def tear_down(self, deployment_id: str, *, drop_database: bool, reason: str) -> None:
        """Queue the deployment's teardown (replicas, route, database if asked)."""

    def sync_comment(self, pull_request_id: str) -> None:
        """Queue a write of the pull request's Slipway comment."""


class CheckRuns(Protocol):
    """What GitHub is told about a revision before its job runs (RevisionPipeline says it)."""

    def report_cancelled(self, revision_id: str) -> None: ...

    def announce(self, revision_id: str) -> None:
        """Open the revision's check run and GitHub deployment (once; later calls do nothing)."""

    def report_approval_refused(self, revision_id: str, login: str, role: str) -> None: ...

    def report_approved(self, revision_id: str) -> None: ...


class OrderBus:
    """Carries out work orders; blocking (call it from a worker's thread), as the services are."""

    def __init__(self, *, queue: OrderQueue, check_runs: CheckRuns) -> None:
        self._queue = queue
        self._check_runs = check_runs

    def carry_out(self, order: WorkOrder) -> None:
        for revision_id in order.cancelled_revisions:
            self._check_runs.report_cancelled(revision_id)
        for teardown in order.teardowns:
            self._queue.tear_down(
                teardown.deployment_id, drop_database=teardown.drop_database, reason=order.summary
            )
        for revision_id in order.announce_revisions:
            self._check_runs.announce(revision_id)
        for refusal in order.refused_approvals:
            self._check_runs.report_approval_refused(
                refusal.revision_id, refusal.login, refusal.role
            )
        for revision_id in order.approved_revisions:
            self._check_runs.report_approved(revision_id)
            self._queue.run_revision(revision_id)
        for revision_id in order.start_revisions:
            # The build first: its job queues the announce itself, before its first progress
            # report, so the check run is opened first whichever of the two gets there first.
            self._queue.run_revision(revision_id)
            self._check_runs.announce(revision_id)
        for pull_request_id in order.comments:
            self._queue.sync_comment(pull_request_id)
