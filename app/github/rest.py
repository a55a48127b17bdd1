"""The REST calls Slipway makes as an installation: tarballs, check runs, deployments.

One door to GitHub: every call goes through `_call`, which maps githubkit's exceptions to
GitHubError with the operation named, so callers never see HTTP details.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from githubkit.exception import GitHubException, RateLimitExceeded, RequestFailed
from pydantic import ValidationError

from app.github.auth import InstallationClients
from app.kernel.errors import GitHubError
from app.kernel.ports import Commit
from builders.errors import SourceError

log = logging.getLogger(__name__)

SUMMARY_LIMIT = 65_535
"""GitHub rejects check-run output summary or text longer than this many characters."""
ANNOTATIONS_PER_REQUEST = 50
"""GitHub takes at most 50 annotations per check-run request and appends each batch."""
DESCRIPTION_LIMIT = 140
"""Deployment and deployment-status descriptions are cut by GitHub at 140 characters."""
COMMENT_LIMIT = 65_536
"""GitHub rejects issue comment bodies longer than this."""
MAX_COMMENT_PAGES = 30
"""Looking for Slipway's own comment stops after 3,000 comments."""
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"
TARBALL_RETRY_SECONDS = 60.0
"""A tarball GitHub fails to serve (5xx, rate limit, no answer) is tried again, with backoff,
for up to a minute: the build's own deadline is far longer, a person pushing is waiting."""

T = TypeVar("T")


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def clip_tail(text: str, limit: int) -> str:
    """Keep the end: the last lines of a log say why it failed."""
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


class GitHubRest:
    def __init__(self, app: InstallationClients) -> None:
        self._app = app

    def _call(self, installation_id: int, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RequestFailed as exc:
            if exc.response.status_code == 401:
                # The token was revoked or the installation went away: the next call asks for
                # a new one instead of failing with the cached token until it expires.
                self._app.forget_installation(installation_id)
            raise GitHubError(
                f"GitHub refused to {what} (HTTP {exc.response.status_code}): "
                f"{_message(exc.response)}"
            ) from exc
        except (GitHubException, httpx.HTTPError) as exc:
            raise GitHubError(f"could not {what}: GitHub did not answer ({exc!r})") from exc
        except ValidationError as exc:  # githubkit checks request bodies before sending
            raise GitHubError(f"could not {what}: the request was malformed ({exc})") from exc

    def download_tarball(
        self, installation_id: int, full_name: str, sha: str, dest: Path, *, max_bytes: int
    ) -> None:
        """Stream the commit's tarball to `dest`, refusing it once it passes `max_bytes`."""
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)

        def fetch() -> None:
            # The client stays open while the body streams to disk: tarballs can be large.
            with client:
                response = client.rest.repos.download_tarball_archive(owner, repo, sha, stream=True)
                received = 0
                with dest.open("wb") as out:
                    for chunk in response.raw_response.iter_bytes():
                        received += len(chunk)
                        if received > max_bytes:
                            raise SourceError(
                                f"the commit's tarball is larger than {max_bytes // 1024**2} MiB, "
                                "more than Slipway downloads (SLIPWAY_SOURCE_MAX_DOWNLOAD_BYTES)"
                            )
                        out.write(chunk)

        what = f"download the tarball of {full_name}@{sha[:7]}"
        deadline = time.monotonic() + TARBALL_RETRY_SECONDS
        wait = 1.0
        while True:
            try:
                self._call(installation_id, what, fetch)
                return
            except GitHubError as exc:
                # A GitHub outage or rate limit is waited out, within bounds; a refusal is not.
                if not _transient(exc) or time.monotonic() + wait > deadline:
                    raise
                log.warning(
                    "tarball download failed; retrying",
                    extra={"repository": full_name, "commit": sha, "error": str(exc)},
                )
                time.sleep(wait)  # backoff between attempts, bounded by the deadline
                wait = min(wait * 2, 16.0)

    def create_check_run(
        self,
        installation_id: int,
        full_name: str,
        sha: str,
        *,
        name: str,
        external_id: str,
        details_url: str,
        title: str,
        summary: str,
        conclusion: str | None = None,
        actions: list[dict[str, str]] | None = None,
    ) -> int:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        data: dict[str, Any] = {
            "name": name,
            "head_sha": sha,
            "status": "queued" if conclusion is None else "completed",
            "external_id": external_id,
            "details_url": details_url,
            "output": {"title": clip(title, 255), "summary": clip(summary, SUMMARY_LIMIT)},
        }
        if conclusion is not None:
            data["conclusion"] = conclusion
        if actions:
            data["actions"] = actions
        response = self._call(
            installation_id,
            f"create a check run on {full_name}@{sha[:7]}",
            lambda: client.rest.checks.create(
                owner,
                repo,
                data=data,  # type: ignore[call-overload]
            ),
        )
        return int(response.json()["id"])

    def update_check_run(
        self,
        installation_id: int,
        full_name: str,
        check_run_id: int,
        *,
        status: str,
        title: str,
        summary: str,
        conclusion: str | None = None,
        text: str | None = None,
        started_at: str | None = None,
        completed_at: str | None = None,
        actions: list[dict[str, str]] | None = None,
        annotations: list[dict[str, object]] | None = None,
    ) -> None:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        batches = [
            (annotations or [])[start : start + ANNOTATIONS_PER_REQUEST]
            for start in range(0, len(annotations or []), ANNOTATIONS_PER_REQUEST)
        ] or [[]]
        output: dict[str, Any] = {
            "title": clip(title, 255),
            "summary": clip(summary, SUMMARY_LIMIT),
        }
        if text:
            output["text"] = clip_tail(text, SUMMARY_LIMIT)
        data: dict[str, Any] = {"status": status, "output": output}
        if conclusion is not None:
            data["conclusion"] = conclusion
        if started_at is not None:
            data["started_at"] = started_at
        if completed_at is not None:
            data["completed_at"] = completed_at
        if actions is not None:
            data["actions"] = actions
        for batch in batches:
            # GitHub appends each request's annotations to the run's: later ones add the rest.
            body = {**data, "output": {**output, "annotations": batch}} if batch else data
            self._call(
                installation_id,
                f"update check run {check_run_id} on {full_name}",
                partial(client.rest.checks.update, owner, repo, check_run_id, data=body),
            )

    def create_deployment(
        self,
        installation_id: int,
        full_name: str,
        sha: str,
        *,
        environment: str,
        production: bool,
        description: str,
    ) -> int:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        data: dict[str, Any] = {
            "ref": sha,
            "environment": environment,
            "production_environment": production,
            "transient_environment": not production,
            # The commit is already what we deploy: no merge of the default branch into it, and
            # no wait for commit statuses (our own check run would block it).
            "auto_merge": False,
            "required_contexts": [],
            "description": clip(description, DESCRIPTION_LIMIT),
        }
        response = self._call(
            installation_id,
            f"create a deployment of {full_name}@{sha[:7]}",
            lambda: client.rest.repos.create_deployment(
                owner,
                repo,
                data=data,  # type: ignore[call-overload]
            ),
        )
        body = response.json()
        if "id" not in body:
            raise GitHubError(f"GitHub did not create a deployment: {body.get('message', body)}")
        return int(body["id"])

    def create_deployment_status(
        self,
        installation_id: int,
        full_name: str,
        deployment_id: int,
        *,
        state: str,
        description: str,
        environment_url: str | None = None,
        log_url: str | None = None,
    ) -> None:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        data: dict[str, Any] = {"state": state, "description": clip(description, DESCRIPTION_LIMIT)}
        if environment_url:
            data["environment_url"] = environment_url
        if log_url:
            data["log_url"] = log_url
        # Slipway marks superseded revisions inactive itself, with the reason.
        data["auto_inactive"] = False
        self._call(
            installation_id,
            f"report deployment {deployment_id} of {full_name} as {state}",
            lambda: client.rest.repos.create_deployment_status(
                owner,
                repo,
                deployment_id,
                data=data,  # type: ignore[call-overload]
            ),
        )

    # -- reads a pull_request delivery needs -----------------------------------------------
    def file_at(self, installation_id: int, full_name: str, sha: str, path: str) -> bytes | None:
        """The file's bytes at the commit, or None when the commit has no such file."""
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        try:
            response = self._call(
                installation_id,
                f"read {path} of {full_name}@{sha[:7]}",
                lambda: client.rest.repos.get_content(
                    owner, repo, path, ref=sha, headers={"Accept": RAW_MEDIA_TYPE}
                ),
            )
        except GitHubError as exc:
            if _not_found(exc):
                return None
            raise
        return bytes(response.content)

    def commit_message(self, installation_id: int, full_name: str, sha: str) -> str:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        response = self._call(
            installation_id,
            f"read commit {full_name}@{sha[:7]}",
            lambda: client.rest.repos.get_commit(owner, repo, sha, per_page=1),
        )
        commit = response.json().get("commit") or {}
        return str(commit.get("message") or "")

    def resolve_commit(self, installation_id: int, full_name: str, ref: str) -> Commit | None:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        try:
            response = self._call(
                installation_id,
                f"read {full_name}@{ref}",
                lambda: client.rest.repos.get_commit(owner, repo, ref, per_page=1),
            )
        except GitHubError as exc:
            if _not_found(exc) or "HTTP 422" in str(exc):
                return None
            raise
        body = response.json()
        commit = body.get("commit") or {}
        return Commit(sha=str(body["sha"]), message=str(commit.get("message") or ""))

    def collaborator_permission(self, installation_id: int, full_name: str, login: str) -> str:
        """GitHub's role name for the user on the repository (admin, maintain, write, ...)."""
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        try:
            response = self._call(
                installation_id,
                f"read {login}'s permission on {full_name}",
                lambda: client.rest.repos.get_collaborator_permission_level(owner, repo, login),
            )
        except GitHubError as exc:
            if _not_found(exc):
                return "none"
            raise
        body = response.json()
        return str(body.get("role_name") or body.get("permission") or "none")

    # -- the pull request's comment --------------------------------------------------------
    def create_comment(
        self, installation_id: int, full_name: str, issue_number: int, body: str
    ) -> int:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        response = self._call(
            installation_id,
            f"comment on {full_name}#{issue_number}",
            lambda: client.rest.issues.create_comment(
                owner, repo, issue_number, data={"body": clip(body, COMMENT_LIMIT)}
            ),
        )
        return int(response.json()["id"])

    def update_comment(
        self, installation_id: int, full_name: str, comment_id: int, body: str
    ) -> bool:
        """False when the comment is gone (a user deleted it)."""
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        try:
            self._call(
                installation_id,
                f"edit comment {comment_id} on {full_name}",
                lambda: client.rest.issues.update_comment(
                    owner, repo, comment_id, data={"body": clip(body, COMMENT_LIMIT)}
                ),
            )
        except GitHubError as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def find_comment(
        self, installation_id: int, full_name: str, issue_number: int, marker: str
    ) -> int | None:
        """The id of the first comment on the issue whose body holds `marker`."""
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        for page in range(1, MAX_COMMENT_PAGES + 1):
            response = self._call(
                installation_id,
                f"list comments of {full_name}#{issue_number}",
                lambda page=page: client.rest.issues.list_comments(  # type: ignore[misc]
                    owner, repo, issue_number, per_page=100, page=page
                ),
            )
            comments: list[dict[str, Any]] = list(response.json() or [])
            for comment in comments:
                if marker in str(comment.get("body") or ""):
                    return int(comment["id"])
            if len(comments) < 100:
                return None
        return None

    # -- the idle notice (an issue on the repository) --------------------------------------
    def create_issue(self, installation_id: int, full_name: str, title: str, body: str) -> int:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        response = self._call(
            installation_id,
            f"open an issue on {full_name}",
            lambda: client.rest.issues.create(
                owner, repo, data={"title": clip(title, 256), "body": clip(body, COMMENT_LIMIT)}
            ),
        )
        return int(response.json()["number"])

    def update_issue(
        self,
        installation_id: int,
        full_name: str,
        number: int,
        *,
        title: str,
        body: str,
        state: str,
    ) -> bool:
        """False when the issue is gone (deleted: 404; issues turned off: 410)."""
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        closed = state == "closed"
        try:
            self._call(
                installation_id,
                f"edit issue #{number} of {full_name}",
                lambda: client.rest.issues.update(
                    owner,
                    repo,
                    number,
                    title=clip(title, 256),
                    body=clip(body, COMMENT_LIMIT),
                    state="closed" if closed else "open",
                    state_reason="completed" if closed else "reopened",
                ),
            )
        except GitHubError as exc:
            cause = exc.__cause__
            if isinstance(cause, RequestFailed) and cause.response.status_code in (404, 410):
                return False
            raise
        return True


def _transient(exc: GitHubError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, RateLimitExceeded):
        return True
    if isinstance(cause, RequestFailed):
        return cause.response.status_code >= 500
    return isinstance(cause, GitHubException | httpx.HTTPError)


def _not_found(exc: GitHubError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, RequestFailed) and cause.response.status_code == 404


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:200]
    message = body.get("message", "") if isinstance(body, dict) else ""
    errors = body.get("errors") if isinstance(body, dict) else None
    return f"{message} {errors}" if errors else str(message)
