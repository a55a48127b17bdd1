"""What a delivery's handler needs to know that the payload does not carry.

A pull_request delivery names its head commit but not its message (for `[skip deploy]`) nor
its `slipway.toml` (for `[previews]`); those are asked of GitHub before anything is recorded.
Asking can fail: the handler then goes on with the defaults (a preview is made, and a broken
`slipway.toml` fails its revision with the reason, as it does for a push).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.deployments.previews import PreviewSettings
from app.kernel.errors import GitHubError
from manifests.config import CONFIG_FILE, parse_repository_config
from manifests.errors import ConfigError

log = logging.getLogger(__name__)


class CommitFacts(Protocol):
    def permission(self, installation_id: int, full_name: str, login: str) -> str:
        """The user's role on the repository (admin, maintain, write, triage, read, none)."""

    def pull_request_facts(
        self, installation_id: int, full_name: str, sha: str
    ) -> tuple[PreviewSettings, str]:
        """The head commit's `[previews]` settings and its message."""


class NoFacts:
    """For events that need none, and for tests of them."""

    def permission(self, installation_id: int, full_name: str, login: str) -> str:
        return "none"

    def pull_request_facts(
        self, installation_id: int, full_name: str, sha: str
    ) -> tuple[PreviewSettings, str]:
        return PreviewSettings(), ""


NO_FACTS = NoFacts()


class CommitSource(Protocol):
    """The two GitHub reads CommitFacts makes (GitHubRest has them)."""

    def file_at(
        self, installation_id: int, full_name: str, sha: str, path: str
    ) -> bytes | None: ...

    def commit_message(self, installation_id: int, full_name: str, sha: str) -> str: ...

    def collaborator_permission(self, installation_id: int, full_name: str, login: str) -> str: ...


class GitHubCommitFacts:
    def __init__(self, github: CommitSource) -> None:
        self._github = github

    def pull_request_facts(
        self, installation_id: int, full_name: str, sha: str
    ) -> tuple[PreviewSettings, str]:
        """Both reads at once: each is a GitHub round trip on the preview's critical path."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            settings = pool.submit(self.preview_settings, installation_id, full_name, sha)
            message = pool.submit(self.commit_message, installation_id, full_name, sha)
            return settings.result(), message.result()

    def preview_settings(self, installation_id: int, full_name: str, sha: str) -> PreviewSettings:
        try:
            raw = self._github.file_at(installation_id, full_name, sha, CONFIG_FILE)
        except GitHubError as exc:
            log.warning(
                "slipway.toml not read; previews use their defaults",
                extra={"repository": full_name, "commit": sha, "error": str(exc)},
            )
            return PreviewSettings()
        if raw is None:
            return PreviewSettings()
        try:
            config = parse_repository_config(raw.decode("utf-8"))
        except (ConfigError, UnicodeDecodeError):
            return PreviewSettings()  # the revision's build reports what is wrong with it
        previews = config.previews
        return PreviewSettings(
            enabled=previews.enabled,
            drafts=previews.drafts,
            by_label=previews.trigger == "label",
            label=previews.label,
            idle_ttl=previews.idle_ttl,
        )

    def commit_message(self, installation_id: int, full_name: str, sha: str) -> str:
        try:
            return self._github.commit_message(installation_id, full_name, sha)
        except GitHubError as exc:
            log.warning(
                "commit message not read; [skip deploy] cannot be honoured",
                extra={"repository": full_name, "commit": sha, "error": str(exc)},
            )
            return ""

    def permission(self, installation_id: int, full_name: str, login: str) -> str:
        """Asked of GitHub each time: a permission is never cached past the press it judges.

        A GitHub failure raises: an approval must never pass because GitHub did not answer.
        """
        return self._github.collaborator_permission(installation_id, full_name, login)
