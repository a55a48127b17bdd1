"""Work orders: what a webhook delivery or an API call asks the workers to do, and the names
and ids of the jobs that carry them out.

The API and the delivery handlers write orders; the worker carries them out with
app.deliveries.bus.OrderBus. Both sides read the job names from here, so neither imports the
other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

QUEUE_NAME = "slipway:queue"
"""Its own queue, so a Slipway sharing a Redis with other arq users never runs their jobs."""

HANDLE_DELIVERY = "handle_delivery"
RUN_REVISION = "run_revision"
SYNC_ROUTES = "sync_routes"
SYNC_COMMENT = "sync_comment"
DISPATCH_REVISIONS = "dispatch_revisions"
DRAIN_REPORTS = "drain_reports"
SEND_NOTIFICATIONS = "send_notifications"
SEND_NOTIFICATIONS_JOB_ID = "slipway:send-notifications"
"""One send job queued at a time: a burst of events is one job, which sends every due row."""
TEARDOWN_DEPLOYMENT = "teardown_deployment"
CARRY_OUT = "carry_out"
CHECK_DOMAINS = "check_domains"
"""One job id too: a check asked for while one waits is the same check."""
LAST_FINISHED_KEY = "slipway:last-finished:{}"
"""Redis key, per periodic job (`reconcile`, `sample_metrics`), of when a worker last finished
one (Unix seconds): `/metrics` shows it, so a worker that stopped passing can be alerted on."""
TIMED_JOBS = ("reconcile", "sample_metrics")


@dataclass(frozen=True)
class TeardownOrder:
    """A deployment to take down: previews lose their database, production keeps it."""

    deployment_id: str
    drop_database: bool


@dataclass(frozen=True)
class RefusedApproval:
    """A "Deploy preview" press by someone who may not deploy: the check run they pressed says
    so, since GitHub shows the presser nothing else."""

    revision_id: str
    login: str
    role: str
    """Their permission on the repository as GitHub gave it (read, triage, ...)."""


@dataclass
class WorkOrder:
    """What a delivery or an API request asks of the workers, once its changes are committed.

    The handler that writes it changes the control plane in one transaction; what the change
    asks of the queue and of GitHub's check runs waits for the commit, so a delivery that two
    workers applied at once (one rolls back) is carried out once, and an API request that
    failed orders nothing. app.deliveries.bus.OrderBus carries it out, in the order documented
    there. Each list is empty when there is nothing of its kind to do.
    """

    summary: str
    """What happened, in a sentence: stored as the delivery's outcome, returned by its job, and
    the reason a teardown gives."""
    start_revisions: list[str] = field(default_factory=list)
    """New revisions to build and roll out: each gets a job and a check run."""
    cancelled_revisions: list[str] = field(default_factory=list)
    """Revisions the change cancelled before they went live (a newer commit, a closed pull
    request): their check runs are closed as cancelled, or GitHub shows them queued for ever."""
    announce_revisions: list[str] = field(default_factory=list)
    """New revisions that get a check run but no build yet (waiting for an approval): the check
    run carries the button a maintainer presses to approve."""
    approved_revisions: list[str] = field(default_factory=list)
    """Fork commits a maintainer just approved: their approval check run closes, the build
    gets a new one, then its job."""
    refused_approvals: list[RefusedApproval] = field(default_factory=list)
    """Approvals pressed by someone without write access: said on the check run they pressed."""
    teardowns: list[TeardownOrder] = field(default_factory=list)
    """Deployments to take down (a preview whose pull request closed, a deleted deployment, a
    repository that left the App): each is a job of its own, which may take minutes, is retried
    when a step fails, and is resumed by recovery if lost."""
    comments: list[str] = field(default_factory=list)
    """Pull requests (ids) whose Slipway comment has something new to say; the handler bumped
    the comment's version in its transaction, the comment job writes it."""

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for a job's arguments (an API request's work order)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkOrder:
        return cls(
            summary=data["summary"],
            start_revisions=list(data.get("start_revisions", [])),
            cancelled_revisions=list(data.get("cancelled_revisions", [])),
            announce_revisions=list(data.get("announce_revisions", [])),
            approved_revisions=list(data.get("approved_revisions", [])),
            refused_approvals=[RefusedApproval(**r) for r in data.get("refused_approvals", [])],
            teardowns=[TeardownOrder(**t) for t in data.get("teardowns", [])],
            comments=list(data.get("comments", [])),
        )


def delivery_job_id(delivery_id: str) -> str:
    """arq refuses a second job with the same id, so a redelivery enqueues nothing new."""
    return f"delivery:{delivery_id}"


def revision_job_id(revision_id: str) -> str:
    return f"revision:{revision_id}"


def teardown_job_id(deployment_id: str) -> str:
    """Recovery orders a lost teardown again every few seconds until it finished: arq refuses
    a second job with this id while one is queued or running."""
    return f"teardown:{deployment_id}"
