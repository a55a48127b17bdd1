"""The one Slipway comment on a pull request: what it says, and how it stays one.

Every change a comment shows bumps `PullRequest.comment_version`; `sync` renders the current
state from the control plane and writes it, created once and edited after. Only the holder of
a short lease on the pull request's row writes, so two workers (or two quick deliveries) never
both create a comment; a bump made while another worker holds the lease is seen by that worker
before it lets go. The comment id is stored, and the body carries a hidden marker, so a lost row
or a restart finds the same comment again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from app.kernel.db import SessionFactory
from app.kernel.errors import GitHubError
from app.kernel.leases import Lease
from app.kernel.models import (
    Deployment,
    PullRequest,
    PullRequestState,
    Repository,
    Revision,
    RevisionState,
)
from app.kernel.ports import Clock, GitHubPort
from manifests.errors import SlipwayError
from manifests.run import RunConfig

log = logging.getLogger(__name__)

MARKER = "<!-- slipway:preview -->"
"""Hidden in every Slipway comment: how it is found again when its id was lost."""
LEASE = timedelta(seconds=15)
"""Renewed while its holder writes, so a worker that died holding it is waited out in seconds."""


class CommentNotUpdated(SlipwayError):
    """GitHub refused or did not answer; a later sync writes the comment."""


@dataclass(frozen=True)
class CommentRevision:
    """A revision as the comment shows it (the API's RevisionView is another, fuller view)."""

    number: int
    state: RevisionState
    commit_sha: str
    error: str | None
    revision_url: str
    log_url: str
    waiting_for_approval: bool = False


@dataclass(frozen=True)
class CommentView:
    """Everything the comment shows, read from the control plane at one moment."""

    number: int
    url: str
    hostname: str
    updated_at: datetime
    latest: CommentRevision | None
    serving: CommentRevision | None
    """The live revision when it is not the latest one."""
    removed: bool = False
    removed_because: str | None = None
    closed: bool = False
    """The pull request is closed (reopening it brings the preview back)."""
    note: str | None = None
    traces_url: str | None = None
    """The preview's tracing project on LangSmith, once made."""
    studio_url: str | None = None
    """LangGraph Studio on the preview (LangGraph deployments, when the platform traces)."""


STATE_LINES: dict[RevisionState, str] = {
    RevisionState.queued: "⏳ Queued",
    RevisionState.building: "🔨 Building",
    RevisionState.deploying: "🚀 Deploying",
    RevisionState.live: "✅ Live",
    RevisionState.failed: "❌ Failed",
    RevisionState.cancelled: "⏹️ Cancelled",
    RevisionState.superseded: "⏹️ Replaced",
}


def render_preview_comment(view: CommentView) -> str:
    """The comment's Markdown; pure, so every wording is tested alone."""
    updated = view.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [MARKER]
    if view.removed:
        lines += [
            f"**Slipway preview** for #{view.number} · 🗑️ **Removed**",
            "",
            f"The preview `{view.hostname}` was removed "
            f"{view.removed_because or 'when the pull request was closed'}: its container, "
            "database and images are gone."
            + (" Reopening the pull request deploys a new one." if view.closed else ""),
            "",
            f"<sub>Updated {updated}</sub>",
        ]
        return "\n".join(lines) + "\n"
    latest = view.latest
    if latest is None:
        lines += [
            f"**Slipway preview** for #{view.number} · {view.note or 'nothing deployed yet'}",
            "",
            f"<sub>Updated {updated}</sub>",
        ]
        return "\n".join(lines) + "\n"
    state = STATE_LINES[latest.state]
    if latest.waiting_for_approval:
        state = "✋ Waiting for approval"
    lines += [f"**Slipway preview** for #{view.number} · {state}", ""]
    if latest.waiting_for_approval:
        lines += [
            "This pull request comes from a fork, so nobody with access to this repository has "
            "reviewed its code yet. A maintainer (write permission or more) must press "
            "**Deploy preview** on the Slipway check run of this commit before it is built.",
            "",
        ]
    elif latest.state is RevisionState.failed and latest.error:
        lines += [f"**Why:** {latest.error.splitlines()[0]}", ""]
    if view.note:
        lines += [view.note, ""]
    if view.serving is not None:
        serving = view.serving
        lines += [
            f"Revision #{serving.number} (`{serving.commit_sha[:7]}`) keeps serving the preview.",
            "",
        ]
    lines += [
        "| | |",
        "| --- | --- |",
        f"| **Preview** | {view.url} |",
        f"| **Commit** | `{latest.commit_sha[:7]}` |",
        f"| **Revision** | #{latest.number} · [details]({latest.revision_url}) · "
        f"[build log]({latest.log_url}) |",
    ]
    if view.traces_url:
        lines.append(f"| **Traces** | [LangSmith project]({view.traces_url}) |")
    if view.studio_url:
        lines.append(f"| **Studio** | [Open in Studio]({view.studio_url}) |")
    lines.append(f"| **Updated** | {updated} |")
    return "\n".join(lines) + "\n"


class PreviewComments:
    """Keeps each pull request's comment in step with its preview."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        github: GitHubPort,
        clock: Clock,
        url: Callable[[str], str],
        hostname: Callable[[str], str],
        revision_url: Callable[[str], str],
        log_url: Callable[[str], str],
        enqueue: Callable[[str], None] | None = None,
        studio_url: Callable[[str], str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._github = github
        self._clock = clock
        self._url = url
        self._hostname = hostname
        self._revision_url = revision_url
        self._log_url = log_url
        self._studio_url = studio_url
        self._enqueue = enqueue or self.sync
        self._lease = Lease(
            sessions,
            clock,
            key=col(PullRequest.id),
            until=col(PullRequest.comment_lease_until),
            duration=LEASE,
        )

    def use_queue(self, enqueue: Callable[[str], None]) -> None:
        """The worker hands syncs to the queue, so GitHub is never on the pipeline's path."""
        self._enqueue = enqueue

    # -- marking changes ---------------------------------------------------------------------
    def deployment_changed(self, deployment_id: str) -> None:
        """A preview's revision moved: its pull request's comment has something new to say."""
        with self._sessions() as session:
            pull_request_id = session.exec(
                select(PullRequest.id).where(PullRequest.deployment_id == deployment_id)
            ).first()
            if pull_request_id is None:
                return
            session.execute(
                update(PullRequest)
                .where(col(PullRequest.id) == pull_request_id)
                .values(comment_version=col(PullRequest.comment_version) + 1)
            )
            session.commit()
        self._enqueue(pull_request_id)

    def pull_request_changed(self, pull_request_id: str) -> None:
        """Called after the bump was committed with the change itself (by a delivery)."""
        self._enqueue(pull_request_id)

    # -- writing the comment -----------------------------------------------------------------
    def sync(self, pull_request_id: str) -> None:
        """Bring the comment up to date; raises CommentNotUpdated when GitHub failed."""
        while True:
            with self._lease.held(pull_request_id) as held:
                if not held:
                    return  # its holder writes this change too
                self._write_until_current(pull_request_id)
            if self._is_current(pull_request_id):
                return
            # A bump landed between the last write and the release: go round again.

    def _write_until_current(self, pull_request_id: str) -> None:
        while True:
            with self._sessions() as session:
                pull_request = session.get(PullRequest, pull_request_id)
                if pull_request is None:
                    return
                version = pull_request.comment_version
                if version <= pull_request.comment_rendered_version:
                    return
                repository = session.get(Repository, pull_request.repository_id)
                assert repository is not None
                if pull_request.deployment_id is None and pull_request.note is None:
                    # Nothing to say (previews off, a draft skipped): no comment is made.
                    pull_request.comment_rendered_version = version
                    session.add(pull_request)
                    session.commit()
                    return
                body = render_preview_comment(self._view(pull_request))
                comment_id = pull_request.comment_id
                installation_id, full_name = repository.installation_id, repository.full_name
                number = pull_request.number
            comment_id = self._write(installation_id, full_name, number, comment_id, body)
            with self._sessions() as session:
                stored = session.get(PullRequest, pull_request_id)
                assert stored is not None
                stored.comment_id = comment_id
                stored.comment_rendered_version = max(stored.comment_rendered_version, version)
                session.add(stored)
                session.commit()
            log.info(
                "pull request comment written",
                extra={"pull_request": number, "repository": full_name, "comment_id": comment_id},
            )

    def _write(
        self,
        installation_id: int,
        full_name: str,
        number: int,
        comment_id: int | None,
        body: str,
    ) -> int:
        try:
            if comment_id is None:
                comment_id = self._github.find_comment(installation_id, full_name, number, MARKER)
            if comment_id is not None and self._github.update_comment(
                installation_id, full_name, comment_id, body
            ):
                return comment_id
            return self._github.create_comment(installation_id, full_name, number, body)
        except GitHubError as exc:
            log.warning(
                "pull request comment not written",
                extra={"pull_request": number, "repository": full_name, "error": str(exc)},
            )
            raise CommentNotUpdated(str(exc)) from exc

    def _view(self, pull_request: PullRequest) -> CommentView:
        with self._sessions() as session:
            deployment = (
                session.get(Deployment, pull_request.deployment_id)
                if pull_request.deployment_id
                else None
            )
            latest = serving = None
            removed_because = None
            if deployment is not None:
                newest = session.exec(
                    select(Revision)
                    .where(Revision.deployment_id == deployment.id)
                    .order_by(col(Revision.number).desc())
                ).first()
                latest = self._revision_view(newest) if newest else None
                live_id = deployment.live_revision_id
                if live_id and newest is not None and live_id != newest.id:
                    live = session.get(Revision, live_id)
                    serving = self._revision_view(live) if live else None
            removed = deployment is not None and deployment.removed_at is not None
            if removed:
                removed_because = pull_request.note
            slug = deployment.slug if deployment is not None else ""
            studio = None
            if deployment is not None and self._studio_url is not None:
                live = (
                    session.get(Revision, deployment.live_revision_id)
                    if deployment.live_revision_id
                    else None
                )
                runs_langgraph = (
                    live is not None
                    and live.run_config is not None
                    and RunConfig.from_json(live.run_config).langgraph_runtime is not None
                )
                if runs_langgraph:
                    studio = self._studio_url(self._url(slug))
            return CommentView(
                number=pull_request.number,
                url=self._url(slug),
                hostname=self._hostname(slug),
                updated_at=self._clock(),
                latest=latest,
                serving=serving,
                removed=removed,
                removed_because=removed_because,
                closed=pull_request.state is PullRequestState.closed,
                note=None if removed else pull_request.note,
                traces_url=deployment.tracing_project_url if deployment is not None else None,
                studio_url=studio,
            )

    def _revision_view(self, revision: Revision) -> CommentRevision:
        return CommentRevision(
            number=revision.number,
            state=revision.state,
            commit_sha=revision.commit_sha,
            error=revision.error,
            revision_url=self._revision_url(revision.id),
            log_url=self._log_url(revision.id),
            waiting_for_approval=revision.approval_required
            and revision.approved_by is None
            and revision.state is RevisionState.queued,
        )

    # -- the lease ---------------------------------------------------------------------------
    def _is_current(self, pull_request_id: str) -> bool:
        with self._sessions() as session:
            pull_request = session.get(PullRequest, pull_request_id)
            return (
                pull_request is None
                or pull_request.comment_version <= pull_request.comment_rendered_version
            )


def bump(pull_request: PullRequest, now: datetime) -> None:
    """Mark the comment stale inside the transaction that changed what it shows."""
    pull_request.comment_version += 1
    pull_request.updated_at = now
