"""The REST calls Slipway makes as an installation: tarballs, check runs, deployments.

One door to GitHub: every call goes through `_call`, which maps githubkit's exceptions to
GitHubError with the operation named, so callers never see HTTP details.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from githubkit.exception import GitHubException, RequestFailed
from pydantic import ValidationError

from app.errors import GitHubError, SourceError
from app.github.auth import GitHubApp

log = logging.getLogger(__name__)

SUMMARY_LIMIT = 65_535
"""GitHub rejects check-run output summary or text longer than this many characters."""
DESCRIPTION_LIMIT = 140
"""Deployment and deployment-status descriptions are cut by GitHub at 140 characters."""

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
    def __init__(self, app: GitHubApp) -> None:
        self._app = app

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RequestFailed as exc:
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

        self._call(f"download the tarball of {full_name}@{sha[:7]}", fetch)

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
    ) -> int:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
        data: dict[str, Any] = {
            "name": name,
            "head_sha": sha,
            "status": "queued",
            "external_id": external_id,
            "details_url": details_url,
            "output": {"title": clip(title, 255), "summary": clip(summary, SUMMARY_LIMIT)},
        }
        response = self._call(
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
    ) -> None:
        owner, repo = full_name.split("/", 1)
        client = self._app.client(installation_id)
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
        self._call(
            f"update check run {check_run_id} on {full_name}",
            lambda: client.rest.checks.update(
                owner,
                repo,
                check_run_id,
                data=data,  # type: ignore[call-overload]
            ),
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
            f"report deployment {deployment_id} of {full_name} as {state}",
            lambda: client.rest.repos.create_deployment_status(
                owner,
                repo,
                deployment_id,
                data=data,  # type: ignore[call-overload]
            ),
        )


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:200]
    message = body.get("message", "") if isinstance(body, dict) else ""
    errors = body.get("errors") if isinstance(body, dict) else None
    return f"{message} {errors}" if errors else str(message)
