"""arq tasks: take ids, call one domain service in a thread (the services block), return."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from arq import Retry
from redis.exceptions import RedisError

from app.bootstrap import Platform
from app.deliveries.bus import OrderBus
from app.deliveries.inbox import apply_delivery
from app.deployments.domains import Domains
from app.feedback.comments import CommentNotUpdated
from app.kernel.errors import TeardownIncomplete
from app.kernel.orders import (
    DISPATCH_REVISIONS,
    DRAIN_REPORTS,
    HANDLE_DELIVERY,
    LAST_FINISHED_KEY,
    RUN_REVISION,
    TEARDOWN_DEPLOYMENT,
    WorkOrder,
    delivery_job_id,
    teardown_job_id,
)
from jobs.constants import COMMENT_RETRY_SECONDS, TEARDOWN_RETRY_SECONDS

log = logging.getLogger(__name__)


def _platform(ctx: dict[str, Any]) -> Platform:
    platform = ctx["platform"]
    assert isinstance(platform, Platform)
    return platform


def _orders(ctx: dict[str, Any]) -> OrderBus:
    orders = ctx["orders"]
    assert isinstance(orders, OrderBus)
    return orders


async def handle_delivery(ctx: dict[str, Any], delivery_id: str) -> str:
    platform = _platform(ctx)
    orders = _orders(ctx)

    def apply() -> WorkOrder | None:
        with platform.sessions() as session:
            order = apply_delivery(
                session, delivery_id, platform.secrets, platform.clock(), platform.facts
            )
        if order is not None:
            log.info(
                "delivery applied", extra={"delivery_id": delivery_id, "summary": order.summary}
            )
            orders.carry_out(order)
        return order

    order = await asyncio.to_thread(apply)
    return "already applied" if order is None else order.summary


async def carry_out(ctx: dict[str, Any], outcome: dict[str, Any]) -> str:
    """What an API request changed (a deploy, an env change, a rollback, a delete) is built,
    reported and torn down like a delivery's work order."""
    order = WorkOrder.from_dict(outcome)
    await asyncio.to_thread(_orders(ctx).carry_out, order)
    return order.summary


async def run_revision(ctx: dict[str, Any], revision_id: str) -> str:
    # A retried job (its worker died) resumes the revision; a first try never takes over a
    # revision another job is building.
    resume = int(ctx.get("job_try", 1)) > 1
    state = await asyncio.to_thread(
        functools.partial(_platform(ctx).pipeline.run, revision_id, resume=resume)
    )
    return state.value


async def dispatch_revisions(ctx: dict[str, Any]) -> int:
    """Give every queued revision the limits now admit a job (duplicates are harmless)."""
    startable = await asyncio.to_thread(_platform(ctx).pipeline.startable)
    for revision_id in startable:
        await ctx["redis"].enqueue_job(RUN_REVISION, revision_id, _queue_name=ctx["queue_name"])
    return len(startable)


async def enqueue_dispatch(ctx: dict[str, Any]) -> None:
    await ctx["redis"].enqueue_job(DISPATCH_REVISIONS, _queue_name=ctx["queue_name"])


async def teardown_deployment(
    ctx: dict[str, Any], deployment_id: str, drop_database: bool, reason: str
) -> str:
    platform = _platform(ctx)

    def remove() -> list[str]:
        return platform.teardown.remove(
            deployment_id, drop_database=drop_database, reason=reason, spare_revived=True
        )

    try:
        cancelled = await asyncio.to_thread(remove)
    except TeardownIncomplete as exc:
        raise Retry(defer=TEARDOWN_RETRY_SECONDS * int(ctx.get("job_try", 1))) from exc
    for revision_id in cancelled:
        await asyncio.to_thread(platform.pipeline.report_cancelled, revision_id)
    await asyncio.to_thread(platform.comments.deployment_changed, deployment_id)
    await enqueue_dispatch(ctx)  # its preview place is free
    return f"deployment {deployment_id} removed"


async def drain_reports(ctx: dict[str, Any], revision_id: str) -> None:
    await asyncio.to_thread(_platform(ctx).reports.drain, revision_id)


async def enqueue_reports(ctx: dict[str, Any], revision_id: str) -> None:
    await ctx["redis"].enqueue_job(DRAIN_REPORTS, revision_id, _queue_name=ctx["queue_name"])


async def drain_pending_reports(ctx: dict[str, Any]) -> int:
    """Reports whose drain job was lost (a worker died, Redis restarted) are sent now."""
    pending = await asyncio.to_thread(_platform(ctx).reports.pending_revisions)
    for revision_id in pending:
        await enqueue_reports(ctx, revision_id)
    return len(pending)


async def send_notifications(ctx: dict[str, Any]) -> int:
    """Every due notification, once (a failed one is rescheduled with backoff on its row);
    also a cron, for retries and rows the API recorded."""
    return await asyncio.to_thread(_platform(ctx).notifications.drain)


async def recover(ctx: dict[str, Any]) -> str:
    """Fail revisions a dead worker left running; hand lost deliveries back to the queue."""
    platform = _platform(ctx)
    failed = await asyncio.to_thread(platform.recovery.fail_stuck)
    lost = await asyncio.to_thread(platform.recovery.lost_deliveries)
    for delivery_id in lost:
        await ctx["redis"].enqueue_job(
            HANDLE_DELIVERY,
            delivery_id,
            _job_id=delivery_job_id(delivery_id),
            _queue_name=ctx["queue_name"],
        )
    teardowns = await asyncio.to_thread(platform.recovery.unfinished_teardowns)
    for order in teardowns:
        # One job per deployment at a time: a teardown still retrying is not doubled.
        await ctx["redis"].enqueue_job(
            TEARDOWN_DEPLOYMENT,
            order.deployment_id,
            order.drop_database,
            order.reason,
            _job_id=teardown_job_id(order.deployment_id),
            _queue_name=ctx["queue_name"],
        )
    return (
        f"{len(failed)} stuck revisions failed, {len(lost)} lost deliveries queued, "
        f"{len(teardowns)} teardowns resumed"
    )


async def clean_up(ctx: dict[str, Any]) -> str:
    platform = _platform(ctx)
    report = await asyncio.to_thread(platform.janitor.run)
    pruned = await asyncio.to_thread(platform.notifications.prune)
    return f"{vars(report)}, {pruned} old notifications pruned"


async def sync_comment(ctx: dict[str, Any], pull_request_id: str) -> None:
    try:
        await asyncio.to_thread(_platform(ctx).comments.sync, pull_request_id)
    except CommentNotUpdated as exc:
        raise Retry(defer=COMMENT_RETRY_SECONDS * ctx.get("job_try", 1)) from exc


async def check_domains(ctx: dict[str, Any]) -> None:
    """Custom domains moved on: routed once their DNS points here, active once certified."""
    domains = ctx["domains"]
    assert isinstance(domains, Domains)
    await asyncio.to_thread(domains.check, _platform(ctx).routes.apply)


async def sync_routes(ctx: dict[str, Any]) -> None:
    await asyncio.to_thread(_platform(ctx).pipeline.sync_routes)


async def sample_metrics(ctx: dict[str, Any]) -> int:
    """One step of every deployment's metrics (one read of the router for all of them)."""
    written = await asyncio.to_thread(_platform(ctx).metrics.sample)
    await _passed(ctx, "sample_metrics")
    return written


async def reconcile(ctx: dict[str, Any]) -> None:
    """One reconciler pass: dead replicas replaced, scaling applied, drained ones stopped."""
    await asyncio.to_thread(_platform(ctx).reconciler.reconcile)
    await _passed(ctx, "reconcile")


async def _passed(ctx: dict[str, Any], job: str) -> None:
    """When the periodic job last finished, for `/metrics` (one SET, best effort: the pass is
    done whether or not it is recorded)."""
    try:
        await ctx["redis"].set(
            LAST_FINISHED_KEY.format(job), f"{_platform(ctx).clock().timestamp():.3f}"
        )
    except (RedisError, OSError) as exc:
        log.warning("last pass not recorded", extra={"job": job, "error": str(exc)})


async def back_up_databases(ctx: dict[str, Any]) -> str:
    """Due production databases dumped (SLIPWAY_BACKUP_SCHEDULE), old backups pruned."""
    backups = _platform(ctx).backups
    if backups is None:
        return "backups are not wired"
    report = await asyncio.to_thread(backups.run_schedule)
    return f"{len(report.done)} backed up, {len(report.failed)} failed, {report.pruned} pruned"


async def track_usage(ctx: dict[str, Any]) -> str:
    """Tracing projects made where missing, the day's use recorded, the idle rules applied;
    what they delete is torn down like a DELETE of the API, a preview past its `idle_ttl` as
    on close."""
    platform = _platform(ctx)
    made = await asyncio.to_thread(platform.tracing_projects.ensure_missing)
    report = await asyncio.to_thread(platform.usage.tick)
    for order in report.orders:
        await asyncio.to_thread(_orders(ctx).carry_out, order)
    return (
        f"{made} tracing projects made, {report.used} deployments used, "
        f"{len(report.noticed)} noticed, {len(report.withdrawn)} notices closed, "
        f"{len(report.deleted)} deleted, {len(report.removed)} unused previews removed"
    )
