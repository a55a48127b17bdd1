"""Pull requests driven the way GitHub drives them (state on the fake first, then the delivery),
and what their previews leave: the e2e modules that open pull requests share these."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import pull_request_payload
from tests.support.git_repos import GitRepo
from tests.support.platform import INSTALLATION_ID, RunningPlatform, wait_for

MARKER = "<!-- slipway:preview -->"


class PullRequests:
    """Drives one repository's pull requests the way GitHub would: state first, then delivery."""

    def __init__(
        self,
        platform: RunningPlatform,
        github: FakeGitHub,
        repo: GitRepo,
        repository: dict[str, Any],
    ) -> None:
        self.platform = platform
        self.github = github
        self.repo = repo
        self.repository = repository
        self.full_name = str(repository["full_name"])

    def open(self, number: int, files: dict[str, str | bytes], *, fork: str | None = None) -> str:
        self.repo.checkout(f"feature-{number}", create=True)
        head = self.repo.commit(files, f"pull request {number}")
        self.repo.checkout("main")
        self.github.add_pull_request(
            self.full_name,
            number,
            head_sha=head,
            head_ref=f"feature-{number}",
            head_full_name=fork,
        )
        self.send("opened", number)
        return head

    def push(self, number: int, files: dict[str, str | bytes]) -> tuple[str, str]:
        """A new commit on the pull request's branch; returns (before, after), not yet sent."""
        before = str(self.github.pull_request(self.full_name, number)["head"]["sha"])
        self.repo.checkout(f"feature-{number}")
        head = self.repo.commit(files, f"more of pull request {number}")
        self.repo.checkout("main")
        self.github.update_pull_request(self.full_name, number, head_sha=head)
        return before, head

    def close(self, number: int, *, merged: bool = False) -> None:
        if merged:
            self.github.update_pull_request(self.full_name, number, merged=True)
        else:
            self.github.update_pull_request(self.full_name, number, state="closed")

    def send(
        self, action: str, number: int, *, before: str | None = None, delivery_id: str | None = None
    ) -> httpx.Response:
        payload = pull_request_payload(
            action,
            self.repository,
            INSTALLATION_ID,
            self.github.pull_request(self.full_name, number),
            before=before,
        )
        response = self.platform.send("pull_request", payload, delivery_id=delivery_id)
        assert response.status_code == 202, response.text
        return response

    # -- what the user sees -------------------------------------------------------------------
    def comments(self, number: int) -> list[str]:
        return [str(c["body"]) for c in self.github.comments(self.full_name, number)]

    def comment_saying(self, number: int, *texts: str, timeout: float = 120) -> str:
        def current() -> str | None:
            bodies = [b for b in self.comments(number) if MARKER in b]
            if bodies and all(text in bodies[-1] for text in texts):
                return bodies[-1]
            return None

        return wait_for(f"the comment on #{number} to say {texts}", current, timeout)

    def preview(self, number: int) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for deployment in self.platform.api("/api/deployments"):
                if (
                    deployment["repository"] == self.full_name
                    and deployment["pull_request"] == number
                ):
                    return dict(deployment)
            return None

        return wait_for(f"the preview of #{number}", find, 60)

    def settled(self, number: int, sha: str, states: set[str] | None = None) -> dict[str, Any]:
        revision = self.platform.revision_for(self.preview(number)["id"], sha)
        return self.platform.wait_state(revision["id"], states or {"live", "failed"})


def connects(uri: str) -> bool:
    try:
        with psycopg.connect(uri, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False
