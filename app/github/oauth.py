"""Signing people in with GitHub: the OAuth web flow of the App, and what the person may see.

The dashboard asks GitHub, with the person's own user-to-server token, which installations of
the App they can reach and, in each, which repositories with which permission
(`GET /user/installations`, `GET /user/installations/{id}/repositories`). That is exactly
"the repositories of the App's installations this person has access to": a user token of a
GitHub App sees the intersection of the App's and the person's access, and each repository
carries the person's `permissions` (admin, push, pull). One call per installation, not one
per repository.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import urlencode

import httpx

from app.kernel.errors import GitHubError

log = logging.getLogger(__name__)

USER_AGENT = "Slipway"
API_VERSION = "2022-11-28"
TIMEOUT_SECONDS = 15.0
PER_PAGE = 100
MAX_PAGES = 20
"""At most 2,000 installations or repositories per installation are looked at: bounded."""


class Access(IntEnum):
    """A person's permission on a repository, as GitHub's `permissions` object says it."""

    none = 0
    read = 1
    write = 2
    admin = 3

    @classmethod
    def of(cls, permissions: dict[str, Any] | None) -> Access:
        found = permissions or {}
        if found.get("admin"):
            return cls.admin
        if found.get("push") or found.get("maintain"):
            return cls.write
        if found.get("pull") or found.get("triage"):
            return cls.read
        return cls.none


@dataclass(frozen=True)
class OAuthClient:
    """The App's OAuth client, stored by the manifest flow."""

    client_id: str
    client_secret: str


class GitHubOAuth:
    """GitHub's OAuth web pages (at `web_url`) and the user endpoints of its API (`api_url`)."""

    def __init__(
        self, web_url: str, api_url: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._web_url = web_url.rstrip("/")
        self._api_url = api_url.rstrip("/")
        self._transport = transport

    def authorize_url(self, client: OAuthClient, redirect_uri: str, state: str) -> str:
        """Where the browser goes to sign in; GitHub sends it back with `code` and `state`."""
        query = urlencode(
            {"client_id": client.client_id, "redirect_uri": redirect_uri, "state": state}
        )
        return f"{self._web_url}/login/oauth/authorize?{query}"

    def exchange(self, client: OAuthClient, code: str, redirect_uri: str) -> str:
        """The user's token for the one-time `code`; GitHubError when GitHub refuses it."""
        with self._client(self._web_url) as http:
            try:
                answer = http.post(
                    "/login/oauth/access_token",
                    data={
                        "client_id": client.client_id,
                        "client_secret": client.client_secret,
                        "code": code,
                        "redirect_uri": redirect_uri,
                    },
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise GitHubError(f"GitHub did not answer the sign-in ({exc!r})") from exc
        body = _json(answer, "sign in")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            # GitHub answers 200 with {"error": ..., "error_description": ...} here.
            raise GitHubError(
                f"GitHub refused the sign-in: {body.get('error_description') or body.get('error')}"
            )
        return token

    def login(self, token: str) -> str:
        with self._client(self._api_url, token) as http:
            body = _json(_get(http, "/user", "read the signed-in user"), "read the user")
        login = body.get("login")
        if not isinstance(login, str):
            raise GitHubError("GitHub's /user answer has no login")
        return login

    def repository_access(self, token: str) -> dict[int, Access]:
        """Per repository id (GitHub's), the person's access, over every installation of the
        App they can reach; repositories they cannot read are left out."""
        found: dict[int, Access] = {}
        with self._client(self._api_url, token) as http:
            for installation in self._pages(http, "/user/installations", "installations"):
                installation_id = installation.get("id")
                if not isinstance(installation_id, int):
                    continue
                path = f"/user/installations/{installation_id}/repositories"
                for repository in self._pages(http, path, "repositories"):
                    access = Access.of(repository.get("permissions"))
                    if isinstance(repository.get("id"), int) and access > Access.none:
                        found[repository["id"]] = access
        return found

    def _pages(self, http: httpx.Client, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            answer = _get(http, f"{path}?per_page={PER_PAGE}&page={page}", f"list {key}")
            batch = _json(answer, f"list {key}").get(key)
            if not isinstance(batch, list):
                raise GitHubError(f"GitHub's answer to {path} has no {key}")
            items += [item for item in batch if isinstance(item, dict)]
            if len(batch) < PER_PAGE:
                break
        return items

    def _client(self, base_url: str, token: str | None = None) -> httpx.Client:
        headers = {"User-Agent": USER_AGENT, "X-GitHub-Api-Version": API_VERSION}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            headers["Accept"] = "application/vnd.github+json"
        return httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            transport=self._transport,
        )


def _get(http: httpx.Client, path: str, what: str) -> httpx.Response:
    try:
        return http.get(path)
    except httpx.HTTPError as exc:
        raise GitHubError(f"could not {what}: GitHub did not answer ({exc!r})") from exc


def _json(answer: httpx.Response, what: str) -> dict[str, Any]:
    if answer.status_code == 401:
        raise GitHubError(f"GitHub refused to {what}: the sign-in expired or was revoked")
    if answer.status_code >= 400:
        raise GitHubError(f"GitHub refused to {what} (HTTP {answer.status_code})")
    try:
        body = answer.json()
    except ValueError as exc:
        raise GitHubError(f"GitHub's answer to {what} is not JSON") from exc
    if not isinstance(body, dict):
        raise GitHubError(f"GitHub's answer to {what} is not a JSON object")
    return body
