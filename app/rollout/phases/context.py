"""What every phase of a revision's run is handed, and the little all of them share.

A phase reads the revision as loaded once (`RevisionContext.ref`), never again line by line:
what it reads there (ids, number, commit, env, the deployment's slug and type) does not change
while the revision runs. Its state does, under other writers (a push, a teardown): that is never
read from the context but moved or checked by compare-and-set in the control plane.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col

from app.feedback.reports import Redactor, RevisionRef
from app.kernel.db import SessionFactory
from app.kernel.models import Deployment, Revision
from app.kernel.ports import PreviewNotifier
from app.rollout.config import PipelineConfig

log = logging.getLogger("app.rollout.pipeline")
"""One logger for the whole run, whichever phase speaks: operators follow a revision by it."""


@dataclass(frozen=True)
class BuildLog:
    """The revision's log as users read it (the check run links to it; its tail shows a failure)."""

    path: Path

    def append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n")

    def tail(self, lines: int) -> str:
        try:
            content = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(content.splitlines()[-lines:])


@dataclass(frozen=True)
class RevisionContext:
    ref: RevisionRef
    """The revision, its deployment and repository, as loaded when the run started."""
    config: PipelineConfig
    redact: Redactor
    """Hides the revision's env values and the platform's own secrets in what users see."""

    @property
    def revision(self) -> Revision:
        return self.ref.revision

    @property
    def deployment(self) -> Deployment:
        return self.ref.deployment

    @property
    def log(self) -> BuildLog:
        return BuildLog(self.config.log_path(self.ref.revision))

    @property
    def url(self) -> str:
        return self.config.url(self.ref.deployment.slug)

    def event(self, event: str, **fields: object) -> None:
        log.info(
            event,
            extra={"deployment_id": self.deployment.id, "revision_id": self.revision.id, **fields},
        )


def record(sessions: SessionFactory, revision_id: str, **values: object) -> None:
    """Record facts a phase learned (the build method, when a step ended).

    Never the state: that moves only through `transition`, by compare-and-set.
    """
    assert "state" not in values
    with sessions() as session:
        session.execute(update(Revision).where(col(Revision.id) == revision_id).values(**values))
        session.commit()


def tell_previews(notifier: PreviewNotifier, deployment: Deployment) -> None:
    """A preview's pull-request comment shows how its revision is doing: have it redrawn."""
    if deployment.is_preview:
        notifier.deployment_changed(deployment.id)
