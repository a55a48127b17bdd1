"""Signing people in: the App's OAuth web flow and the user-to-server token's endpoints.

- ``GET /login/oauth/authorize`` (a github.com page): the person the test signed in on the fake
  (:meth:`OAuthMixin.sign_in_browser`) authorises at once, and the browser goes back to
  ``redirect_uri`` with a one-time ``code`` and the ``state`` it came with;
- ``POST /login/oauth/access_token`` (github.com): the code, with the App's client id and
  secret and the same ``redirect_uri``, buys a user token (``ghu_…``);
- ``GET /user``, ``GET /user/installations``, ``GET /user/installations/{id}/repositories``
  with that token: the person, the App's installations they can reach, and there the
  repositories they are a member of, each with their ``permissions``.

What GitHub would refuse is refused and recorded in ``fake.errors`` (an unknown client, a wrong
secret, a ``redirect_uri`` that is not the App's callback URL or differs from the authorize
step's, a code used twice).
"""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from .apps import AppsMixin
from .core import Repo
from .http import JSON, HttpError, Request, Response, RouteSpec, json_response
from .pulls import _ROLE_RANK, PullsMixin

CODE_LIFETIME = 600
"""GitHub's OAuth codes expire after ten minutes."""


@dataclass
class _Client:
    secret: str
    callback_urls: list[str]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    login: str
    expires_at: float
    used: bool = False


class OAuthMixin(PullsMixin, AppsMixin):
    def _init_oauth(self) -> None:
        self._oauth_clients: dict[str, _Client] = {}
        self._oauth_codes: dict[str, _Code] = {}
        self._user_tokens: dict[str, str] = {}
        self._browser_login: str | None = None

    # ------------------------------------------------------------------ test helpers

    def register_oauth_client(
        self, client_id: str, client_secret: str, callback_urls: list[str]
    ) -> None:
        """The App's OAuth client (the manifest flow registers its own)."""
        with self._lock:
            self._oauth_clients[client_id] = _Client(client_secret, list(callback_urls))

    def sign_in_browser(self, login: str) -> None:
        """The person signed in on (fake) github.com, who authorises the App when asked."""
        with self._lock:
            self._know_user(login)
            self._browser_login = login

    def revoke_user_tokens(self) -> None:
        with self._lock:
            self._user_tokens.clear()

    @property
    def user_tokens_issued(self) -> int:
        with self._lock:
            return len(self._user_tokens)

    def _register_manifest_client(self, app: JSON, manifest: JSON) -> None:
        urls = manifest.get("callback_urls") or []
        self._oauth_clients[str(app["client_id"])] = _Client(
            str(app["client_secret"]), [str(u) for u in urls]
        )

    # ------------------------------------------------------------------ routes

    def _oauth_routes(self) -> list[RouteSpec]:
        return [
            ("GET", r"/login/oauth/authorize", self._authorize),
            ("POST", r"/login/oauth/access_token", self._access_token),
            ("GET", r"/user", self._get_user),
            ("GET", r"/user/installations", self._user_installations),
            (
                "GET",
                r"/user/installations/(?P<installation_id>\d+)/repositories",
                self._user_installation_repositories,
            ),
        ]

    def _authorize(self, request: Request, params: dict[str, str]) -> Response:
        client_id = request.query.get("client_id", "")
        redirect_uri = request.query.get("redirect_uri", "")
        with self._lock:
            client = self._oauth_clients.get(client_id)
            login = self._browser_login
        if client is None:
            raise HttpError(404, "Not Found", detail=f"no OAuth client {client_id!r}")
        if not _matches(redirect_uri, client.callback_urls):
            raise HttpError(
                400,
                "The redirect_uri is not associated with this application.",
                detail=f"redirect_uri {redirect_uri!r} is none of {client.callback_urls}",
            )
        if login is None:
            raise HttpError(
                401, "Sign in to GitHub", detail="no browser user: call sign_in_browser(login)"
            )
        code = secrets.token_hex(10)
        with self._lock:
            self._oauth_codes[code] = _Code(
                client_id, redirect_uri, login, time.time() + CODE_LIFETIME
            )
        query = {
            "code": code,
            **({"state": request.query["state"]} if "state" in request.query else {}),
        }
        return Response(302, b"", {"Location": f"{redirect_uri}?{urlencode(query)}"})

    def _access_token(self, request: Request, params: dict[str, str]) -> Response:
        if not (request.header("Content-Type") or "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise HttpError(415, "the token exchange must be a posted form")
        if "application/json" not in request.media_types():
            raise HttpError(406, "ask for JSON: Accept: application/json")
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        with self._lock:
            client = self._oauth_clients.get(form.get("client_id", ""))
            found = self._oauth_codes.get(form.get("code", ""))
            if client is None or client.secret != form.get("client_secret"):
                return self._oauth_error(
                    "incorrect_client_credentials", "client_id or client_secret is wrong"
                )
            if found is None or found.used or time.time() >= found.expires_at:
                return self._oauth_error(
                    "bad_verification_code", "the code is wrong or expired", record=False
                )
            if found.client_id != form["client_id"]:
                return self._oauth_error("bad_verification_code", "the code is another client's")
            if form.get("redirect_uri") != found.redirect_uri:
                return self._oauth_error(
                    "redirect_uri_mismatch",
                    f"redirect_uri {form.get('redirect_uri')!r} differs from the authorize "
                    f"step's {found.redirect_uri!r}",
                )
            found.used = True
            token = "ghu_" + secrets.token_hex(18)
            self._user_tokens[token] = found.login
        return json_response(200, {"access_token": token, "token_type": "bearer", "scope": ""})

    def _oauth_error(self, error: str, description: str, *, record: bool = True) -> Response:
        if record:
            self._record(f"POST /login/oauth/access_token: {error}: {description}")
        return json_response(200, {"error": error, "error_description": description})

    def _user_login(self, request: Request) -> str:
        _, credential = self._credentials(request)
        with self._lock:
            login = self._user_tokens.get(credential)
        if login is None:
            raise HttpError(401, "Bad credentials", detail="not a user token this fake issued")
        return login

    def _get_user(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(200, self._user(self._user_login(request)))

    def _member_role(self, repo: Repo, login: str) -> str:
        """The person's role as a member (explicit or owner), not public read access."""
        with self._lock:
            role = self._roles.get(repo.key, {}).get(login.lower(), "none")
        owner = repo.json["owner"]
        if owner["type"] == "User" and str(owner["login"]).lower() == login.lower():
            return "admin"
        return role

    def _reachable(self, login: str) -> dict[int, list[JSON]]:
        with self._lock:
            repos = sorted(self._repos.values(), key=lambda r: int(r.json["id"]))
        found: dict[int, list[JSON]] = {}
        for repo in repos:
            role = self._member_role(repo, login)
            if role == "none":
                continue
            rank = _ROLE_RANK[role]
            item = copy.deepcopy(repo.json)
            item["permissions"] = {
                "admin": rank >= _ROLE_RANK["admin"],
                "maintain": rank >= _ROLE_RANK["maintain"],
                "push": rank >= _ROLE_RANK["write"],
                "triage": rank >= _ROLE_RANK["triage"],
                "pull": rank >= _ROLE_RANK["read"],
            }
            found.setdefault(repo.installation_id, []).append(item)
        return found

    def _user_installations(self, request: Request, params: dict[str, str]) -> Response:
        reachable = self._reachable(self._user_login(request))
        with self._lock:
            installations = [
                self._installation_json(i)
                for i in sorted(self._installations.values(), key=lambda i: i.id)
                if i.id in reachable
            ]
        page, headers = self._paginate(request, installations)
        return json_response(
            200, {"total_count": len(installations), "installations": page}, headers
        )

    def _user_installation_repositories(self, request: Request, params: dict[str, str]) -> Response:
        reachable = self._reachable(self._user_login(request))
        repos = reachable.get(int(params["installation_id"]))
        if repos is None:
            raise HttpError(404, "Not Found", detail="the user cannot reach this installation")
        page, headers = self._paginate(request, repos)
        return json_response(
            200,
            {"total_count": len(repos), "repository_selection": "selected", "repositories": page},
            headers,
        )


def _matches(redirect_uri: str, callback_urls: list[str]) -> bool:
    """GitHub takes a callback URL, or a path under it on the same host and port."""
    asked = urlsplit(redirect_uri)
    for url in callback_urls:
        known = urlsplit(url)
        if (asked.scheme, asked.netloc) == (known.scheme, known.netloc) and (
            asked.path == known.path or asked.path.startswith(known.path.rstrip("/") + "/")
        ):
            return True
    return False
