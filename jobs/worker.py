"""The arq worker's settings, built from Slipway's settings (no import-time connections)."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from arq.constants import job_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from app.adapters.postgres import reapply_role_limits
from app.adapters.queue import announcing, create_queue, redis_settings, wake_channel
from app.bootstrap import backup_policy, bootstrap, custom_domains, replica_config
from app.deliveries.bus import OrderBus
from app.kernel.heap import freeze_startup_objects
from app.kernel.orders import (
    CARRY_OUT,
    CHECK_DOMAINS,
    DISPATCH_REVISIONS,
    DRAIN_REPORTS,
    QUEUE_NAME,
    SEND_NOTIFICATIONS,
    SYNC_COMMENT,
    SYNC_ROUTES,
    TEARDOWN_DEPLOYMENT,
)
from app.kernel.settings import Settings
from app.replicas.engine_events import EngineEventFollower
from app.replicas.metrics import FINE_STEP_SECONDS
from jobs import tasks
from jobs.constants import (
    IDLE_POLL_SECONDS,
    JOB_TIMEOUT_SECONDS,
    KEEP_RESULT_SECONDS,
    MAX_TRIES,
    TEARDOWN_TIMEOUT_SECONDS,
)
from jobs.queue import WorkerQueue
from jobs.ticks import LEASE_KEY_SUFFIX, Periodic, PeriodicLease, Ticker, holder_name
from jobs.wake import WakeUps

log = logging.getLogger(__name__)

DISPATCH_SECONDS = {0, 10, 20, 30, 40, 50}
RECOVERY_SECONDS_OF_MINUTE = {5, 15, 25, 35, 45, 55}
JANITOR_MINUTE = 17
"""Hourly: logs, payloads, images and the build cache grow slowly."""
JANITOR_TIMEOUT_SECONDS = 15 * 60
"""Every 10 s: a stuck revision is failed at most SLIPWAY_RECOVERY_SECONDS + 10 s after its
last heartbeat, and at every worker start."""
"""Waiting revisions are dispatched when capacity frees; this catches a lost wake-up."""
DOMAIN_CHECK_SECONDS = {0, 20, 40}
"""Custom domains waiting for their DNS or certificate are looked at this often (and at once
when one is added): seconds the worker wakes at anyway for the dispatch, so no wake-up of its
own at rest, and one query when no domain waits."""
ROUTE_RECONCILE_SECOND = 0
METRICS_SECONDS = set(range(5, 60, FINE_STEP_SECONDS))
"""Every 10 s, off the minute's first seconds (where the other passes start)."""
METRICS_TIMEOUT_SECONDS = 9
"""Once a minute the router is given the database's routes again, in case Caddy restarted."""
USAGE_TICKS_PER_DAY = 8
"""The usage tick (app/deployments/usage.py) runs this often per idle-rule day, and at least
once a minute: a day's use is seen within its own day, a missing tracing project retried."""
USAGE_TICK_MAX_SECONDS = 60.0
USAGE_TIMEOUT_SECONDS = 5 * 60
"""One read of the router and LangSmith, the GitHub issues of the day's verdicts."""


def usage_tick_seconds(day_seconds: float) -> set[int]:
    return tick_seconds(min(USAGE_TICK_MAX_SECONDS, day_seconds / USAGE_TICKS_PER_DAY))


CRON_LEAD_SECONDS = 0.5
"""arq enqueues a cron (deferred to its time) at the first look at the queue within a second of
it: the worker looks half a second ahead, then waits for the job like any deferred one."""

OUTAGE_POLL_MAX_SECONDS = 5.0
"""While the queue stays down, the worker looks for it at most this far apart."""

BACKUP_SECOND = 30
"""Due backups are looked for once a minute (at this second) when the schedule is a daily time
or an interval of a minute or more: a look when nothing is due is one query."""
BACKUPS_TIMEOUT_SECONDS = 6 * 3600
"""One pass dumps every due database in turn; each dump has its own timeout."""
NOTIFY_TIMEOUT_SECONDS = 10 * 60
"""A drain sends every due row; each channel is bounded by its own connect and read timeouts."""

PASS_TIMEOUT = 5 * 60
"""A periodic pass without a bound of its own (arq's default job timeout)."""
RECONCILE_TIMEOUT_SECONDS = 10 * 60
"""A pass waits for the replicas it starts to answer (the health timeout) and no longer."""


def tick_seconds(tick: float) -> set[int]:
    """The seconds of each minute a reconciler pass starts at (arq's cron counts whole
    seconds: a tick below one second is one second)."""
    step = max(1.0, tick)
    return {int(i * step) % 60 for i in range(math.ceil(60 / step))}


def backup_seconds(settings: Settings) -> set[int]:
    tick = backup_policy(settings).schedule.tick_seconds()
    return tick_seconds(tick) if tick < 60 else {BACKUP_SECOND}


LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a lost queue raises; redis-py raises it as a WatchError caused by one when the
connection drops while arq watches a job's keys (raised while handling it: its context), seen once
in a full run, where the worker exited."""


class ReconnectingWorker(Worker):
    """arq's worker, made to wait for work instead of polling for it, and to wait for its
    queue when it is lost.

    Waiting: arq looks at its queue every `poll_delay` (Slipway's was 20 ms, so that a
    push's jobs started at once: 50 Redis calls a second per idle worker). This worker looks,
    then waits until woken (jobs/wake.py: a job announced on the queue's wake channel, or one
    of its own jobs ending), its next deferred job or cron is due, or `idle_poll` passed.

    A lost queue: arq lets a lost connection end `main()` (and the process) mid-poll. Here an
    outage is logged once, polled for with a growing pause, and logged again when it is over.
    Jobs running meanwhile keep running; what they could not record is found again by recovery
    (app/rollout/recovery.py).
    """

    _outage_started: float | None = None

    def __init__(self, *args: Any, idle_poll: float = IDLE_POLL_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_poll_s = idle_poll
        self.wake_ups = WakeUps()

    async def close(self) -> None:
        """arq's close, except that a job's cancellation does not escape it.

        arq cancels the running jobs, then gathers them without `return_exceptions`: a job
        cancelled while it recorded its end (arq awaits that step shielded, outside the part of
        the job that handles a cancellation) re-raised CancelledError out of close, so a stop
        of the platform while a job was finishing ended in a traceback instead of a clean exit
        (seen in the integration tier: `test_the_worker_is_woken_again_after_valkey_...`).
        What such a job could not record is found again by recovery."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self._pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self._pool.aclose(close_connection_pool=True)
        self._pool = None

    async def main(self) -> None:
        if self._pool is None:
            assert self.redis_settings is not None
            self._pool = await create_queue(
                self.redis_settings,
                default_queue_name=self.queue_name,
                job_serializer=self.job_serializer,
                job_deserializer=self.job_deserializer,
                expires_extra_ms=self.expires_extra_ms,
            )
        listener = asyncio.create_task(
            self.wake_ups.listen(self.pool, wake_channel(self.queue_name))
        )
        try:
            await super().main()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _poll_iteration(self) -> None:
        # Cleared before looking: a job announced from here on ends the wait below at once.
        self.wake_ups.clear()
        looked_at_ms = timestamp_ms()
        try:
            await super()._poll_iteration()
            if not self.burst:
                await self.wake_ups.wait(await self._seconds_to_next_look(looked_at_ms))
        except (RedisConnectionError, RedisTimeoutError, OSError, WatchError) as exc:
            if isinstance(exc, WatchError) and not isinstance(exc.__context__, LOST_CONNECTION):
                raise
            now = time.monotonic()
            if self._outage_started is None:
                self._outage_started = now
                log.warning("job queue unreachable; waiting for it", extra={"error": repr(exc)})
            down_for = now - self._outage_started
            # Cut short when the wake channel is subscribed again: the queue is back.
            await self.wake_ups.wait(min(OUTAGE_POLL_MAX_SECONDS, 0.2 + down_for / 4))
            return
        if self._outage_started is not None:
            down_for = time.monotonic() - self._outage_started
            self._outage_started = None
            log.info("job queue reachable again", extra={"seconds_down": round(down_for, 1)})

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        # This worker waits for its crons' times itself (`_seconds_to_next_look`).
        quiet = announcing.set(False)
        try:
            await super().run_cron(n, delay, num_windows)
        finally:
            announcing.reset(quiet)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        running = set(self.tasks.values())
        await super().start_jobs(job_ids)
        for task in self.tasks.values():
            if task not in running:
                task.add_done_callback(lambda _task: self.wake_ups.wake())

    async def _seconds_to_next_look(self, looked_at_ms: int) -> float:
        """Until the earliest of: the first job queued for later than the look at the queue
        (a deferred job, a retry, a cron arq enqueued ahead), the moment arq enqueues the next
        cron, and the safety poll. Jobs due earlier were seen by that look: started, or left
        for a slot to free (a job ending wakes the worker) or for another worker's."""
        seconds = self.idle_poll_s
        later = await self.pool.zrangebyscore(
            self.queue_name, min=f"({looked_at_ms}", max="+inf", start=0, num=1, withscores=True
        )
        if later:
            _job_id, score = later[0]
            seconds = min(seconds, (score - timestamp_ms()) / 1000)
        now = datetime.now(tz=self.timezone)
        for cron_job in self.cron_jobs:
            if cron_job.next_run is not None:
                due_in = (cron_job.next_run - now).total_seconds()
                seconds = min(seconds, due_in - CRON_LEAD_SECONDS)
        return max(0.0, seconds)


def periodic_passes(settings: Settings) -> tuple[Periodic, ...]:
    """What the worker holding the periodic lease runs, and when (jobs/ticks.py)."""
    passes = [
        Periodic(
            "clean_up",
            tasks.clean_up,
            frozenset({0}),
            minute=JANITOR_MINUTE,
            at_start=False,  # disk fills over hours: not worth delaying a start
            timeout=JANITOR_TIMEOUT_SECONDS,
        ),
        Periodic("recover", tasks.recover, frozenset(RECOVERY_SECONDS_OF_MINUTE), PASS_TIMEOUT),
        Periodic(
            "drain_pending_reports",
            tasks.drain_pending_reports,
            frozenset(DISPATCH_SECONDS),
            PASS_TIMEOUT,
        ),
        Periodic(
            "send_notifications",
            tasks.send_notifications,
            frozenset(DISPATCH_SECONDS),
            NOTIFY_TIMEOUT_SECONDS,
        ),
        Periodic(
            "dispatch_revisions",
            tasks.dispatch_revisions,
            frozenset(DISPATCH_SECONDS),
            PASS_TIMEOUT,
        ),
        Periodic(
            "reconcile",
            tasks.reconcile,
            frozenset(tick_seconds(settings.autoscale_tick_seconds)),
            RECONCILE_TIMEOUT_SECONDS,
        ),
        Periodic(
            "back_up_databases",
            tasks.back_up_databases,
            frozenset(backup_seconds(settings)),
            BACKUPS_TIMEOUT_SECONDS,  # a backup missed while no worker ran is made at start
        ),
        Periodic(
            "check_domains", tasks.check_domains, frozenset(DOMAIN_CHECK_SECONDS), PASS_TIMEOUT
        ),
        Periodic(
            "track_usage",
            tasks.track_usage,
            frozenset(usage_tick_seconds(settings.idle_day_seconds)),
            USAGE_TIMEOUT_SECONDS,
        ),
        # At start the worker gives the router its routes itself (on_startup).
        Periodic(
            "sync_routes",
            tasks.sync_routes,
            frozenset({ROUTE_RECONCILE_SECOND}),
            PASS_TIMEOUT,
            at_start=False,
        ),
    ]
    if settings.metrics:  # SLIPWAY_METRICS=false: no sampling at all
        # The first read is the baseline: taken at once, requests from then on count.
        passes.append(
            Periodic(
                "sample_metrics",
                tasks.sample_metrics,
                frozenset(METRICS_SECONDS),
                METRICS_TIMEOUT_SECONDS,
            )
        )
    return tuple(passes)


RETIRED_CRONS = frozenset(
    {
        "clean_up",
        "recover",
        "drain_pending_reports",
        "send_notifications_cron",
        "dispatch_revisions_cron",
        "reconcile",
        "back_up_databases",
        "check_domains_cron",
        "track_usage",
        "sync_routes_cron",
        "sample_metrics",
    }
)
"""The periodic passes' names when they were arq crons (`<name>:<ms>` job ids)."""


async def forget_retired_crons(redis: Any, queue_name: str) -> int:
    """arq queued each cron ahead of its time: after an upgrade, the ones a worker of the
    earlier version left would each be logged as an unknown function. Removed at start."""
    retired = [
        job_id
        for job_id in await redis.zrange(queue_name, 0, -1)
        if (text := job_id.decode()).partition(":")[0] in RETIRED_CRONS
        and text.partition(":")[2].isdigit()
    ]
    if retired:
        await redis.zrem(queue_name, *retired)
        await redis.delete(*(job_key_prefix.encode() + job_id for job_id in retired))
    return len(retired)


def make_worker(settings: Settings, **overrides: Any) -> Worker:
    async def on_startup(ctx: dict[str, Any]) -> None:
        platform = bootstrap(settings)
        ctx["platform"] = platform
        ctx["domains"] = custom_domains(settings, platform.sessions, platform.clock)
        ctx["queue_name"] = QUEUE_NAME
        loop = asyncio.get_running_loop()
        # Every job runs its domain service in a thread: one thread per job, and a few over.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=settings.worker_max_jobs + 4))

        # The services call these from their threads: each enqueue runs on this loop.
        queue = WorkerQueue(ctx["redis"], loop)
        platform.comments.use_queue(queue.sync_comment)
        platform.notifier.use_dispatcher(queue.dispatch_revisions)
        platform.reports.use_queue(queue.drain_reports)
        platform.notifications.use_queue(queue.send_notifications)
        ctx["orders"] = OrderBus(queue=queue, check_runs=platform.pipeline)
        try:
            await asyncio.to_thread(
                reapply_role_limits,
                platform.sessions,
                platform.databases,
                replica_config(settings).connection_limits,
            )
        except Exception:  # the cluster may be restarting; the next worker start catches up
            log.warning("database role limits not applied at start", exc_info=True)
        try:
            await tasks.sync_routes(ctx)
        except Exception:  # the router may still be starting; the cron catches up
            log.warning("routes not restored at start", exc_info=True)
        # The runtime's events tell the reconciler which deployments to look at.
        follower = platform.reconciler.follower()
        follower.start()
        ctx["engine_events"] = follower
        await forget_retired_crons(ctx["redis"], options["queue_name"])
        lease = PeriodicLease(
            ctx["redis"],
            key=options["queue_name"] + LEASE_KEY_SUFFIX,
            holder=holder_name(settings.data_dir / "run" / "periodic-holder"),
        )
        ticker = Ticker(periodic_passes(settings), lease, ctx)
        ctx["periodic"] = asyncio.create_task(ticker.run(), name="periodic passes")
        freeze_startup_objects("worker")

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        periodic = ctx.get("periodic")
        if isinstance(periodic, asyncio.Task):
            periodic.cancel()
            await asyncio.gather(periodic, return_exceptions=True)
        follower = ctx.get("engine_events")
        if isinstance(follower, EngineEventFollower):
            await asyncio.to_thread(follower.stop)

    options: dict[str, Any] = {
        "functions": [
            # No result kept: the job id is free again once it ran, so GitHub's redelivery of a
            # delivery whose handling failed is enqueued anew (an applied one is skipped by the
            # delivery's own record).
            func(tasks.handle_delivery, name="handle_delivery", max_tries=MAX_TRIES, keep_result=0),
            func(tasks.sync_comment, name=SYNC_COMMENT, max_tries=MAX_TRIES, keep_result=0),
            # Safe to repeat: announcing, enqueueing and tearing down are all idempotent.
            func(tasks.carry_out, name=CARRY_OUT, max_tries=MAX_TRIES, keep_result=0),
            func(tasks.dispatch_revisions, name=DISPATCH_REVISIONS, keep_result=0),
            func(tasks.drain_reports, name=DRAIN_REPORTS, keep_result=0),
            # One at a time (its job id); a channel's own timeouts bound each send.
            func(
                tasks.send_notifications,
                name=SEND_NOTIFICATIONS,
                keep_result=0,
                timeout=NOTIFY_TIMEOUT_SECONDS,
            ),
            func(tasks.check_domains, name=CHECK_DOMAINS, keep_result=0),
            func(tasks.sync_routes, name=SYNC_ROUTES, keep_result=0),
            func(
                tasks.teardown_deployment,
                name=TEARDOWN_DEPLOYMENT,
                max_tries=MAX_TRIES,
                keep_result=0,
                timeout=TEARDOWN_TIMEOUT_SECONDS,
            ),
            func(
                tasks.run_revision,
                name="run_revision",
                max_tries=MAX_TRIES,
                timeout=JOB_TIMEOUT_SECONDS,
            ),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": redis_settings(settings),
        "queue_name": QUEUE_NAME,
        "max_jobs": settings.worker_max_jobs,
        "keep_result": KEEP_RESULT_SECONDS,
        "handle_signals": True,
        # No pause between two looks at the queue: the worker waits for work (see above).
        "poll_delay": 0,
    }
    options.update(overrides)
    return ReconnectingWorker(**options)
