"""Work orders: what a webhook delivery or an API call asks the workers to do, and the names
and ids of the jobs that carry them out.

The API and the delivery handlers write orders; `jobs/` carries them out. Both sides read the
job names from here, so neither imports the other.
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
TEARDOWN_DEPLOYMENT = "teardown_deployment"
CARRY_OUT = "carry_out"


@dataclass(frozen=True)
class TeardownOrder:
    """A deployment to take down: previews lose their database, production keeps it."""

    deployment_id: str
    drop_database: bool


@dataclass(frozen=True)
class RefusedApproval:
    revision_id: str
    login: str
    role: str


@dataclass
class WorkOrder:
    summary: str
    start_revisions: list[str] = field(default_factory=list)
    cancelled_revisions: list[str] = field(default_factory=list)
    announce_revisions: list[str] = field(default_factory=list)
    """New revisions that get a check run but no build yet (waiting for an approval)."""
    approved_revisions: list[str] = field(default_factory=list)
    """Fork commits a maintainer just approved: new check run, then the build."""
    refused_approvals: list[RefusedApproval] = field(default_factory=list)
    teardowns: list[TeardownOrder] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    """Pull requests (ids) whose Slipway comment has something new to say."""

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
