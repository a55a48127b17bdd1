"""Feedback to GitHub: one check run and one GitHub deployment per revision.

GitHub being slow or down must never fail or stall a deploy, so every call here is best-effort:
a refusal is logged with the revision id and the pipeline goes on. Texts pass through the
Redactor first: no secret reaches a check run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session

from app.access.links import RevisionLinks
from app.kernel.errors import GitHubError
from app.kernel.models import Deployment, Repository, Revision
from app.kernel.ports import GitHubPort

log = logging.getLogger(__name__)
T = TypeVar("T")

DEPLOY_PREVIEW = "deploy-preview"
"""The check-run action a maintainer presses to let a fork's commit be built."""
DEPLOY_PREVIEW_ACTION = {
    "label": "Deploy preview",
    "description": "Build and run this fork's commit",
    "identifier": DEPLOY_PREVIEW,
}
APPROVAL_SUMMARY = (
    "This pull request comes from a fork: its code has not been reviewed by anyone with access "
    "to this repository, so Slipway does not build it on its own. A user with write permission "
    "(or maintain, or admin) can press **Deploy preview** above to build and deploy this commit "
    "as the pull request's preview. Every new commit from the fork needs approval again."
)
LOG_TAIL_LINES = 40
"""Lines of build/container output shown in a failed check run."""
REDACTED = "[redacted]"


class Redactor:
    """Replaces every known secret value (user env, database password) in text shown to users."""

    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret containing another is hidden whole; short values are
        # skipped since hiding "1" everywhere would destroy the log without protecting anything.
        # A multi-line secret (a PEM key) is also hidden line by line: a log may show it
        # folded or a line at a time.
        lines = {line.strip() for s in secrets if "\n" in s for line in s.splitlines()}
        known = {s for s in secrets if len(s) >= 4} | {line for line in lines if len(line) >= 16}
        self._secrets = sorted(known, key=len, reverse=True)

    def including(self, secret: str) -> Redactor:
        return Redactor([*self._secrets, secret])

    @property
    def hidden(self) -> tuple[str, ...]:
        """The values it replaces: text holding none of them is shown as it is."""
        return tuple(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


@dataclass(frozen=True)
class RevisionRef:
    """Everything a report needs to address GitHub, loaded once by the pipeline."""

    installation_id: int
    repository: Repository
    deployment: Deployment
    revision: Revision


def awaits_approval(revision: Revision) -> bool:
    return revision.approval_required and revision.approved_by is None


def load_ref(session: Session, revision_id: str) -> RevisionRef:
    revision = session.get(Revision, revision_id)
    if revision is None:
        raise LookupError(f"no revision {revision_id}")
    deployment = session.get(Deployment, revision.deployment_id)
    assert deployment is not None
    repository = session.get(Repository, deployment.repository_id)
    assert repository is not None
    return RevisionRef(
        installation_id=repository.installation_id,
        repository=repository,
        deployment=deployment,
        revision=revision,
    )


def _iso(ts: datetime | None) -> str | None:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


PARALLEL_CALLS = 8
"""GitHub calls in flight at once from one worker's reports (two per report, a few drains)."""


class GitHubReporter:
    def __init__(self, github: GitHubPort, *, check_name: str, links: RevisionLinks) -> None:
        self._github = github
        self._check_name = check_name
        self._links = links
        self._calls = ThreadPoolExecutor(max_workers=PARALLEL_CALLS, thread_name_prefix="github")

    def together(self, *calls: Callable[[], T]) -> list[T]:
        """Run calls to different GitHub resources at once (a check run and a deployment have
        no order between them): a report then costs one round trip, not two."""
        if len(calls) <= 1:
            return [call() for call in calls]
        futures = [self._calls.submit(call) for call in calls]
        return [future.result() for future in futures]

    def revision_url(self, revision: Revision) -> str:
        return self.revision_url_of(revision.id)

    def log_url(self, revision: Revision) -> str:
        return self.log_url_of(revision.id)

    def revision_url_of(self, revision_id: str) -> str:
        return self._links.revision(revision_id)

    def log_url_of(self, revision_id: str) -> str:
        return self._links.log(revision_id)

    def _safely(self, ref: RevisionRef, what: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except GitHubError as exc:
            log.warning(
                "github feedback failed",
                extra={
                    "deployment_id": ref.deployment.id,
                    "revision_id": ref.revision.id,
                    "what": what,
                    "error": str(exc),
                },
            )
            return None

    # -- announcing a new revision ----------------------------------------------------------
    def open_check_run(self, ref: RevisionRef) -> int | None:
        revision = ref.revision
        if awaits_approval(revision):
            # A fork's commit: the run asks for approval, with the button that gives it.
            title = "Waiting for a maintainer to approve this fork's commit"
            summary = APPROVAL_SUMMARY
            conclusion: str | None = "action_required"
            actions: list[dict[str, str]] | None = [DEPLOY_PREVIEW_ACTION]
        else:
            title = f"Queued: revision #{revision.number}"
            summary = (
                f"Revision #{revision.number} of `{ref.deployment.slug}` is queued for a build "
                f"of `{revision.commit_sha[:7]}`."
            )
            conclusion, actions = None, None
        return self._safely(
            ref,
            "create check run",
            lambda: self._github.create_check_run(
                ref.installation_id,
                ref.repository.full_name,
                revision.commit_sha,
                name=self._check_name,
                external_id=revision.id,
                details_url=self.revision_url(revision),
                title=title,
                summary=summary,
                conclusion=conclusion,
                actions=actions,
            ),
        )

    def open_deployment(self, ref: RevisionRef) -> int | None:
        revision = ref.revision
        if awaits_approval(revision):
            return None  # a GitHub deployment once something may be deployed
        return self._safely(
            ref,
            "create deployment",
            lambda: self._github.create_deployment(
                ref.installation_id,
                ref.repository.full_name,
                revision.commit_sha,
                environment=ref.deployment.environment,
                production=ref.deployment.environment == "production",
                description=f"Slipway revision #{revision.number} of {ref.deployment.slug}",
            ),
        )

    # -- progress ---------------------------------------------------------------------------
    def building(self, ref: RevisionRef) -> None:
        revision = ref.revision
        self.together(
            lambda: self._check(
                ref,
                status="in_progress",
                title=f"Building revision #{revision.number}",
                summary=f"Building `{revision.commit_sha[:7]}` with BuildKit.",
                started_at=_iso(revision.build_started_at),
            ),
            lambda: self._status(ref, "in_progress", f"Building revision #{revision.number}"),
        )

    def waiting(self, ref: RevisionRef, reason: str) -> None:
        revision = ref.revision
        self._check(
            ref,
            status="queued",
            title=f"Queued: revision #{revision.number} waits",
            summary=reason,
        )

    def deploying(self, ref: RevisionRef, image: str) -> None:
        revision = ref.revision
        self._check(
            ref,
            status="in_progress",
            title=f"Deploying revision #{revision.number}",
            summary=f"Built `{image}`; starting it and waiting for its health check.",
        )

    def succeeded(self, ref: RevisionRef, url: str, image: str) -> None:
        revision = ref.revision
        summary = "\n".join(
            [
                f"Revision #{revision.number} of `{ref.deployment.slug}` is live.",
                "",
                f"- **URL:** {url}",
                f"- **Image:** `{image}`",
                f"- **Build:** {_seconds(revision.build_started_at, revision.build_finished_at)}",
                f"- **Deploy:** {_seconds(revision.deploy_started_at, revision.live_at)} "
                "(database, start, health check, route)",
                f"- **Build log:** {self.log_url(revision)}",
            ]
        )
        self.together(
            lambda: self._check(
                ref,
                status="completed",
                conclusion="success",
                title=f"Live at {url}",
                summary=summary,
                completed_at=_iso(revision.live_at),
            ),
            lambda: self._status(
                ref,
                "success",
                f"Revision #{revision.number} is live",
                environment_url=url,
            ),
        )

    def failed(
        self,
        ref: RevisionRef,
        reason: str,
        log_tail: str,
        serving: Revision | None,
        url: str,
        annotations: list[dict[str, object]] | None = None,
    ) -> None:
        """`annotations` point at the lines of the commit at fault (a wrong langgraph.json)."""
        revision = ref.revision
        lines = [f"Revision #{revision.number} failed: {reason}", ""]
        if serving is not None:
            lines.append(
                f"Revision #{serving.number} (`{serving.commit_sha[:7]}`) keeps serving {url}."
            )
        else:
            lines.append("Nothing is served yet for this deployment.")
        if annotations:
            lines += ["", "Problems found in the commit (also annotated on the files):"]
            lines += [f"- `{a['path']}:{a['start_line']}`: {a['message']}" for a in annotations]
        lines += ["", f"Full build log: {self.log_url(revision)}"]
        if log_tail.strip():
            lines += ["", "Last lines of the log:", "```", log_tail.rstrip(), "```"]
        self.together(
            lambda: self._check(
                ref,
                status="completed",
                conclusion="failure",
                title=f"Failed: {reason.splitlines()[0]}",
                summary="\n".join(lines),
                completed_at=_iso(revision.finished_at),
                annotations=annotations,
            ),
            lambda: self._status(
                ref,
                "failure",
                f"Revision #{revision.number} failed: {reason}",
            ),
        )

    def cancelled(self, ref: RevisionRef) -> None:
        revision = ref.revision
        reason = revision.error or "superseded by a newer revision"
        self._check(
            ref,
            status="completed",
            conclusion="cancelled",
            title=f"Cancelled: {reason}",
            summary=f"Revision #{revision.number} was {reason}.",
            completed_at=_iso(revision.finished_at),
        )
        self._status(ref, "inactive", f"Revision #{revision.number} was {reason}")

    def approval_refused(self, ref: RevisionRef, login: str, role: str) -> None:
        self._check(
            ref,
            status="completed",
            conclusion="action_required",
            title=f"Approval refused: @{login} has {role} permission",
            summary=(
                f"**Deploy preview** was pressed by @{login}, who has `{role}` permission on "
                f"`{ref.repository.full_name}`. Only users with write, maintain or admin "
                "permission can approve a fork's commit.\n\n" + APPROVAL_SUMMARY
            ),
            actions=[DEPLOY_PREVIEW_ACTION],
        )

    def approved(self, ref: RevisionRef, login: str) -> None:
        """Closes the approval check run; the build reports on a new one."""
        self._check(
            ref,
            status="completed",
            conclusion="neutral",
            title=f"Approved by @{login}",
            summary=f"@{login} approved this commit; its build reports in a new check run.",
            actions=[],
        )

    def removed(self, ref: RevisionRef, reason: str) -> None:
        self._status(ref, "inactive", f"Removed: {reason}")

    def superseded(self, ref: RevisionRef, by: Revision) -> None:
        self._status(
            ref,
            "inactive",
            f"Replaced by revision #{by.number} ({by.commit_sha[:7]})",
        )

    # -- plumbing ---------------------------------------------------------------------------
    def _check(
        self,
        ref: RevisionRef,
        *,
        status: str,
        title: str,
        summary: str,
        conclusion: str | None = None,
        started_at: str | None = None,
        completed_at: str | None = None,
        actions: list[dict[str, str]] | None = None,
        annotations: list[dict[str, object]] | None = None,
    ) -> None:
        check_run_id = ref.revision.check_run_id
        if check_run_id is None:
            return
        self._safely(
            ref,
            f"check run {status}",
            lambda: self._github.update_check_run(
                ref.installation_id,
                ref.repository.full_name,
                check_run_id,
                status=status,
                title=title,
                summary=summary,
                conclusion=conclusion,
                started_at=started_at,
                completed_at=completed_at,
                actions=actions,
                annotations=annotations,
            ),
        )

    def _status(
        self,
        ref: RevisionRef,
        state: str,
        description: str,
        environment_url: str | None = None,
    ) -> None:
        """Every status's "Details" (its log_url) opens the revision's dashboard page, signed:
        the build log and the revision's state in HTML, for people without an account too."""
        deployment_id = ref.revision.github_deployment_id
        if deployment_id is None:
            return
        log_url = self.revision_url(ref.revision)
        self._safely(
            ref,
            f"deployment status {state}",
            lambda: self._github.create_deployment_status(
                ref.installation_id,
                ref.repository.full_name,
                deployment_id,
                state=state,
                description=description,
                environment_url=environment_url,
                log_url=log_url,
            ),
        )


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "n/a"
    return f"{(end - start).total_seconds():.1f} s"
