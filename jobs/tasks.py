"""arq tasks: take ids, call one domain service in a thread (the services block), return."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.bootstrap import Platform
from app.deliveries import apply_delivery
from jobs.constants import RUN_REVISION, revision_job_id

log = logging.getLogger(__name__)


def _platform(ctx: dict[str, Any]) -> Platform:
    platform = ctx["platform"]
    assert isinstance(platform, Platform)
    return platform


async def handle_delivery(ctx: dict[str, Any], delivery_id: str) -> str:
    platform = _platform(ctx)

    def apply() -> tuple[str, list[str], list[str]]:
        with platform.sessions() as session:
            outcome = apply_delivery(session, delivery_id, platform.secrets, platform.clock())
        if outcome is None:
            return "already applied", [], []
        return outcome.summary, outcome.start_revisions, outcome.cancelled_revisions

    summary, start, cancelled = await asyncio.to_thread(apply)
    log.info("delivery applied", extra={"delivery_id": delivery_id, "summary": summary})
    for revision_id in cancelled:
        await asyncio.to_thread(platform.pipeline.report_cancelled, revision_id)
    for revision_id in start:
        await asyncio.to_thread(platform.pipeline.announce, revision_id)
        await ctx["redis"].enqueue_job(
            RUN_REVISION,
            revision_id,
            _job_id=revision_job_id(revision_id),
            _queue_name=ctx["queue_name"],
        )
    return summary


async def run_revision(ctx: dict[str, Any], revision_id: str) -> str:
    state = await asyncio.to_thread(_platform(ctx).pipeline.run, revision_id)
    return state.value


async def sync_routes(ctx: dict[str, Any]) -> None:
    await asyncio.to_thread(_platform(ctx).pipeline.sync_routes)
