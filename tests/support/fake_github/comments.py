"""Issue (and pull request) comments: create, list, edit, delete."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from .auth import AuthMixin
from .core import Repo
from .http import JSON, REPO, Body, HttpError, Request, Response, RouteSpec, json_response
from .payloads import GITHUB_WEB, iso_time, node_id

MAX_COMMENT_BODY = 65536


@dataclass
class _Comment:
    repo_key: str
    issue_number: int
    json: JSON
    deleted: bool = False


class CommentsMixin(AuthMixin):
    _comments: dict[int, _Comment]

    def _init_comments(self) -> None:
        self._comments = {}

    # ------------------------------------------------------------------ test helpers

    def comments(self, full_name: str, issue_number: int) -> list[JSON]:
        """The issue's (or pull request's) comments that still exist, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(comment.json)
                for comment in self._comment_list(full_name.lower(), issue_number)
            ]

    def delete_comment(self, full_name: str, comment_id: int) -> None:
        """A person deleting a comment on github.com (KeyError when there is no such comment)."""
        with self._lock:
            comment = self._comments.get(comment_id)
            if comment is None or comment.deleted or comment.repo_key != full_name.lower():
                raise KeyError(f"{full_name} has no comment {comment_id}")
            comment.deleted = True

    # ------------------------------------------------------------------ routes

    def _comments_routes(self) -> list[RouteSpec]:
        return [
            ("POST", REPO + r"/issues/(?P<issue_number>\d+)/comments", self._create_comment),
            ("GET", REPO + r"/issues/(?P<issue_number>\d+)/comments", self._list_comments),
            ("PATCH", REPO + r"/issues/comments/(?P<comment_id>\d+)", self._update_comment),
            ("DELETE", REPO + r"/issues/comments/(?P<comment_id>\d+)", self._delete_comment),
        ]

    def _comment_list(self, repo_key: str, issue_number: int) -> list[_Comment]:
        return sorted(
            (
                c
                for c in self._comments.values()
                if c.repo_key == repo_key and c.issue_number == issue_number and not c.deleted
            ),
            key=lambda c: int(c.json["id"]),
        )

    def _comment_body(self, request: Request) -> str:
        body = Body(request.json_object(), "IssueComment")
        text = body.string("body", required=True, non_empty=True, max_length=MAX_COMMENT_BODY)
        body.check()
        assert text is not None
        return text

    def _create_comment(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "write")
        issue_number = int(params["issue_number"])
        if issue_number < 1:
            raise HttpError(404, "Not Found", detail=f"no issue {issue_number}")
        text = self._comment_body(request)
        with self._lock:
            comment_id = self._next_id("comment")
            now = iso_time()
            api = f"{self.url}/repos/{repo.full_name}"
            comment = {
                "id": comment_id,
                "node_id": node_id("IssueComment", comment_id),
                "url": f"{api}/issues/comments/{comment_id}",
                "html_url": f"{GITHUB_WEB}/{repo.full_name}/issues/{issue_number}"
                f"#issuecomment-{comment_id}",
                "body": text,
                "user": self._bot(),
                "created_at": now,
                "updated_at": now,
                "issue_url": f"{api}/issues/{issue_number}",
                "author_association": "NONE",
                "performed_via_github_app": self._app_json(),
                "reactions": {
                    "url": f"{api}/issues/comments/{comment_id}/reactions",
                    "total_count": 0,
                    **{k: 0 for k in ("+1", "-1", "laugh", "hooray", "confused", "heart")},
                    "rocket": 0,
                    "eyes": 0,
                },
            }
            self._comments[comment_id] = _Comment(repo.key, issue_number, comment)
            return json_response(201, copy.deepcopy(comment))

    def _list_comments(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "read")
        with self._lock:
            found = [
                copy.deepcopy(c.json)
                for c in self._comment_list(repo.key, int(params["issue_number"]))
            ]
        page, headers = self._paginate(request, found)
        return json_response(200, page, headers)

    def _find_comment(self, repo: Repo, params: Mapping[str, str]) -> _Comment:
        comment = self._comments.get(int(params["comment_id"]))
        if comment is None or comment.deleted or comment.repo_key != repo.key:
            raise HttpError(
                404, "Not Found", detail=f"no comment {params['comment_id']} in {repo.full_name}"
            )
        return comment

    def _update_comment(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "write")
        text = self._comment_body(request)
        with self._lock:
            comment = self._find_comment(repo, params)
            comment.json["body"] = text
            comment.json["updated_at"] = iso_time()
            return json_response(200, copy.deepcopy(comment.json))

    def _delete_comment(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "issues|pull_requests", "write")
        with self._lock:
            self._find_comment(repo, params).deleted = True
        return Response(204)
