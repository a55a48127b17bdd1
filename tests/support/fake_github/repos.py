"""Repositories backed by real git directories: the repository object, tarballs (a redirect to a
codeload link, then the archive), file contents and commits.

Refs resolve with ``git rev-parse`` (plus ``refs/pull/N/head`` of the fake's pull requests), so
the app under test gets exactly the commit it asked for.
"""

from __future__ import annotations

import base64
import copy
import posixpath
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .auth import AuthMixin
from .core import Repo
from .git import (
    Person,
    TreeEntry,
    changed_files,
    commit_info,
    git,
    has_commits,
    list_tree,
    read_blob,
    rev_parse,
    run_text,
    tree_entry,
)
from .http import (
    CODELOAD_PREFIX,
    JSON,
    REPO,
    HttpError,
    Request,
    Response,
    RouteSpec,
    json_response,
)
from .payloads import GITHUB_WEB, iso_time, node_id

CODELOAD_LIFETIME = 300
"""Tarball links of private repositories expire after five minutes."""
CONTENT_JSON_LIMIT = 1024 * 1024
"""Files above 1 MB: no ``content`` in the JSON answer (403 unless the object media type)."""
CONTENT_RAW_LIMIT = 100 * 1024 * 1024
"""Files above 100 MB: not served by the contents API at all."""
BASE64_LINE = 60
"""GitHub wraps the base64 ``content`` of a file every 60 characters (each line ends in \\n)."""
RAW_MEDIA_TYPES = frozenset(
    {
        "application/vnd.github.raw",
        "application/vnd.github.raw+json",
        "application/vnd.github.v3.raw",
    }
)
OBJECT_MEDIA_TYPES = frozenset(
    {"application/vnd.github.object", "application/vnd.github.object+json"}
)
_NOREPLY = "@users.noreply.github.com"


@dataclass
class _Codeload:
    repo_key: str
    sha: str
    expires_at: float


def base64_lines(data: bytes) -> str:
    """``data`` in base64 the way the contents API sends it: 60-character lines, each + ``\\n``."""
    encoded = base64.b64encode(data).decode()
    return "".join(
        encoded[start : start + BASE64_LINE] + "\n" for start in range(0, len(encoded), BASE64_LINE)
    )


class ReposMixin(AuthMixin):
    _codeload: dict[str, _Codeload]

    def _init_repos(self) -> None:
        self._codeload = {}

    # ------------------------------------------------------------------ test helpers

    def add_repository(
        self,
        installation_id: int,
        owner: str,
        name: str,
        git_dir: Path,
        default_branch: str = "main",
        *,
        private: bool = True,
    ) -> JSON:
        """Give the installation a repository backed by ``git_dir`` (a work tree or bare repo).

        Returns the repository object as GitHub puts it in webhook payloads.
        """
        git_dir = Path(git_dir)
        with self._lock:
            installation = self._installation(installation_id)
            if owner.lower() != str(installation.account["login"]).lower():
                raise ValueError(
                    f"installation {installation_id} is on {installation.account['login']!r}; "
                    f"it cannot hold a repository of {owner!r}"
                )
            if f"{owner}/{name}".lower() in self._repos:
                raise ValueError(f"repository {owner}/{name} already exists")
        if git(git_dir, "rev-parse", "--git-dir").returncode != 0:
            raise ValueError(f"{git_dir} is not a git repository")
        with self._lock:
            repo_id = self._next_id("repository")
            repo_json = self._repository_json(
                installation.account, name, repo_id, default_branch, private
            )
            repo = Repo(installation_id, owner, name, git_dir, default_branch, repo_json)
            self._repos[repo.key] = repo
            return copy.deepcopy(repo_json)

    def repository(self, full_name: str) -> JSON:
        """The repository object, as :meth:`add_repository` returned it (KeyError if none)."""
        return copy.deepcopy(self._repo(full_name).json)

    def remove_repository(self, full_name: str) -> None:
        """Take a repository away from its installation."""
        with self._lock:
            del self._repos[full_name.lower()]

    # ------------------------------------------------------------------ refs

    def _virtual_ref(self, repo: Repo, ref: str) -> str | None:
        """A ref GitHub has but the git directory does not (``refs/pull/N/head``); see pulls."""
        return None

    def _resolve(self, repo: Repo, ref: str) -> str | None:
        """The commit SHA ``ref`` (branch, tag, SHA, ``heads/...``, ``refs/...``) names, or None."""
        return self._virtual_ref(repo, ref) or rev_parse(repo.git_dir, ref)

    # ------------------------------------------------------------------ JSON

    def _repository_json(
        self,
        owner: Mapping[str, Any],
        name: str,
        repo_id: int,
        default_branch: str,
        private: bool,
        *,
        fork: bool = False,
    ) -> JSON:
        full = f"{owner['login']}/{name}"
        api = f"{self.url}/repos/{full}"
        html = f"{GITHUB_WEB}/{full}"
        now = iso_time()
        templates = {
            "forks_url": "/forks",
            "keys_url": "/keys{/key_id}",
            "collaborators_url": "/collaborators{/collaborator}",
            "teams_url": "/teams",
            "hooks_url": "/hooks",
            "issue_events_url": "/issues/events{/number}",
            "events_url": "/events",
            "assignees_url": "/assignees{/user}",
            "branches_url": "/branches{/branch}",
            "tags_url": "/tags",
            "blobs_url": "/git/blobs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "trees_url": "/git/trees{/sha}",
            "statuses_url": "/statuses/{sha}",
            "languages_url": "/languages",
            "stargazers_url": "/stargazers",
            "contributors_url": "/contributors",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "commits_url": "/commits{/sha}",
            "git_commits_url": "/git/commits{/sha}",
            "comments_url": "/comments{/number}",
            "issue_comment_url": "/issues/comments{/number}",
            "contents_url": "/contents/{+path}",
            "compare_url": "/compare/{base}...{head}",
            "merges_url": "/merges",
            "archive_url": "/{archive_format}{/ref}",
            "downloads_url": "/downloads",
            "issues_url": "/issues{/number}",
            "pulls_url": "/pulls{/number}",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "labels_url": "/labels{/name}",
            "releases_url": "/releases{/id}",
            "deployments_url": "/deployments",
        }
        repo: JSON = {
            "id": repo_id,
            "node_id": node_id("Repository", repo_id),
            "name": name,
            "full_name": full,
            "private": private,
            "owner": dict(owner),
            "html_url": html,
            "description": None,
            "fork": fork,
            "url": api,
        }
        repo.update({key: api + suffix for key, suffix in templates.items()})
        repo.update(
            {
                "created_at": now,
                "updated_at": now,
                "pushed_at": now,
                "git_url": f"git://github.com/{full}.git",
                "ssh_url": f"git@github.com:{full}.git",
                "clone_url": f"{html}.git",
                "svn_url": html,
                "homepage": None,
                "size": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "language": None,
                "has_issues": True,
                "has_projects": True,
                "has_downloads": True,
                "has_wiki": True,
                "has_pages": False,
                "has_discussions": False,
                "forks_count": 0,
                "mirror_url": None,
                "archived": False,
                "disabled": False,
                "open_issues_count": 0,
                "license": None,
                "allow_forking": True,
                "is_template": False,
                "web_commit_signoff_required": False,
                "topics": [],
                "visibility": "private" if private else "public",
                "forks": 0,
                "open_issues": 0,
                "watchers": 0,
                "default_branch": default_branch,
                "master_branch": default_branch,
                "custom_properties": {},
            }
        )
        return repo

    def _account_for_email(self, email: str) -> JSON | None:
        """The GitHub user a commit email belongs to: only ``[ID+]login@users.noreply...``."""
        if not email.lower().endswith(_NOREPLY):
            return None
        login = email[: -len(_NOREPLY)].split("+", 1)[-1]
        return self._user(login) if login else None

    # ------------------------------------------------------------------ routes

    def _repos_routes(self) -> list[RouteSpec]:
        """``/commits/{ref}`` must come after ``/commits/{ref}/check-runs`` (see ``server.py``)."""
        return [
            ("GET", REPO, self._get_repository),
            ("GET", REPO + r"/tarball(?:/(?P<ref>.+))?", self._tarball),
            (
                "GET",
                CODELOAD_PREFIX
                + r"(?P<owner>[^/]+)/(?P<repo>[^/]+)/legacy\.tar\.gz/(?P<sha>[0-9a-f]{40})",
                self._codeload_archive,
            ),
            ("GET", REPO + r"/contents(?:/(?P<path>.*))?", self._get_contents),
            ("GET", REPO + r"/commits/(?P<ref>.+)", self._get_commit),
        ]

    def _get_repository(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "metadata", "read")
        answer = copy.deepcopy(repo.json)
        answer.update({"network_count": 0, "subscribers_count": 0})
        return json_response(200, answer)

    # ------------------------------------------------------------------ tarballs

    def _tarball(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "contents", "read")
        ref = params.get("ref") or repo.default_branch
        sha = self._resolve(repo, ref)
        if sha is None:
            raise HttpError(404, "Not Found", detail=f"no ref {ref!r} in {repo.full_name}")
        link_token = secrets.token_urlsafe(24)
        with self._lock:
            self._codeload[link_token] = _Codeload(repo.key, sha, time.time() + CODELOAD_LIFETIME)
        location = (
            f"{self.url}{CODELOAD_PREFIX}{quote(repo.owner)}/{quote(repo.name)}/legacy.tar.gz/"
            f"{sha}?token={link_token}"
        )
        return Response(302, b"", {"Location": location, "Content-Type": "text/html"})

    def _codeload_archive(self, request: Request, params: dict[str, str]) -> Response:
        key = f"{params['owner']}/{params['repo']}".lower()
        with self._lock:
            link = self._codeload.get(request.query.get("token", ""))
            repo = self._repos.get(key)
        if link is None or repo is None or link.repo_key != key or link.sha != params["sha"]:
            raise HttpError(404, "Not Found", detail="unknown or mismatched tarball link token")
        if time.time() >= link.expires_at:
            raise HttpError(404, "Not Found", detail="tarball link expired (after 5 minutes)")
        prefix = f"{repo.owner}-{repo.name}-{link.sha[:7]}"
        proc = git(repo.git_dir, "archive", "--format=tar.gz", f"--prefix={prefix}/", link.sha)
        if proc.returncode != 0:
            raise HttpError(
                500, "Server Error", detail=f"git archive failed: {proc.stderr.decode()}"
            )
        return Response(
            200,
            proc.stdout,
            {
                "Content-Type": "application/x-gzip",
                "Content-Disposition": f"attachment; filename={prefix}.tar.gz",
            },
        )

    # ------------------------------------------------------------------ contents

    def _get_contents(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "contents", "read")
        path = params.get("path", "").strip("/")
        ref = request.query.get("ref") or repo.default_branch
        sha = self._resolve(repo, ref)
        if sha is None:
            if not has_commits(repo.git_dir):
                raise HttpError(404, "This repository is empty.", record=False)
            raise HttpError(
                404,
                f"No commit found for the ref {ref}",
                detail=f"no ref {ref!r} in {repo.full_name}",
            )
        if path and any(part in ("", ".", "..") for part in path.split("/")):
            raise HttpError(404, "Not Found", detail=f"malformed contents path {path!r}")
        media = set(request.media_types())
        raw = bool(media & RAW_MEDIA_TYPES)
        as_object = bool(media & OBJECT_MEDIA_TYPES)
        entry = tree_entry(repo.git_dir, sha, path) if path else None
        if path and entry is None:
            raise HttpError(
                404,
                "Not Found",
                detail=f"no {path!r} in {repo.full_name} at {ref!r}",
                record=False,  # asking whether a file exists is what this endpoint is for
            )
        if entry is None or entry.kind == "tree":
            listing = [
                self._content_item(repo, ref, item, listing=True)
                for item in list_tree(repo.git_dir, sha, path)
            ]
            if not as_object:
                return json_response(200, listing)
            if entry is None:  # the root directory
                tree = run_text(repo.git_dir, "rev-parse", f"{sha}^{{tree}}").strip()
                entry = TreeEntry("040000", "tree", tree, 0, "")
            own = self._content_item(repo, ref, entry, listing=False)
            return json_response(200, {**own, "entries": listing})
        if entry.mode == "120000":
            target = self._symlink_target(repo, sha, entry)
            if target is not None:
                entry = target
            elif raw:
                return self._raw(read_blob(repo.git_dir, entry.sha))
        if entry.kind == "blob" and entry.mode != "120000":
            if entry.size > CONTENT_RAW_LIMIT:
                raise self._too_large(entry, "100 MB", "This API returns blobs up to 100 MB")
            if raw:
                return self._raw(read_blob(repo.git_dir, entry.sha))
            if entry.size > CONTENT_JSON_LIMIT and not as_object:
                raise self._too_large(
                    entry,
                    "1 MB",
                    "This API returns blobs up to 1 MB in size. The requested blob is too large "
                    "to fetch via the API, but you can use the raw media type",
                )
        return json_response(200, self._content_item(repo, ref, entry, listing=False))

    def _symlink_target(self, repo: Repo, commit: str, link: TreeEntry) -> TreeEntry | None:
        """The regular file a symlink points to inside the repository, or None."""
        target = read_blob(repo.git_dir, link.sha).decode(errors="replace")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(link.path), target))
        if target.startswith("/") or joined.startswith("..") or joined == ".":
            return None
        found = tree_entry(repo.git_dir, commit, joined)
        if found is None or found.kind != "blob" or found.mode == "120000":
            return None
        return found

    @staticmethod
    def _raw(data: bytes) -> Response:
        return Response(
            200,
            data,
            {"Content-Type": "application/vnd.github.raw", "X-GitHub-Media-Type": "github.raw"},
        )

    @staticmethod
    def _too_large(entry: TreeEntry, limit: str, message: str) -> HttpError:
        return HttpError(
            403,
            message,
            detail=f"{entry.path} is {entry.size} bytes; the JSON contents answer stops at {limit}",
            errors=[{"resource": "Blob", "field": "data", "code": "too_large"}],
        )

    def _content_item(self, repo: Repo, ref: str, entry: TreeEntry, *, listing: bool) -> JSON:
        """A contents object; in a directory listing (``listing``) without the file's content."""
        api = f"{self.url}/repos/{repo.full_name}"
        web = f"{GITHUB_WEB}/{repo.full_name}"
        quoted = quote(entry.path)
        url = f"{api}/contents/{quoted}?ref={quote(ref, safe='')}"
        kinds = {"tree": "dir", "commit": "submodule"}
        kind = kinds.get(entry.kind, "symlink" if entry.mode == "120000" else "file")
        git_kind = {"dir": "trees", "submodule": "commits"}.get(kind, "blobs")
        html_kind = "tree" if kind in ("dir", "submodule") else "blob"
        git_url = f"{api}/git/{git_kind}/{entry.sha}"
        html_url = f"{web}/{html_kind}/{quote(ref)}/{quoted}"
        download_url = (
            f"https://raw.githubusercontent.com/{repo.full_name}/{quote(ref)}/{quoted}"
            if kind in ("file", "symlink")
            else None
        )
        item: JSON = {
            "type": kind,
            "size": entry.size if kind in ("file", "symlink") else 0,
            "name": entry.name,
            "path": entry.path,
            "sha": entry.sha,
            "url": url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": download_url,
            "_links": {"self": url, "git": git_url, "html": html_url},
        }
        if listing:
            if kind == "submodule":
                item["type"] = "file"  # GitHub lists submodules as files, for compatibility
            return item
        if kind == "file":
            small = entry.size <= CONTENT_JSON_LIMIT  # bigger: only with the object media type
            item["content"] = base64_lines(read_blob(repo.git_dir, entry.sha)) if small else ""
            item["encoding"] = "base64" if small else "none"
        elif kind == "symlink":
            item["target"] = read_blob(repo.git_dir, entry.sha).decode(errors="replace")
        elif kind == "submodule":
            item["submodule_git_url"] = None
        return item

    # ------------------------------------------------------------------ commits

    def _get_commit(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "contents", "read")
        ref = params["ref"]
        sha = self._resolve(repo, ref)
        if sha is None:
            if not has_commits(repo.git_dir):
                raise HttpError(409, "Git Repository is empty.")
            raise HttpError(422, f"No commit found for SHA: {ref}")
        media = set(request.media_types())
        if "application/vnd.github.sha" in media:
            return Response(
                200, sha.encode(), {"Content-Type": "application/vnd.github.sha; charset=utf-8"}
            )
        if "application/vnd.github.diff" in media:
            parents = commit_info(repo.git_dir, sha).parents
            args = ("diff", parents[0], sha) if parents else ("diff-tree", "-p", "--root", sha)
            return Response(
                200,
                run_text(repo.git_dir, *args).encode(),
                {"Content-Type": "application/vnd.github.diff; charset=utf-8"},
            )
        if "application/vnd.github.patch" in media:
            return Response(
                200,
                run_text(repo.git_dir, "format-patch", "-1", "--stdout", sha).encode(),
                {"Content-Type": "application/vnd.github.patch; charset=utf-8"},
            )
        return json_response(200, self._commit_json(repo, sha))

    def _commit_json(self, repo: Repo, sha: str) -> JSON:
        info = commit_info(repo.git_dir, sha)
        api = f"{self.url}/repos/{repo.full_name}"
        web = f"{GITHUB_WEB}/{repo.full_name}"
        files = changed_files(repo.git_dir, sha, info.parents[0] if info.parents else None)
        additions = sum(change.additions for change in files)
        deletions = sum(change.deletions for change in files)

        def person(who: Person) -> JSON:
            return {
                "name": who.name,
                "email": who.email,
                "date": iso_time(datetime.fromisoformat(who.date)),
            }

        return {
            "sha": sha,
            "node_id": base64.b64encode(f"06:Commit{repo.json['id']}:{sha}".encode()).decode(),
            "url": f"{api}/commits/{sha}",
            "html_url": f"{web}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {
                "url": f"{api}/git/commits/{sha}",
                "author": person(info.author),
                "committer": person(info.committer),
                "message": info.message,
                "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unknown_key" if info.signed else "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": self._account_for_email(info.author.email),
            "committer": self._account_for_email(info.committer.email),
            "parents": [
                {
                    "sha": parent,
                    "url": f"{api}/commits/{parent}",
                    "html_url": f"{web}/commit/{parent}",
                }
                for parent in info.parents
            ],
            "stats": {
                "additions": additions,
                "deletions": deletions,
                "total": additions + deletions,
            },
            "files": [
                {
                    "sha": change.blob,
                    "filename": change.path,
                    "status": change.status,
                    "additions": change.additions,
                    "deletions": change.deletions,
                    "changes": change.additions + change.deletions,
                    "blob_url": f"{web}/blob/{sha}/{quote(change.path)}",
                    "raw_url": f"{web}/raw/{sha}/{quote(change.path)}",
                    "contents_url": f"{api}/contents/{quote(change.path)}?ref={sha}",
                }
                for change in files
            ],
        }
