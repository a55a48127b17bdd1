"""How a revision's run ends early: failed (the reason and the log's tail reported, what it
started stopped, its image removed) or cancelled (a push or a teardown overtook it: what it
made is undone, and a teardown that raced it is finished)."""

from __future__ import annotations

from app.deployments.revisions import transition
from app.deployments.teardown import Teardown
from app.feedback.notify_outbox import NotificationOutbox, NotifyEvent
from app.feedback.outbox import ReportOutbox
from app.feedback.reports import LOG_TAIL_LINES, load_ref
from app.kernel.db import SessionFactory
from app.kernel.models import IN_FLIGHT_STATES, Deployment, RevisionState
from app.kernel.ports import Clock, ContainerRuntime, PreviewNotifier
from app.replicas.replica_set import Replicas
from app.rollout.phases.context import RevisionContext, log, record, tell_previews
from manifests.errors import Annotation, SlipwayError


class Endings:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        reports: ReportOutbox,
        replicas: Replicas,
        runtime: ContainerRuntime,
        notifier: PreviewNotifier,
        teardown: Teardown,
        clock: Clock,
        notifications: NotificationOutbox,
    ) -> None:
        self._sessions = sessions
        self._reports = reports
        self._replicas = replicas
        self._runtime = runtime
        self._notifier = notifier
        self._teardown = teardown
        self._clock = clock
        self._notifications = notifications

    def failed(
        self, ctx: RevisionContext, reason: str, *, annotations: tuple[Annotation, ...] = ()
    ) -> None:
        """The revision ends failed, if it is still in flight; the live one keeps serving."""
        redact, revision_id = ctx.redact, ctx.revision.id
        reason = redact(reason)
        ctx.log.append(f"slipway: failed: {reason}")
        for annotation in annotations:
            ctx.log.append(
                f"slipway: {annotation.path}:{annotation.start_line}: {redact(annotation.message)}"
            )
        with self._sessions() as session:
            moved = transition(
                session,
                revision_id,
                IN_FLIGHT_STATES,
                RevisionState.failed,
                error=reason,
                finished_at=self._clock(),
            )
            ref = load_ref(session, revision_id)  # as the failure left it: what serves now
        if not moved:
            # Cancelled meanwhile, or already live when a later step failed: its replicas
            # are not this failure's to stop.
            log.warning(
                "error after the revision left the pipeline",
                extra={
                    "revision_id": revision_id,
                    "state": ref.revision.state.value,
                    "reason": reason,
                },
            )
            return
        self._notifier.capacity_freed()  # a failed build frees its slot
        self._replicas.stop_revision(revision_id)
        if ref.revision.image is not None:  # a failed revision's image is never run again
            self._runtime.remove_image(ref.revision.image)
            record(self._sessions, revision_id, image=None)
        ctx.event("revision failed", reason=reason)
        self._reports.add(
            revision_id,
            "failed",
            reason=reason,
            log_tail=redact(ctx.log.tail(LOG_TAIL_LINES)),
            serving_id=ref.deployment.live_revision_id,
            url=ctx.config.url(ref.deployment.slug),
            annotations=[{**a.as_github(), "message": redact(a.message)} for a in annotations],
        )
        tell_previews(self._notifier, ref.deployment)
        url = ctx.config.url(ref.deployment.slug)
        serving = (
            "the previous revision keeps serving"
            if ref.deployment.live_revision_id
            else "nothing was serving"
        )
        self._notifications.add(
            ref.deployment.id,
            NotifyEvent.failed,
            f"{ref.deployment.slug}: revision #{ref.revision.number} failed",
            f"Revision #{ref.revision.number} of {ref.deployment.slug} "
            f"(commit {ref.revision.commit_sha[:12]}) failed: {reason}\n"
            f"{serving} at {url}.\nDeployment {ref.deployment.id}, revision {revision_id}.",
            revision_id=revision_id,
        )

    def cancelled_during_build(self, ctx: RevisionContext) -> None:
        ctx.event("revision cancelled during build")
        self._notifier.capacity_freed()
        self._finish_removal(ctx.deployment.id)

    def cancelled_after_build(self, ctx: RevisionContext, image: str) -> None:
        """Cancelled as its build finished: the image is never run."""
        ctx.event("revision cancelled after build")
        self._runtime.remove_image(image)
        self._finish_removal(ctx.deployment.id)

    def cancelled_during_start(self, ctx: RevisionContext) -> None:
        ctx.event("revision cancelled during its start")
        self._replicas.stop_revision(ctx.revision.id)
        self._finish_removal(ctx.deployment.id)

    def _finish_removal(self, deployment_id: str) -> None:
        """A revision of a removed deployment stopped late: redo the teardown for what it made."""
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None or deployment.removed_at is None:
                return
            is_preview = deployment.is_preview
        try:
            self._teardown.remove(
                deployment_id, drop_database=is_preview, reason="the deployment was removed"
            )
        except SlipwayError as exc:
            log.warning(
                "late teardown incomplete",
                extra={"deployment_id": deployment_id, "error": str(exc)},
            )
