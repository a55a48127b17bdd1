"""The App and its installations: ``/app``, ``/app/installations``, installation access tokens,
``/installation/repositories`` and ``/repos/{owner}/{repo}/installation``; and the App's birth
by the manifest flow: GitHub's web form (``POST [/organizations/{org}]/settings/apps/new``) and
``POST /app-manifests/{code}/conversions``."""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.keys import new_private_key_pem

from .auth import PERMISSION_RANK, AuthMixin
from .core import DEFAULT_PERMISSIONS, Installation, Repo, Token
from .http import (
    JSON,
    REPO,
    Body,
    HttpError,
    Request,
    Response,
    RouteSpec,
    is_http_url,
    json_response,
)
from .payloads import installation_object, iso_time, node_id, user_object

_TOKEN_ALPHABET = string.ascii_letters + string.digits
MANIFEST_CODE_LIFETIME = 3600
"""GitHub's manifest codes work once, within an hour of the App's creation."""
FIRST_APP_ID = 900_000
EVENT_PERMISSIONS: Mapping[str, str] = {
    "check_run": "checks",
    "check_suite": "checks",
    "deployment": "deployments",
    "deployment_status": "deployments",
    "issue_comment": "issues",
    "issues": "issues",
    "pull_request": "pull_requests",
    "pull_request_review": "pull_requests",
    "push": "contents",
    "release": "contents",
    "status": "statuses",
    "create": "contents",
    "delete": "contents",
    "repository": "metadata",
    "star": "metadata",
    "workflow_run": "actions",
}
"""Events an App may subscribe to, each with the permission GitHub wants for it (a subset)."""
NOT_SUBSCRIBABLE = frozenset({"installation", "installation_repositories", "ping", "meta"})
"""Delivered to every App without asking; a manifest naming them is refused."""


@dataclass
class ManifestCode:
    app: JSON
    """The conversion's whole answer, secrets included."""
    expires_at: float
    used: bool = False


def manifest_problems(manifest: Any) -> list[str]:
    """What GitHub would refuse in an App manifest (the fields Slipway's flow relies on)."""
    if not isinstance(manifest, dict):
        return ["the manifest must be a JSON object"]
    problems = []
    for key in ("url", "redirect_url"):
        if not isinstance(manifest.get(key), str) or not is_http_url(manifest[key]):
            problems.append(f"{key} must be an absolute http(s) URL, not {manifest.get(key)!r}")
    hook = manifest.get("hook_attributes")
    if not isinstance(hook, dict) or not is_http_url(str(hook.get("url", ""))):
        problems.append("hook_attributes.url must be an absolute http(s) URL")
    permissions = manifest.get("default_permissions")
    if not isinstance(permissions, dict) or not permissions:
        problems.append("default_permissions must be an object of permission: level")
        permissions = {}
    for name, level in permissions.items():
        if level not in PERMISSION_RANK or level == "admin":
            problems.append(f"default_permissions.{name} must be read or write, not {level!r}")
    events = manifest.get("default_events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        problems.append("default_events must be an array of event names")
        events = []
    for event in events:
        if event in NOT_SUBSCRIBABLE or event not in EVENT_PERMISSIONS:
            problems.append(f"default_events: {event!r} is not an event an App subscribes to")
        elif EVENT_PERMISSIONS[event] not in permissions:
            problems.append(
                f"default_events: {event!r} needs the {EVENT_PERMISSIONS[event]} permission"
            )
    if "name" in manifest and not (isinstance(manifest["name"], str) and manifest["name"]):
        problems.append("name must be a non-empty string")
    return problems


class AppsMixin(AuthMixin):
    def _init_apps(self) -> None:
        self._manifest_codes: dict[str, ManifestCode] = {}
        self._conversions = 0
        self._last_manifest: JSON | None = None

    # ------------------------------------------------------------------ test helpers

    def create_app_from_manifest(
        self,
        manifest: Mapping[str, Any] | str,
        *,
        organization: str | None = None,
        user: str = "octo-admin",
        private_key_pem: str | None = None,
    ) -> str:
        """What github.com does once the user clicks "Create GitHub App" on the manifest's form:
        a new App (id, slug, key, webhook secret) owned by ``organization`` or ``user``. The fake
        becomes that App (its JWTs are the ones accepted from then on). Returns the one-time
        code GitHub puts in the redirect; ValueError lists what GitHub would refuse.

        ``private_key_pem``: the key GitHub "generates" (default: a fresh one).
        """
        parsed = json.loads(manifest) if isinstance(manifest, str) else dict(manifest)
        problems = manifest_problems(parsed)
        if problems:
            raise ValueError("GitHub would refuse this manifest: " + "; ".join(problems))
        pem = private_key_pem or new_private_key_pem()
        key = serialization.load_pem_private_key(
            pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        name = str(parsed.get("name") or "Slipway")
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"
        owner_login = organization or user
        owner = self._user(owner_login, "Organization" if organization else "User")
        owner["html_url"] = f"{self.url}/{owner_login}"
        with self._lock:
            app_id = max(self.app_id, FIRST_APP_ID) + 1
            now = iso_time()
            app: JSON = {
                "id": app_id,
                "slug": slug,
                "node_id": node_id("Integration", app_id),
                "client_id": f"Iv23li{secrets.token_hex(7)}",
                "owner": owner,
                "name": name,
                "description": parsed.get("description"),
                "external_url": parsed["url"],
                "html_url": f"{self.url}/apps/{slug}",
                "created_at": now,
                "updated_at": now,
                "permissions": {"metadata": "read", **parsed["default_permissions"]},
                "events": list(parsed["default_events"]),
                "installations_count": 0,
                "client_secret": secrets.token_hex(20),
                "webhook_secret": secrets.token_hex(20),
                "pem": pem,
            }
            self.app_id, self.app_slug, self.app_name = app_id, slug, name
            self.app_permissions = dict(app["permissions"])
            self.app_events = list(app["events"])
            self.hook_url = str((parsed.get("hook_attributes") or {}).get("url", ""))
            self.app_owner = owner_login
            self._private_key_pem, self._public_key = pem, key.public_key()
            self._last_manifest = parsed
            code = secrets.token_hex(20)
            self._register_manifest_client(app, parsed)
            self._manifest_codes[code] = ManifestCode(app, time.time() + MANIFEST_CODE_LIFETIME)
        return code

    def _register_manifest_client(self, app: JSON, manifest: JSON) -> None:
        """The new App's OAuth client, with the manifest's callback URLs (overridden by the
        OAuth area, which knows what to do with it)."""

    @property
    def webhook_secret(self) -> str | None:
        """The webhook secret of the App made from a manifest (None before there is one)."""
        with self._lock:
            apps = [c.app for c in self._manifest_codes.values() if c.app["id"] == self.app_id]
        return str(apps[-1]["webhook_secret"]) if apps else None

    @property
    def manifest_conversions(self) -> int:
        """How many codes were traded for an App's credentials."""
        with self._lock:
            return self._conversions

    def expire_manifest_codes(self) -> None:
        with self._lock:
            for code in self._manifest_codes.values():
                code.expires_at = min(code.expires_at, time.time() - 1)

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

    def set_installation_permissions(
        self, installation_id: int, permissions: Mapping[str, str]
    ) -> None:
        """What the App may do on the installation from now on: tokens issued later carry it
        (those issued before keep theirs until they expire, as on GitHub)."""
        with self._lock:
            self._installation(installation_id).permissions = dict(permissions)

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
            ("GET", r"/app/hook/config", self._get_hook_config),
            ("GET", r"/app/installations", self._list_installations),
            ("GET", r"/app/installations/(?P<installation_id>\d+)", self._get_installation),
            (
                "POST",
                r"/app/installations/(?P<installation_id>\d+)/access_tokens",
                self._create_token,
            ),
            ("GET", r"/installation/repositories", self._list_installation_repositories),
            ("GET", REPO + r"/installation", self._get_repository_installation),
            ("POST", r"/app-manifests/(?P<code>[^/]+)/conversions", self._convert_manifest),
            ("POST", r"/settings/apps/new", self._new_app_form),
            ("POST", r"/organizations/(?P<org>[^/]+)/settings/apps/new", self._new_app_form),
        ]

    def _convert_manifest(self, request: Request, params: dict[str, str]) -> Response:
        """No authentication: the code is the credential, good once, for an hour."""
        with self._lock:
            found = self._manifest_codes.get(params["code"])
            if found is None or found.used or time.time() >= found.expires_at:
                why = (
                    "not a code this fake issued"
                    if found is None
                    else "already converted"
                    if found.used
                    else "expired"
                )
                raise HttpError(404, "Not Found", detail=f"manifest code {why}", record=False)
            found.used = True
            self._conversions += 1
            return json_response(201, copy.deepcopy(found.app))

    def _new_app_form(self, request: Request, params: dict[str, str]) -> Response:
        """github.com's "Register new GitHub App" page, with the user clicking Create at once:
        the form's manifest becomes an App, and the browser goes to its redirect_url."""
        content_type = (request.header("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise HttpError(415, "the manifest must come as a posted HTML form")
        fields = parse_qs(request.body.decode(), keep_blank_values=True)
        if "manifest" not in fields:
            raise HttpError(422, "the form has no manifest field")
        try:
            manifest = json.loads(fields["manifest"][-1])
        except ValueError as exc:
            raise HttpError(422, f"the manifest field is not JSON: {exc}") from exc
        try:
            code = self.create_app_from_manifest(manifest, organization=params.get("org"))
        except ValueError as exc:
            raise HttpError(422, str(exc)) from exc
        query = {
            "code": code,
            **({"state": request.query["state"]} if "state" in request.query else {}),
        }
        location = f"{manifest['redirect_url']}?{urlencode(query)}"
        return Response(302, b"", {"Location": location})

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

    def _get_hook_config(self, request: Request, params: dict[str, str]) -> Response:
        self._require_app_jwt(request)
        return json_response(
            200, {"url": self.hook_url, "content_type": "json", "insecure_ssl": "0"}
        )

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
