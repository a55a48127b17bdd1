"""The App and its installations: ``/app``, ``/app/installations``, installation access tokens,
``/installation/repositories`` and ``/repos/{owner}/{repo}/installation``."""

from __future__ import annotations

import copy
import secrets
import string
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from .auth import PERMISSION_RANK, AuthMixin
from .core import DEFAULT_PERMISSIONS, Installation, Repo, Token
from .http import JSON, REPO, Body, HttpError, Request, Response, RouteSpec, json_response
from .payloads import installation_object, iso_time, user_object

_TOKEN_ALPHABET = string.ascii_letters + string.digits


class AppsMixin(AuthMixin):
    # ------------------------------------------------------------------ test helpers

    def add_installation(
        self,
        installation_id: int,
        account_login: str,
        *,
        account_type: str = "User",
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        """Install the App on ``account_login`` (a User or an Organization)."""
        with self._lock:
            if installation_id in self._installations:
                raise ValueError(f"installation {installation_id} already exists")
            self._installations[installation_id] = Installation(
                id=installation_id,
                account=user_object(account_login, user_type=account_type, api_url=self.url),
                permissions=dict(DEFAULT_PERMISSIONS if permissions is None else permissions),
                created_at=iso_time(),
            )

    def suspend_installation(self, installation_id: int, suspended: bool = True) -> None:
        """Suspend (or unsuspend) an installation: its tokens then get 403."""
        with self._lock:
            self._installation(installation_id).suspended_at = iso_time() if suspended else None

    def remove_installation(self, installation_id: int) -> None:
        """Uninstall: the installation, its repositories and tokens disappear."""
        with self._lock:
            del self._installations[installation_id]
            self._repos = {
                key: repo
                for key, repo in self._repos.items()
                if repo.installation_id != installation_id
            }
            self._tokens = {
                value: token
                for value, token in self._tokens.items()
                if token.installation_id != installation_id
            }

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expired (GitHub answers 401 to them)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, time.time() - 1)

    # ------------------------------------------------------------------ routes

    def _apps_routes(self) -> list[RouteSpec]:
        return [
            ("GET", r"/app", self._get_app),
            ("GET", r"/app/installations", self._list_installations),
            ("GET", r"/app/installations/(?P<installation_id>\d+)", self._get_installation),
            (
                "POST",
                r"/app/installations/(?P<installation_id>\d+)/access_tokens",
                self._create_token,
            ),
            ("GET", r"/installation/repositories", self._list_installation_repositories),
            ("GET", REPO + r"/installation", self._get_repository_installation),
        ]

    def _installation_json(self, installation: Installation) -> JSON:
        return installation_object(
            installation.id,
            installation.account,
            app_id=self.app_id,
            app_slug=self.app_slug,
            permissions=installation.permissions,
            suspended_by=installation.account if installation.suspended_at else None,
            suspended_at=installation.suspended_at,
            created_at=installation.created_at,
            api_url=self.url,
        )

    def _get_app(self, request: Request, params: dict[str, str]) -> Response:
        self._require_app_jwt(request)
        return json_response(200, self._app_json())

    def _list_installations(self, request: Request, params: dict[str, str]) -> Response:
        self._require_app_jwt(request)
        with self._lock:
            installations = sorted(self._installations.values(), key=lambda i: i.id)
            found = [self._installation_json(i) for i in installations]
        page, headers = self._paginate(request, found)
        return json_response(200, page, headers)

    def _installation_for_path(self, params: Mapping[str, str]) -> Installation:
        installation_id = int(params["installation_id"])
        with self._lock:
            installation = self._installations.get(installation_id)
        if installation is None:
            raise HttpError(404, "Not Found", detail=f"no installation {installation_id}")
        return installation

    def _get_installation(self, request: Request, params: dict[str, str]) -> Response:
        self._require_app_jwt(request)
        return json_response(200, self._installation_json(self._installation_for_path(params)))

    def _get_repository_installation(self, request: Request, params: dict[str, str]) -> Response:
        self._require_app_jwt(request)
        full_name = f"{params['owner']}/{params['repo']}"
        with self._lock:
            repo = self._repos.get(full_name.lower())
            installation = self._installations.get(repo.installation_id) if repo else None
        if installation is None:
            raise HttpError(404, "Not Found", detail=f"the App is not installed on {full_name}")
        return json_response(200, self._installation_json(installation))

    def _create_token(self, request: Request, params: dict[str, str]) -> Response:
        self._require_app_jwt(request)
        installation = self._installation_for_path(params)
        if installation.suspended_at is not None:
            raise HttpError(403, "This installation has been suspended")
        body = Body(request.json_object(), "InstallationToken")
        names = body.string_list("repositories")
        ids = body.array("repository_ids")
        if ids is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            body.fail("repository_ids", "repository_ids must be an array of integers")
            ids = None
        wanted = body.obj("permissions")
        body.check()
        with self._lock:
            installed = [r for r in self._repos.values() if r.installation_id == installation.id]
        selected: list[Repo] | None = None
        if names is not None or ids is not None:
            by_name = {r.name.lower(): r for r in installed}
            by_id = {int(r.json["id"]): r for r in installed}
            picked: dict[str, Repo] = {}
            missing: list[str] = []
            for repo_name in names or []:
                if repo_name.lower() in by_name:
                    picked[by_name[repo_name.lower()].key] = by_name[repo_name.lower()]
                else:
                    missing.append(repo_name)
            for repo_id in ids or []:
                if repo_id in by_id:
                    picked[by_id[repo_id].key] = by_id[repo_id]
                else:
                    missing.append(str(repo_id))
            if missing:
                raise HttpError(
                    422,
                    "There is at least one repository that does not exist or is not accessible "
                    "to the parent installation.",
                    detail=f"token requested for repositories not in the installation: {missing}",
                )
            selected = list(picked.values())
        permissions = dict(installation.permissions)
        if wanted is not None:
            too_much = {
                name: level
                for name, level in wanted.items()
                if not isinstance(level, str)
                or level not in PERMISSION_RANK
                or PERMISSION_RANK[level]
                > PERMISSION_RANK.get(installation.permissions.get(name, ""), 0)
            }
            if too_much:
                raise HttpError(
                    422,
                    "The permissions requested are not granted to this installation.",
                    detail=f"token permissions {too_much} exceed the installation's "
                    f"{installation.permissions}",
                )
            permissions = {str(name): str(level) for name, level in wanted.items()}
        token = "ghs_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36))
        expires_at = int(time.time() + self.token_lifetime.total_seconds())
        with self._lock:
            self._tokens[token] = Token(
                token=token,
                installation_id=installation.id,
                expires_at=expires_at,
                repositories=None if selected is None else frozenset(r.key for r in selected),
                permissions=permissions,
            )
            self._token_requests += 1
        answer: JSON = {
            "token": token,
            "expires_at": iso_time(datetime.fromtimestamp(expires_at, UTC)),
            "permissions": permissions,
            "repository_selection": "all" if selected is None else "selected",
        }
        if selected is not None:
            answer["repositories"] = [copy.deepcopy(r.json) for r in selected]
        return json_response(201, answer)

    def _list_installation_repositories(self, request: Request, params: dict[str, str]) -> Response:
        token = self._require_token(request)
        with self._lock:
            repos = [
                copy.deepcopy(r.json)
                for r in sorted(self._repos.values(), key=lambda r: int(r.json["id"]))
                if r.installation_id == token.installation_id
                and (token.repositories is None or r.key in token.repositories)
            ]
        page, headers = self._paginate(request, repos)
        return json_response(
            200,
            {"total_count": len(repos), "repository_selection": "selected", "repositories": page},
            headers,
        )
