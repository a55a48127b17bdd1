"""The life of one revision, as a list of phases: admit → fetch → build → deploy → go live →
retire (app/rollout/phases/), and how a run that stops early ends (app/rollout/endings.py).

Safe to run twice for the same revision (arq delivers at least once, and a worker that died
mid-way is retried): every phase either checks what is already done or is idempotent, and the
state column moves only by compare-and-set, so a cancelled revision never goes live.

The revision is loaded once when the run starts; each phase reads what it needs of it from
that (see phases/context.py). Only the route switch (under the route lock) and a failure's
report (which says what serves now) read it again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from sqlmodel import select

from app.feedback.notify_outbox import NotificationOutbox
from app.feedback.outbox import ReportOutbox
from app.feedback.reports import Redactor, RevisionRef, awaits_approval, load_ref
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import RevisionAbandoned
from app.kernel.models import IN_FLIGHT_STATES, Revision, RevisionState
from app.kernel.ports import Clock, PreviewNotifier
from app.replicas.routes import RouteTable
from app.rollout.config import PipelineConfig
from app.rollout.endings import Endings
from app.rollout.heartbeats import heartbeat
from app.rollout.phases.admit import Admit
from app.rollout.phases.build import Build, Image
from app.rollout.phases.context import RevisionContext, log, tell_previews
from app.rollout.phases.deploy import Deploy
from app.rollout.phases.fetch import Fetch
from app.rollout.phases.go_live import GoLive
from app.rollout.phases.retire import KEEP_IMAGES, Retire
from builders.errors import BuildCancelled
from manifests.errors import ConfigError, SlipwayError

__all__ = ["KEEP_IMAGES", "Phases", "PipelineConfig", "RevisionPipeline"]


@dataclass(frozen=True)
class Phases:
    """A revision's phases in the order a run goes through them, and how a run that stops early
    ends. app/bootstrap.py builds each over the ports it needs, so the pipeline holds only what
    it uses itself, and a test can hand it a phase of its own."""

    admit: Admit
    fetch: Fetch
    build: Build
    deploy: Deploy
    go_live: GoLive
    retire: Retire
    endings: Endings


class RevisionPipeline:
    def __init__(
        self,
        *,
        phases: Phases,
        config: PipelineConfig,
        sessions: SessionFactory,
        secrets: SecretBox,
        reports: ReportOutbox,
        routes: RouteTable,
        notifier: PreviewNotifier,
        notifications: NotificationOutbox,
        clock: Clock,
    ) -> None:
        self.config = config
        self._sessions = sessions
        self._secrets = secrets
        self._reports = reports
        self._routes = routes
        self._clock = clock
        self._notifier = notifier
        self._notifications = notifications
        self._admit = phases.admit
        self._fetch = phases.fetch
        self._build = phases.build
        self._deploy = phases.deploy
        self._go_live = phases.go_live
        self._retire = phases.retire
        self._endings = phases.endings

    # -- public entry points ----------------------------------------------------------------
    def announce(self, revision_id: str) -> None:
        """Have the check run and the GitHub deployment opened (once; later calls do nothing)."""
        self._reports.add(revision_id, "announce")

    def report_cancelled(self, revision_id: str) -> None:
        self._reports.add(revision_id, "cancelled")

    def report_approved(self, revision_id: str) -> None:
        """A maintainer approved a fork's commit: the approval check run closes, and the build
        gets its own check run and GitHub deployment."""
        login = self._load(revision_id).revision.approved_by or "a maintainer"
        self._reports.add(revision_id, "approved", login=login)

    def report_approval_refused(self, revision_id: str, login: str, role: str) -> None:
        self._reports.add(revision_id, "approval_refused", login=login, role=role)

    def startable(self) -> list[str]:
        """Queued revisions the limits would let start now (their jobs decide for real)."""
        return self._admit.startable()

    def sync_routes(self) -> None:
        """Put the database's routes into the router (after either of them restarted)."""
        self._routes.apply()

    def run(self, revision_id: str, *, resume: bool = True) -> RevisionState:
        """Take the revision as far as it goes. `resume` picks up a revision a dead worker left
        building or deploying; without it (a first try) such a revision belongs to another job.
        A queued revision starts only when admitted (build slots, preview places); otherwise it
        stays queued, says why, and is dispatched again when capacity frees.
        """
        ref = self._load(revision_id)
        state = ref.revision.state
        if state is RevisionState.live:
            self._retire.leftovers(ref.deployment.id)  # a retry after dying at the switch
        if state not in IN_FLIGHT_STATES:
            return state
        ctx = RevisionContext(ref=ref, config=self.config, redact=self._redactor(ref))
        if awaits_approval(ref.revision):
            ctx.event("revision waits for approval")
            return state
        if state is not RevisionState.queued and not resume:
            return state
        self.announce(revision_id)
        ctx.event("revision started", state=state.value)
        stays = self._admit.run(ctx)
        if stays is not None:
            return stays
        # Beat while this job builds and starts the revision (see app/rollout/recovery.py).
        with heartbeat(self._sessions, revision_id, self._clock):
            return self._phases(ctx)

    # -- the phases ---------------------------------------------------------------------------
    def _phases(self, ctx: RevisionContext) -> RevisionState:
        """Fetch → build → deploy → go live → retire; any error ends the revision here."""
        revision_id = ctx.revision.id
        try:
            image = self._image(ctx)
            moved = self._deploy.begin(ctx, image)
            self._notifier.capacity_freed()  # its build slot: the revision left `building`
            if not moved:
                self._endings.cancelled_after_build(ctx, image.tag)
                return RevisionState.cancelled
            self._reports.add(revision_id, "deploying", image=image.tag)
            tell_previews(self._notifier, ctx.deployment)
            self._deploy.run(ctx, image)
            live = self._go_live.run(ctx)
            if live is not None:
                self._retire.run(live)
        except BuildCancelled:
            self._endings.cancelled_during_build(ctx)
            return RevisionState.cancelled
        except RevisionAbandoned:
            self._endings.cancelled_during_start(ctx)
            return RevisionState.cancelled
        except SlipwayError as exc:
            annotations = exc.annotations if isinstance(exc, ConfigError) else ()
            self._endings.failed(ctx, str(exc), annotations=annotations)
            return RevisionState.failed
        except Exception as exc:
            log.exception("revision crashed", extra={"revision_id": revision_id})
            self._endings.failed(
                ctx,
                f"internal error in Slipway ({type(exc).__name__}); the platform log has details",
            )
            return RevisionState.failed
        finally:
            shutil.rmtree(self.config.builds_dir / revision_id, ignore_errors=True)
        with self._sessions() as session:
            state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
        return RevisionState(state)

    def _image(self, ctx: RevisionContext) -> Image:
        """A rollback's source image while it is kept; else the commit fetched and built."""
        if ctx.revision.rollback_of is not None:
            reused = self._build.reuse(ctx)
            if reused is not None:
                return reused
        source = self._fetch.run(ctx)
        # The deployment's own channels follow its newest commit, failed or not.
        self._notifications.remember_channels(ctx.deployment.id, source.config.notify.urls)
        return self._build.run(ctx, source)

    # -- helpers ------------------------------------------------------------------------------
    def _load(self, revision_id: str) -> RevisionRef:
        with self._sessions() as session:
            return load_ref(session, revision_id)

    def _redactor(self, ref: RevisionRef) -> Redactor:
        env = self._secrets.decrypt_env(ref.revision.env_encrypted)
        return Redactor([*env.values(), *self.config.platform_secrets])
