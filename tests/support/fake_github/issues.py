"""Issues: open, read, edit (title, body, state), as GitHub's `POST /repos/{o}/{r}/issues` and
`GET`/`PATCH /repos/{o}/{r}/issues/{n}` answer them. Numbers share the repository's space with
its pull requests, as on GitHub."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .auth import AuthMixin
from .http import JSON, REPO, Body, HttpError, Request, Response, RouteSpec, json_response
from .payloads import GITHUB_WEB, iso_time, node_id

MAX_TITLE = 256
MAX_BODY = 65536
STATES = ("open", "closed")
STATE_REASONS = ("completed", "not_planned", "duplicate", "reopened")
ISSUE_FIELDS = frozenset({"title", "body", "state", "state_reason", "labels", "assignees"})


@dataclass
class _Issue:
    repo_key: str
    json: JSON


class IssuesMixin(AuthMixin):
    _issues: dict[tuple[str, int], _Issue]
    _issues_off: set[str]

    def _init_issues(self) -> None:
        self._issues = {}
        self._issues_off = set()

    # ------------------------------------------------------------------ test helpers

    def issues(self, full_name: str) -> list[JSON]:
        """The repository's issues (open and closed), oldest first."""
        with self._lock:
            key = full_name.lower()
            return [
                copy.deepcopy(issue.json)
                for (repo_key, _), issue in sorted(self._issues.items())
                if repo_key == key
            ]

    def turn_issues(self, full_name: str, *, on: bool) -> None:
        """The repository's owner turning Issues off (or on again) in its settings: GitHub then
        answers 410 to every issue read, edit and creation (its issues are kept)."""
        repo = self._repo(full_name)
        with self._lock:
            repo.json["has_issues"] = on
            (self._issues_off.discard if on else self._issues_off.add)(repo.key)

    def delete_issue(self, full_name: str, number: int) -> None:
        """A person deleting the issue on github.com (later reads and edits are 404)."""
        with self._lock:
            del self._issues[(full_name.lower(), number)]

    # ------------------------------------------------------------------ routes

    def _issues_routes(self) -> list[RouteSpec]:
        return [
            ("POST", REPO + r"/issues", self._create_issue),
            ("GET", REPO + r"/issues/(?P<issue_number>\d+)", self._get_issue),
            ("PATCH", REPO + r"/issues/(?P<issue_number>\d+)", self._update_issue),
        ]

    def _issue_fields(self, request: Request, *, creating: bool) -> dict[str, str | None]:
        data = request.json_object()
        body = Body(data, "Issue")
        for key in data:
            if key not in ISSUE_FIELDS:
                body.fail(key, f"{key} is not a field of an issue Slipway should send")
        fields: dict[str, str | None] = {}
        title = body.string("title", required=creating, non_empty=True, max_length=MAX_TITLE)
        if title is not None:
            fields["title"] = title
        if "body" in data:
            fields["body"] = body.string("body", nullable=True, max_length=MAX_BODY)
        if not creating:
            state = body.string("state", choices=STATES)
            if state is not None:
                fields["state"] = state
            if "state_reason" in data:
                reason = body.string("state_reason", nullable=True, choices=STATE_REASONS)
                if reason is not None and fields.get("state") != "closed" and reason != "reopened":
                    body.fail("state_reason", f"state_reason {reason!r} needs state 'closed'")
                fields["state_reason"] = reason
        body.check()
        return fields

    def _create_issue(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues", "write")
        self._check_issues_on(repo.key)
        fields = self._issue_fields(request, creating=True)
        with self._lock:
            taken = [n for (key, n) in self._issues if key == repo.key]
            taken += [n for (key, n) in getattr(self, "_pulls", {}) if key == repo.key]
            number = max(taken, default=0) + 1
            issue_id = self._next_id("issue")
            now = iso_time()
            api = f"{self.url}/repos/{repo.full_name}"
            issue: JSON = {
                "id": issue_id,
                "node_id": node_id("Issue", issue_id),
                "url": f"{api}/issues/{number}",
                "repository_url": api,
                "html_url": f"{GITHUB_WEB}/{repo.full_name}/issues/{number}",
                "number": number,
                "state": "open",
                "state_reason": None,
                "title": fields["title"],
                "body": fields.get("body"),
                "user": self._bot(),
                "labels": [],
                "assignees": [],
                "locked": False,
                "comments": 0,
                "created_at": now,
                "updated_at": now,
                "closed_at": None,
                "author_association": "NONE",
                "performed_via_github_app": self._app_json(),
            }
            self._issues[(repo.key, number)] = _Issue(repo.key, issue)
            return json_response(201, copy.deepcopy(issue))

    def _check_issues_on(self, repo_key: str) -> None:
        with self._lock:
            off = repo_key in self._issues_off
        if off:
            # What GitHub answers, in the normal course of things: not a fault of the client.
            raise HttpError(410, "Issues are disabled for this repo", record=False)

    def _find_issue(self, repo_key: str, full_name: str, number: int) -> _Issue:
        issue = self._issues.get((repo_key, number))
        if issue is None:
            raise HttpError(404, "Not Found", detail=f"no issue {number} in {full_name}")
        return issue

    def _get_issue(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues", "read")
        self._check_issues_on(repo.key)
        with self._lock:
            issue = self._find_issue(repo.key, repo.full_name, int(params["issue_number"]))
            return json_response(200, copy.deepcopy(issue.json))

    def _update_issue(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues", "write")
        self._check_issues_on(repo.key)
        fields = self._issue_fields(request, creating=False)
        with self._lock:
            issue = self._find_issue(repo.key, repo.full_name, int(params["issue_number"]))
            now = iso_time()
            state = fields.pop("state", None)
            if state is not None and state != issue.json["state"]:
                issue.json["state"] = state
                issue.json["closed_at"] = now if state == "closed" else None
                issue.json["state_reason"] = "reopened" if state == "open" else "completed"
            issue.json.update(fields)
            issue.json["updated_at"] = now
            return json_response(200, copy.deepcopy(issue.json))
