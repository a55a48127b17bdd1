"""Pull requests (``GET /repos/{owner}/{repo}/pulls/{pull_number}``) and collaborators'
permissions (``GET /repos/{owner}/{repo}/collaborators/{username}/permission``).

A pull request's commits live in the base repository's git directory, as on GitHub (which keeps
``refs/pull/N/head`` there, also for forks); the fake resolves ``refs/pull/N/head`` itself and
never writes to the git directory.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from .core import Repo
from .git import changed_files, count_commits, merge_base, rev_parse
from .http import JSON, REPO, HttpError, Request, Response, RouteSpec, json_response
from .payloads import GITHUB_WEB, iso_time, node_id
from .repos import ReposMixin

COLLABORATOR_ROLES = ("admin", "maintain", "write", "triage", "read", "none")
"""Repository roles, strongest first (``none``: a known user without access)."""
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
"""The ``permission`` field GitHub derives from a role: maintain counts as write, triage as read."""
PULL_REQUEST_STATES = ("open", "closed")
_ROLE_RANK = {
    role: len(COLLABORATOR_ROLES) - index for index, role in enumerate(COLLABORATOR_ROLES)
}
_PULL_REF = re.compile(r"(?:refs/)?pull/(?P<number>[0-9]+)/head")


@dataclass
class _PullRequest:
    repo_key: str
    number: int
    id: int
    user: str
    title: str
    body: str | None
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str
    fork: str | None
    """The head repository's full name when it is a fork, else None."""
    draft: bool
    created_at: str
    updated_at: str
    state: str = "open"
    merged: bool = False
    merged_by: str | None = None
    merged_at: str | None = None
    closed_at: str | None = None
    merge_commit_sha: str | None = None
    head_repo_deleted: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    """Names of the labels it carries, in the order they were put on."""


class PullsMixin(ReposMixin):
    _pulls: dict[tuple[str, int], _PullRequest]
    _forks: dict[str, JSON]
    _roles: dict[str, dict[str, str]]
    _users: dict[str, str]
    _labels: dict[str, dict[str, JSON]]

    def _init_pulls(self) -> None:
        self._pulls = {}
        self._forks = {}
        self._roles = {}
        self._users = {}
        self._labels = {}

    # ------------------------------------------------------------------ test helpers

    def add_pull_request(
        self,
        full_name: str,
        number: int,
        *,
        head_sha: str,
        head_ref: str,
        base_ref: str = "main",
        draft: bool = False,
        title: str = "Update the app",
        user: str = "octo-dev",
        head_full_name: str | None = None,
        body: str | None = None,
    ) -> JSON:
        """Open pull request ``number`` on ``full_name``; returns it as GitHub serves it.

        ``head_full_name`` (``owner/name``) other than ``full_name`` makes it a pull request from
        a fork, whose repository object the fake makes up. Either way ``head_sha`` must be a
        commit of the base repository's git directory (GitHub fetches a fork's commits into
        ``refs/pull/N/head`` of the base repository).
        """
        repo = self._repo(full_name)
        if number < 1:
            raise ValueError(f"pull request numbers start at 1, not {number}")
        self._check_commit(repo, head_sha)
        base_sha = self._branch_tip(repo, base_ref)
        fork: str | None = None
        if head_full_name is not None and head_full_name.lower() != repo.key:
            owner, _, name = head_full_name.partition("/")
            if not owner or not name or "/" in name:
                raise ValueError(f"head_full_name must be owner/name, not {head_full_name!r}")
            fork = head_full_name
        now = iso_time()
        pull = _PullRequest(
            repo_key=repo.key,
            number=number,
            id=self._next_id("pull_request"),
            user=user,
            title=title,
            body=body,
            head_sha=head_sha,
            head_ref=head_ref,
            base_ref=base_ref,
            base_sha=base_sha,
            fork=fork,
            draft=draft,
            created_at=now,
            updated_at=now,
        )
        pull.stats = self._pull_stats(repo, base_sha, head_sha)
        with self._lock:
            if (repo.key, number) in self._pulls:
                raise ValueError(f"{repo.full_name} already has pull request #{number}")
            self._pulls[(repo.key, number)] = pull
            self._know_user(user)
            if fork is not None:
                self._know_user(fork.partition("/")[0])
                self._fork_json(repo, fork)
        return self.pull_request(full_name, number)

    def update_pull_request(
        self,
        full_name: str,
        number: int,
        *,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        state: str | None = None,
        draft: bool | None = None,
        merged: bool | None = None,
        merged_by: str | None = None,
        merge_commit_sha: str | None = None,
        title: str | None = None,
        body: str | None = None,
        head_repo_deleted: bool | None = None,
    ) -> JSON:
        """Change a pull request the way GitHub would after a push, an edit, a close or a merge.

        ``merged=True`` closes it too (``merged_by`` defaults to the author). A merged pull
        request cannot be reopened. ``head_repo_deleted=True`` makes ``head.repo`` null, as when
        the fork it came from is deleted. Returns the pull request as GitHub serves it.
        """
        repo = self._repo(full_name)
        if head_sha is not None:
            self._check_commit(repo, head_sha)
        if state is not None and state not in PULL_REQUEST_STATES:
            raise ValueError(f"state must be one of {PULL_REQUEST_STATES}, not {state!r}")
        base_sha = self._branch_tip(repo, base_ref) if base_ref is not None else None
        with self._lock:
            pull = self._pull(repo, number)
            if merged is False and pull.merged:
                raise ValueError("a merged pull request cannot be unmerged")
            if state == "open" and (pull.merged or merged):
                raise ValueError("a merged pull request cannot be reopened")
            if merged and pull.state == "closed" and not pull.merged:
                raise ValueError("only an open pull request can be merged")
            now = iso_time()
            if head_sha is not None:
                pull.head_sha = head_sha
            if head_ref is not None:
                pull.head_ref = head_ref
            if base_ref is not None and base_sha is not None:
                pull.base_ref, pull.base_sha = base_ref, base_sha
            if title is not None:
                pull.title = title
            if body is not None:
                pull.body = body
            if draft is not None:
                pull.draft = draft
            if head_repo_deleted is not None:
                pull.head_repo_deleted = head_repo_deleted
            if merged and not pull.merged:
                pull.merged, pull.merged_at = True, now
                pull.merged_by = merged_by or pull.user
                pull.merge_commit_sha = merge_commit_sha
                state = "closed"
            if state == "closed" and pull.state == "open":
                pull.state, pull.closed_at = "closed", now
            elif state == "open" and pull.state == "closed":
                pull.state, pull.closed_at = "open", None
            pull.updated_at = now
            tip, head = pull.base_sha, pull.head_sha
        stats = self._pull_stats(repo, tip, head)
        with self._lock:
            pull.stats = stats
        return self.pull_request(full_name, number)

    def label_pull_request(self, full_name: str, number: int, name: str) -> JSON:
        """Put label ``name`` on the pull request (made on the repository the first time, as
        GitHub's label picker does); returns the label object a ``labeled`` delivery carries.
        GitHub keeps one label per name whatever its case; putting it on twice is refused."""
        repo = self._repo(full_name)
        with self._lock:
            pull = self._pull(repo, number)
            known = self._labels.setdefault(repo.key, {})
            label = known.get(name.casefold())
            if label is None:
                label_id = len(known) + 1 + 1000 * len(self._labels)
                label = {
                    "id": label_id,
                    "node_id": node_id("Label", label_id),
                    "url": f"{repo.json['url']}/labels/{name}",
                    "name": name,
                    "color": "0e8a16",
                    "default": False,
                    "description": None,
                }
                known[name.casefold()] = label
            if any(n.casefold() == name.casefold() for n in pull.labels):
                raise ValueError(f"pull request #{number} already carries {name!r}")
            pull.labels.append(str(label["name"]))
            pull.updated_at = iso_time()
            return copy.deepcopy(label)

    def unlabel_pull_request(self, full_name: str, number: int, name: str) -> JSON:
        """Take label ``name`` off the pull request; returns the label object an
        ``unlabeled`` delivery carries."""
        repo = self._repo(full_name)
        with self._lock:
            pull = self._pull(repo, number)
            carried = [n for n in pull.labels if n.casefold() == name.casefold()]
            if not carried:
                raise ValueError(f"pull request #{number} does not carry {name!r}")
            pull.labels.remove(carried[0])
            pull.updated_at = iso_time()
            return copy.deepcopy(self._labels[repo.key][name.casefold()])

    def pull_request(self, full_name: str, number: int) -> JSON:
        """The pull request as ``GET /repos/{owner}/{repo}/pulls/{number}`` serves it."""
        repo = self._repo(full_name)
        with self._lock:
            pull = copy.deepcopy(self._pull(repo, number))
        return self._pull_json(repo, pull)

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        """Give ``login`` a role on the repository: admin, maintain, write, triage, read or none.

        ``none`` makes ``login`` a known GitHub user without access; a login the fake has never
        heard of is "not a user" (404). The owner of a user-owned repository is its admin, and on
        a public repository every user can read.
        """
        repo = self._repo(full_name)
        if role not in COLLABORATOR_ROLES:
            raise ValueError(f"role must be one of {COLLABORATOR_ROLES}, not {role!r}")
        with self._lock:
            self._roles.setdefault(repo.key, {})[login.lower()] = role
            self._know_user(login)

    # ------------------------------------------------------------------ internals

    def _know_user(self, login: str) -> None:
        self._users.setdefault(login.lower(), login)

    def _known_user(self, login: str) -> str | None:
        """The login as GitHub spells it, if the fake knows such a user."""
        with self._lock:
            known = self._users.get(login.lower())
            if known is not None:
                return known
            for installation in self._installations.values():
                account = installation.account
                if account["type"] == "User" and str(account["login"]).lower() == login.lower():
                    return str(account["login"])
        return None

    def _role(self, repo: Repo, login: str) -> str:
        """The strongest role ``login`` has on ``repo`` (explicit, as owner, or as a reader)."""
        with self._lock:
            roles = [self._roles.get(repo.key, {}).get(login.lower(), "none")]
        owner = repo.json["owner"]
        if owner["type"] == "User" and str(owner["login"]).lower() == login.lower():
            roles.append("admin")
        if not repo.private:
            roles.append("read")
        return max(roles, key=_ROLE_RANK.__getitem__)

    def _check_commit(self, repo: Repo, sha: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or rev_parse(repo.git_dir, sha) != sha:
            raise ValueError(
                f"head_sha must be the full SHA of a commit in {repo.git_dir} (the base "
                f"repository's git directory), not {sha!r}"
            )

    def _branch_tip(self, repo: Repo, branch: str) -> str:
        sha = rev_parse(repo.git_dir, f"refs/heads/{branch}")
        if sha is None:
            raise ValueError(f"{repo.full_name} has no branch {branch!r} (in {repo.git_dir})")
        return sha

    def _pull_stats(self, repo: Repo, base_sha: str, head_sha: str) -> dict[str, int]:
        fork_point = merge_base(repo.git_dir, base_sha, head_sha)
        files = changed_files(repo.git_dir, head_sha, fork_point) if fork_point else []
        return {
            "commits": count_commits(repo.git_dir, base_sha, head_sha),
            "additions": sum(change.additions for change in files),
            "deletions": sum(change.deletions for change in files),
            "changed_files": len(files),
        }

    def _pull(self, repo: Repo, number: int) -> _PullRequest:
        pull = self._pulls.get((repo.key, number))
        if pull is None:
            raise KeyError(f"{repo.full_name} has no pull request #{number}")
        return pull

    def _virtual_ref(self, repo: Repo, ref: str) -> str | None:
        match = _PULL_REF.fullmatch(ref)
        if match is None:
            return None
        with self._lock:
            pull = self._pulls.get((repo.key, int(match["number"])))
            return pull.head_sha if pull is not None else None

    def _fork_json(self, repo: Repo, fork: str) -> JSON:
        """The repository object of a fork of ``repo`` (made once per fork name)."""
        key = fork.lower()
        with self._lock:
            if key not in self._forks:
                owner, _, name = fork.partition("/")
                self._forks[key] = self._repository_json(
                    self._user(owner),
                    name,
                    self._next_id("repository"),
                    repo.default_branch,
                    repo.private,
                    fork=True,
                )
            return self._forks[key]

    def _author_association(self, repo: Repo, login: str) -> str:
        owner = repo.json["owner"]
        if str(owner["login"]).lower() == login.lower():
            return "OWNER"
        with self._lock:
            explicit = self._roles.get(repo.key, {}).get(login.lower(), "none")
        return "COLLABORATOR" if explicit != "none" else "CONTRIBUTOR"

    def _pull_json(self, repo: Repo, pull: _PullRequest) -> JSON:
        api = f"{self.url}/repos/{repo.full_name}"
        web = f"{GITHUB_WEB}/{repo.full_name}/pull/{pull.number}"
        url = f"{api}/pulls/{pull.number}"
        base_sha = rev_parse(repo.git_dir, f"refs/heads/{pull.base_ref}") or pull.base_sha
        if pull.fork is None:
            head_owner: JSON = copy.deepcopy(repo.json["owner"])
            head_repo: JSON | None = copy.deepcopy(repo.json)
        else:
            head_repo = copy.deepcopy(self._fork_json(repo, pull.fork))
            head_owner = copy.deepcopy(head_repo["owner"])
        if pull.head_repo_deleted:
            head_repo = None
        links = {
            "self": url,
            "html": web,
            "issue": f"{api}/issues/{pull.number}",
            "comments": f"{api}/issues/{pull.number}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": f"{api}/statuses/{pull.head_sha}",
        }
        return {
            "url": url,
            "id": pull.id,
            "node_id": node_id("PullRequest", pull.id),
            "html_url": web,
            "diff_url": f"{web}.diff",
            "patch_url": f"{web}.patch",
            "issue_url": links["issue"],
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self._user(pull.user),
            "body": pull.body,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": [
                copy.deepcopy(self._labels[repo.key][name.casefold()]) for name in pull.labels
            ],
            "milestone": None,
            "draft": pull.draft,
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "head": {
                "label": f"{head_owner['login']}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": head_owner,
                "repo": head_repo,
            },
            "base": {
                "label": f"{repo.json['owner']['login']}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": base_sha,
                "user": copy.deepcopy(repo.json["owner"]),
                "repo": copy.deepcopy(repo.json),
            },
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": self._author_association(repo, pull.user),
            "auto_merge": None,
            "active_lock_reason": None,
            "merged": pull.merged,
            "mergeable": None,
            "rebaseable": None,
            "mergeable_state": "unknown",
            "merged_by": self._user(pull.merged_by) if pull.merged_by else None,
            "comments": 0,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": pull.stats.get("commits", 0),
            "additions": pull.stats.get("additions", 0),
            "deletions": pull.stats.get("deletions", 0),
            "changed_files": pull.stats.get("changed_files", 0),
        }

    def _open_pulls_at(self, repo: Repo, sha: str, *, forks: bool) -> list[_PullRequest]:
        """Copies of the open pull requests whose head is ``sha``: from forks, or not."""
        with self._lock:
            return copy.deepcopy(
                sorted(
                    (
                        pull
                        for pull in self._pulls.values()
                        if pull.repo_key == repo.key
                        and pull.state == "open"
                        and (pull.fork is not None) == forks
                        and pull.head_sha == sha
                    ),
                    key=lambda pull: pull.number,
                )
            )

    def _open_pulls_with_head(self, repo: Repo, sha: str) -> list[JSON]:
        """The ``pull_requests`` of a check run or suite: open, same-repository pull requests
        whose head is ``sha`` (GitHub leaves pull requests from forks out)."""
        pulls = self._open_pulls_at(repo, sha, forks=False)
        api = f"{self.url}/repos/{repo.full_name}"
        ref = {"id": repo.json["id"], "url": api, "name": repo.name}
        return [
            {
                "url": f"{api}/pulls/{pull.number}",
                "id": pull.id,
                "number": pull.number,
                "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": dict(ref)},
                "base": {
                    "ref": pull.base_ref,
                    "sha": rev_parse(repo.git_dir, f"refs/heads/{pull.base_ref}") or pull.base_sha,
                    "repo": dict(ref),
                },
            }
            for pull in pulls
        ]

    # ------------------------------------------------------------------ routes

    def _pulls_routes(self) -> list[RouteSpec]:
        return [
            ("GET", REPO + r"/pulls/(?P<pull_number>[0-9]+)", self._get_pull_request),
            (
                "GET",
                REPO + r"/collaborators/(?P<username>[^/]+)/permission",
                self._get_collaborator_permission,
            ),
        ]

    def _get_pull_request(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "pull_requests", "read")
        number = int(params["pull_number"])
        with self._lock:
            pull = copy.deepcopy(self._pulls.get((repo.key, number)))
        if pull is None:
            raise HttpError(
                404, "Not Found", detail=f"no pull request #{number} in {repo.full_name}"
            )
        return json_response(200, self._pull_json(repo, pull))

    def _get_collaborator_permission(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "metadata", "read")
        login = self._known_user(params["username"])
        if login is None:
            raise HttpError(
                404,
                f"{params['username']} is not a user",
                detail=f"the fake knows no GitHub user {params['username']!r} "
                "(set_permission(..., 'none') makes a user without access)",
                record=False,
            )
        role = self._role(repo, login)
        rank = _ROLE_RANK[role]
        role_name = "" if role == "none" else role
        user = self._user(login)
        user["permissions"] = {
            "admin": rank >= _ROLE_RANK["admin"],
            "maintain": rank >= _ROLE_RANK["maintain"],
            "push": rank >= _ROLE_RANK["write"],
            "triage": rank >= _ROLE_RANK["triage"],
            "pull": rank >= _ROLE_RANK["read"],
        }
        user["role_name"] = role_name
        user["user_view_type"] = "public"
        return json_response(
            200, {"permission": LEGACY_PERMISSION[role], "role_name": role_name, "user": user}
        )
