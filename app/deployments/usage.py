"""The usage tick: which deployments were used today, and the idle rules carried out.

Used means it served a request through the router or emitted a trace (its LangSmith project's
last run, one call per hundred deployments) — never a poll of each deployment. Requests are
read from the metrics sampler's 10 s points (app/replicas/metrics.py), the one read of the
router there is: the sampler already follows Caddy's counts across the configuration loads that
start them again (each route change), so a request between a read and a load is not lost, as it
was when this tick read the counters itself. A point newer than the deployment's last use is a
use on the point's day. The verdict is `app.deployments.idle.judge`'s; this module records the
day, tells the owners with one GitHub issue (opened, closed when the deployment is used again
or deleted, reopened for a later idle spell) and the notification channels (the operator's
SLIPWAY_NOTIFY, the repository's `[notify] urls`), and deletes. The notice is given once one of
them carried it; a refused issue (issues turned off, no permission) is recorded, shown by the
API and tried again a day later, and a notice no channel carried holds the deletion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from app.deployments.idle import IdleAction, IdleRules, IdleVerdict, judge, preview_removal_at
from app.deployments.operations import delete_deployment
from app.deployments.previews import DEFAULT_LABEL, mark_removed, pull_request_of, shown_label
from app.deployments.registry import DEFAULT_SLUG_HOLD
from app.feedback.comments import bump
from app.feedback.notify_outbox import NotificationOutbox, NotifyEvent
from app.kernel.db import SessionFactory
from app.kernel.errors import GitHubError, TracingError
from app.kernel.models import Deployment, MetricPoint, Notification, Repository, UsageDay
from app.kernel.orders import TeardownOrder, WorkOrder
from app.kernel.ports import Clock, GitHubPort, TracingService
from app.replicas.metrics import FINE_STEP_SECONDS
from manifests.config import describe_idle_ttl

log = logging.getLogger(__name__)

NOTICE_MARK = "<!-- slipway:idle-notice -->"
"""In the issue's body: the one Slipway opened (found again only by its stored number)."""
DELETED_BY = "Slipway's idle rules"


def idle_verdict(
    session: Session, deployment: Deployment, rules: IdleRules, now: datetime
) -> IdleVerdict:
    """What the rules say of it now (the API shows when it would be noticed and deleted).
    Previews are not theirs: a preview goes with its pull request."""
    days = session.exec(select(UsageDay.day).where(UsageDay.deployment_id == deployment.id)).all()
    noticed_at = deployment.idle_noticed_at
    if noticed_at is None and deployment.idle_notice_tried_at is not None:
        # Delivered since the tick last looked (the worker's drain sends): told already.
        noticed_at = channel_notices(session, deployment).delivered_at
    return judge(
        rules=rules,
        used_days=days,
        counted_from=deployment.last_used_at or now,
        now=now,
        keep=deployment.keep or deployment.is_preview,
        noticed_at=noticed_at,
        notice_tried_at=deployment.idle_notice_tried_at,
        notice_retry_at=deployment.idle_notice_retry_at,
    )


@dataclass(frozen=True)
class ChannelNotices:
    """What became of the notice of a deployment's current unused spell on the notification
    channels (rows of `notifications` recorded since it was first sent out)."""

    delivered_at: datetime | None = None
    """The first delivery to a channel; None: none yet."""
    pending: int = 0
    """Rows still being tried."""
    given_up: int = 0


def channel_notices(session: Session, deployment: Deployment) -> ChannelNotices:
    if deployment.idle_notice_tried_at is None:
        return ChannelNotices()
    rows = session.exec(
        select(Notification.sent_at, Notification.gave_up_at).where(
            Notification.deployment_id == deployment.id,
            Notification.event == str(NotifyEvent.idle_notice),
            col(Notification.created_at) >= deployment.idle_notice_tried_at,
        )
    ).all()
    sent = [at for at, _ in rows if at is not None]
    return ChannelNotices(
        delivered_at=min(sent, default=None),
        pending=sum(1 for at, gave_up in rows if at is None and gave_up is None),
        given_up=sum(1 for _, gave_up in rows if gave_up is not None),
    )


def notice_held_because(deployment: Deployment, channels: ChannelNotices) -> str:
    """Why a deployment whose notice reached no channel is not deleted (the API shows it)."""
    issue = (
        f"its GitHub issue could not be opened ({deployment.idle_notice_error})"
        if deployment.idle_notice_error
        else "its GitHub issue is not open yet"
    )
    if channels.pending:
        others = f"{channels.pending} notification channel(s) are still being tried"
    elif channels.given_up:
        others = f"the {channels.given_up} notification channel(s) could not deliver it"
    else:
        others = "no notification channel is configured (SLIPWAY_NOTIFY, [notify] urls)"
    retry = deployment.idle_notice_retry_at
    again = f"; the issue is tried again at {retry:%Y-%m-%d %H:%M:%S} UTC" if retry else ""
    return (
        f"not deleted while the notice that it is unused has reached no one: {issue}, and "
        f"{others}{again}. Once a channel carries the notice, the deletion follows it by the "
        "days between SLIPWAY_IDLE_NOTICE_DAYS and SLIPWAY_IDLE_DELETE_DAYS."
    )


def served_since_last_use(session: Session) -> dict[str, list[tuple[datetime, int]]]:
    """Each deployment's 10 s points with traffic (requests answered, or one still being
    answered: a stream held open is a use) newer than its last use: (when, requests).

    The deployment's `last_used_at` is where the previous tick stopped reading (it moves to the
    newest point counted), so no point is counted twice and none is skipped, whenever the tick
    runs. The points are the sampler's (kept an hour): a tick that did not run for longer
    misses what went before, as the sampler's own series does.
    """
    rows = session.exec(
        select(MetricPoint.deployment_id, MetricPoint.at, MetricPoint.requests)
        .join(Deployment, col(Deployment.id) == col(MetricPoint.deployment_id))
        .where(
            MetricPoint.step_seconds == FINE_STEP_SECONDS,
            or_(col(MetricPoint.requests) > 0, col(MetricPoint.in_flight) > 0),
            col(Deployment.removed_at).is_(None),
            col(Deployment.last_used_at).is_not(None),
            col(MetricPoint.at) > col(Deployment.last_used_at),
        )
        .order_by(col(MetricPoint.at))
    ).all()
    served: dict[str, list[tuple[datetime, int]]] = {}
    for deployment_id, at, requests in rows:
        served.setdefault(deployment_id, []).append((at, requests))
    return served


def preview_removal(deployment: Deployment, rules: IdleRules, now: datetime) -> datetime | None:
    """When a preview is removed for going unused (`[previews] idle_ttl`); None: never.
    Counted from its last use, or from now until the usage tick first looks at it live."""
    if not deployment.is_preview:
        return None
    return preview_removal_at(
        ttl_seconds=rules.ttl_seconds(deployment.preview_idle_ttl),
        last_used_at=deployment.last_used_at or now,
        keep=deployment.keep,
    )


@dataclass
class UsageReport:
    used: int = 0
    noticed: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Previews removed for going unused longer than their `idle_ttl`."""
    orders: list[WorkOrder] = field(default_factory=list)
    """Teardowns of the deleted deployments and removed previews, for the worker."""


class UsageTracker:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        github: GitHubPort,
        tracing: TracingService | None,
        rules: IdleRules,
        hostname: Callable[[str], str],
        url: Callable[[str], str],
        clock: Clock,
        slug_hold: timedelta = DEFAULT_SLUG_HOLD,
        notifications: NotificationOutbox | None = None,
        requests_counted: bool = True,
    ) -> None:
        """`requests_counted`: the metrics sampler runs. Without it (SLIPWAY_METRICS=false)
        nothing tells whether a deployment serves requests, so each look counts as a use: no
        deployment is judged unused for lack of a signal."""
        self._sessions = sessions
        self._github = github
        self._tracing = tracing
        self._notifications = notifications
        self.rules = rules
        self._hostname = hostname
        self._url = url
        self._clock = clock
        self._slug_hold = slug_hold
        self._requests_counted = requests_counted

    def verdict(self, deployment: Deployment, session: Session, now: datetime) -> IdleVerdict:
        return idle_verdict(session, deployment, self.rules, now)

    def tick(self) -> UsageReport:
        now = self._clock()
        report = UsageReport()
        with self._sessions() as session:
            # Counted once live: days spent building or waiting are no one's idleness.
            deployments = session.exec(
                select(Deployment).where(
                    col(Deployment.removed_at).is_(None),
                    col(Deployment.live_revision_id).is_not(None),
                )
            ).all()
            served = served_since_last_use(session)
            runs = self._last_runs([d.tracing_project_id for d in deployments])
            for deployment in deployments:
                if self._record(session, deployment, served, runs, now):
                    report.used += 1
            self._carried_by_channels(session)
            session.commit()
            for deployment in deployments:
                self._apply(session, deployment, now, report)
            self._withdraw_for_deleted(session, report)
            self._forget_old_days(session, now)
        if report.noticed or report.withdrawn or report.deleted or report.removed:
            log.info(
                "idle rules applied",
                extra={
                    "noticed": report.noticed,
                    "withdrawn": report.withdrawn,
                    "deleted": report.deleted,
                    "removed": report.removed,
                },
            )
        return report

    # -- what was used ---------------------------------------------------------------------
    def _last_runs(self, project_ids: list[str | None]) -> dict[str, datetime | None]:
        ids = [i for i in project_ids if i]
        if self._tracing is None or not ids:
            return {}
        try:
            return self._tracing.last_runs(ids)
        except TracingError as exc:
            log.warning("trace usage not read", extra={"error": str(exc)})
            return {}

    def _record(
        self,
        session: Session,
        deployment: Deployment,
        served: dict[str, list[tuple[datetime, int]]],
        runs: dict[str, datetime | None],
        now: datetime,
    ) -> bool:
        used_at: list[datetime] = []
        if deployment.last_used_at is not None:
            # Before the first look nothing is counted: the rules count from that look.
            for at, requests in served.get(deployment.id, []):
                used_at.append(at)
                self._day(session, deployment.id, at).requests += requests
        last_run = runs.get(deployment.tracing_project_id or "")
        if last_run is not None and (
            deployment.last_used_at is None or last_run > deployment.last_used_at
        ):
            moment = min(last_run, now)
            used_at.append(moment)
            self._day(session, deployment.id, moment).traces = True
        if used_at:
            deployment.last_used_at = max([*used_at, deployment.last_used_at or now])
        elif deployment.last_used_at is None or not self._requests_counted:
            deployment.last_used_at = now  # first looked at (or unknown): counted from now
        session.add(deployment)
        return bool(used_at)

    def _day(self, session: Session, deployment_id: str, moment: datetime) -> UsageDay:
        day = self.rules.day_of(moment)
        record = session.get(UsageDay, (deployment_id, day))
        if record is None:
            record = UsageDay(deployment_id=deployment_id, day=day)
            session.add(record)
            session.flush()  # a second use the same tick finds it
        return record

    # -- the rules carried out -------------------------------------------------------------
    def _carried_by_channels(self, session: Session) -> None:
        """A notice not yet carried is given once a notification channel delivered it (the
        worker's drain sends them, off this tick): the deletion is counted from that moment."""
        rows = session.exec(
            select(Deployment.id, func.min(Notification.sent_at))
            .join(Notification, col(Notification.deployment_id) == col(Deployment.id))
            .where(
                col(Deployment.removed_at).is_(None),
                col(Deployment.idle_noticed_at).is_(None),
                col(Deployment.idle_notice_tried_at).is_not(None),
                Notification.event == str(NotifyEvent.idle_notice),
                col(Notification.sent_at).is_not(None),
                col(Notification.created_at) >= col(Deployment.idle_notice_tried_at),
            )
            .group_by(col(Deployment.id))
        ).all()
        for deployment_id, delivered_at in rows:
            deployment = session.get(Deployment, deployment_id)
            if deployment is not None and delivered_at is not None:
                deployment.idle_noticed_at = delivered_at
                session.add(deployment)

    def _apply(
        self, session: Session, deployment: Deployment, now: datetime, report: UsageReport
    ) -> None:
        if deployment.is_preview:
            remove_at = preview_removal(deployment, self.rules, now)
            if remove_at is not None and now >= remove_at:
                report.orders.append(self._remove_preview(session, deployment, now))
                report.removed.append(deployment.id)
            return
        verdict = self.verdict(deployment, session, now)
        if verdict.action is IdleAction.none:
            return
        repository = session.get(Repository, deployment.repository_id)
        if repository is None:
            return
        try:
            if verdict.action is IdleAction.notice:
                self._notice(session, deployment, repository, verdict, now)
                report.noticed.append(deployment.id)
            elif verdict.action is IdleAction.withdraw:
                self._close(session, deployment, repository, used_again=True)
                report.withdrawn.append(deployment.id)
            elif verdict.action is IdleAction.delete:
                report.orders.append(self._delete(session, deployment, repository, verdict, now))
                report.deleted.append(deployment.id)
        except GitHubError as exc:
            # Closing the issue is tried again next tick; a deletion never waits on GitHub.
            log.warning(
                "idle notice not closed",
                extra={"deployment_id": deployment.id, "error": str(exc)},
            )

    def _notice(
        self,
        session: Session,
        deployment: Deployment,
        repository: Repository,
        verdict: IdleVerdict,
        now: datetime,
    ) -> None:
        """Tell the owners: the GitHub issue and, the first time in this unused spell (or again
        when none carried it), the notification channels. A refused issue is recorded and
        tried again a day later, not every tick; the notice is given once one channel carried
        it (`judge` holds the deletion until then)."""
        first = deployment.idle_notice_tried_at is None
        if first:
            deployment.idle_notice_tried_at = now
        title = f"Slipway: deployment {deployment.slug} is unused"
        when = verdict.delete_at.strftime("%Y-%m-%d %H:%M UTC") if verdict.delete_at else None
        unused = (
            f"The deployment **{deployment.slug}** ({self._url(deployment.slug)}) has "
            f"served no request and emitted no trace for {verdict.unused_days} days."
        )
        fate = (
            f"It will be **deleted on {when}**, its database with it, unless it is used before "
            "then."
            if when
            else "Slipway does not delete unused deployments on this platform."
        )
        keep = (
            "Any request to it (or a trace) keeps it and closes this issue. To keep it "
            "however long it is unused: `PATCH /api/deployments/"
            f'{deployment.id}` with `{{"keep": true}}`.'
        )
        body = "\n".join([NOTICE_MARK, unused, "", fate, "", keep])
        try:
            self._open_issue(deployment, repository, title, body)
        except GitHubError as exc:
            deployment.idle_notice_error = str(exc)
            deployment.idle_notice_retry_at = now + timedelta(seconds=self.rules.day_seconds)
            log.warning(
                "idle notice issue not opened; tried again in a day",
                extra={
                    "deployment_id": deployment.id,
                    "error": str(exc),
                    "retry_at": deployment.idle_notice_retry_at.isoformat(),
                },
            )
        else:
            deployment.idle_noticed_at = deployment.idle_noticed_at or now
            deployment.idle_notice_error = None
            deployment.idle_notice_retry_at = None
        session.add(deployment)
        session.commit()
        if self._notifications is not None and (
            first or self._untold_anywhere(session, deployment)
        ):
            # Plain text (no Markdown), the same words; the channels only hear of the notice.
            self._notifications.add(
                deployment.id,
                NotifyEvent.idle_notice,
                f"{deployment.slug}: unused for {verdict.unused_days} days",
                "\n".join(
                    [
                        unused.replace("**", ""),
                        fate.replace("**", ""),
                        "Any request to it (or a trace) keeps it. To keep it however long it "
                        f'is unused: PATCH /api/deployments/{deployment.id} with {{"keep": '
                        "true}.",
                        f"Deployment {deployment.id}.",
                    ]
                ),
            )

    def _untold_anywhere(self, session: Session, deployment: Deployment) -> bool:
        """Nothing carried the notice and no channel is still trying: worth sending again."""
        return (
            deployment.idle_noticed_at is None and channel_notices(session, deployment).pending == 0
        )

    def _open_issue(
        self, deployment: Deployment, repository: Repository, title: str, body: str
    ) -> None:
        installation, full_name = repository.installation_id, repository.full_name
        opened = False
        if deployment.idle_issue_number is not None:
            opened = self._github.update_issue(
                installation,
                full_name,
                deployment.idle_issue_number,
                title=title,
                body=body,
                state="open",
            )
        if not opened:
            deployment.idle_issue_number = self._github.create_issue(
                installation, full_name, title, body
            )

    def _close(
        self,
        session: Session,
        deployment: Deployment,
        repository: Repository,
        *,
        used_again: bool,
        note: str | None = None,
    ) -> None:
        if deployment.idle_issue_number is not None and deployment.idle_notice_error is None:
            why = note or (
                "It was used again (or exempted with keep): it stays."
                if used_again
                else "It was deleted."
            )
            self._github.update_issue(
                repository.installation_id,
                repository.full_name,
                deployment.idle_issue_number,
                title=f"Slipway: deployment {deployment.slug} is unused",
                body=f"{NOTICE_MARK}\n{why}",
                state="closed",
            )
        forget_notice(deployment)
        session.add(deployment)
        session.commit()

    def _delete(
        self,
        session: Session,
        deployment: Deployment,
        repository: Repository,
        verdict: IdleVerdict,
        now: datetime,
    ) -> WorkOrder:
        slug = deployment.slug
        unused = f"unused for {verdict.unused_days} days"
        order = delete_deployment(
            session,
            deployment,
            f"deployment deleted by {DELETED_BY}: {unused}",
            now,
            self._slug_hold,
        )
        log.info(
            "unused deployment deleted",
            extra={"deployment_id": deployment.id, "unused_days": verdict.unused_days},
        )
        if self._notifications is not None:
            # As a DELETE of the API tells them, the reason in place of the caller.
            self._notifications.add(
                deployment.id,
                NotifyEvent.deleted,
                f"{slug}: deleted",
                f"{DELETED_BY} deleted {slug} and its database: {unused}.\n"
                f"Deployment {deployment.id}.",
            )
        try:
            if deployment.idle_issue_number is not None and deployment.idle_notice_error is None:
                self._github.update_issue(
                    repository.installation_id,
                    repository.full_name,
                    deployment.idle_issue_number,
                    title=f"Slipway: deployment {slug} was deleted",
                    body=f"{NOTICE_MARK}\nThe deployment **{slug}** was unused for "
                    f"{verdict.unused_days} days and was deleted, its database with it.",
                    state="closed",
                )
            forget_notice(deployment)
            session.add(deployment)
            session.commit()
        except GitHubError as exc:
            log.warning(
                "idle notice not closed", extra={"deployment_id": deployment.id, "error": str(exc)}
            )
        return order

    def _remove_preview(self, session: Session, deployment: Deployment, now: datetime) -> WorkOrder:
        """As closing its pull request removes it (container, route, database), the pull
        request left open: a new commit, or its preview label put on, deploys a new one (the
        mark set here is what lets the label do so under `trigger = "every-pr"`)."""
        ttl = deployment.preview_idle_ttl or ""
        unused = describe_idle_ttl(ttl)
        removed = mark_removed(session, deployment, f"unused for {unused} (idle_ttl)", now)
        deployment.idle_removed_at = now
        pull_request = pull_request_of(session, deployment)
        if pull_request is not None:
            # The key passed slipway.toml's check (digits and a unit): safe in a code span.
            label = shown_label(deployment.preview_label or DEFAULT_LABEL)
            pull_request.note = (
                f"after {unused} without a request or a trace "
                f'(`idle_ttl = "{ttl}"` in slipway.toml; a new commit on the pull request deploys '
                f"a new one, and so does adding the `{label}` label to it, or taking it off and "
                "adding it again)"
            )
            bump(pull_request, now)
            session.add(pull_request)
        session.commit()
        log.info(
            "unused preview removed",
            extra={"deployment_id": deployment.id, "idle_ttl": ttl},
        )
        return WorkOrder(
            f"preview {deployment.slug} unused for {unused} (idle_ttl): being removed",
            cancelled_revisions=[r.id for r in removed.cancelled],
            teardowns=[TeardownOrder(deployment.id, drop_database=True)],
            comments=[pull_request.id] if pull_request is not None else [],
        )

    def _withdraw_for_deleted(self, session: Session, report: UsageReport) -> None:
        """A deployment deleted through the API while its notice was open: the notice goes."""
        gone = session.exec(
            select(Deployment).where(
                col(Deployment.removed_at).is_not(None),
                or_(
                    col(Deployment.idle_noticed_at).is_not(None),
                    col(Deployment.idle_notice_tried_at).is_not(None),
                ),
            )
        ).all()
        for deployment in gone:
            repository = session.get(Repository, deployment.repository_id)
            if repository is None:
                continue
            note = "It was deleted." if deployment.deleted_at else "It was removed."
            try:
                self._close(session, deployment, repository, used_again=False, note=note)
                report.withdrawn.append(deployment.id)
            except GitHubError as exc:
                log.warning(
                    "idle notice not closed",
                    extra={"deployment_id": deployment.id, "error": str(exc)},
                )

    def _forget_old_days(self, session: Session, now: datetime) -> None:
        """Only the newest use matters to the rules; older days are history nobody reads."""
        horizon = self.rules.day_of(now) - max(self.rules.notice_days, self.rules.delete_days) - 2
        session.exec(delete(UsageDay).where(col(UsageDay.day) < horizon))
        session.commit()


def forget_notice(deployment: Deployment) -> None:
    """The unused spell is over (used again, kept, deleted): a later one starts afresh."""
    deployment.idle_noticed_at = None
    deployment.idle_notice_tried_at = None
    deployment.idle_notice_error = None
    deployment.idle_notice_retry_at = None
