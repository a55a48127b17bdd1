"""A client of Slipway's API, for the CLI: where the platform is, with which token, and calls.

Where and with which token, first found wins: `--url` or SLIPWAY_API_URL for the place,
SLIPWAY_TOKEN for the token, then what `slipway auth login` stored in the user's config
directory, and last, on the platform's own machine, its settings and the admin token it wrote
into DATA_DIR. A token is never taken from the command line: argv is visible to every user of
the machine (`ps`) and stays in shell history.

A stored token goes only to the URL it was stored for: `--url` naming another platform gets
no token but one given for it (a token is as good as a password, and that URL may be
anyone's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import httpx

from manifests.errors import SlipwayError

TIMEOUT_SECONDS = 30.0
UPLOAD_CHUNK_BYTES = 256 * 1024
URL_VARIABLE = "SLIPWAY_API_URL"
TOKEN_VARIABLE = "SLIPWAY_TOKEN"  # noqa: S105 (a variable's name, not a secret)
OLD_TOKEN_VARIABLE = "SLIPWAY_API_TOKEN"  # noqa: S105
"""Its name before `slipway auth`; still read, so scripts that set it keep working."""
AUTH_STATUSES = frozenset({401, 403})


class ClientError(SlipwayError):
    """The API could not be reached or refused; the message is the API's own reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def is_auth(self) -> bool:
        """Whether logging in (again), or another token, is the fix: exit code 4."""
        return self.status in AUTH_STATUSES


class NotLoggedIn(ClientError):
    """No token for the platform asked for: nothing was sent anywhere."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


@dataclass(frozen=True)
class Login:
    url: str
    token: str
    source: str = ""
    """Where the token came from, in words (`auth status` says it)."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "slipway" / "login.json"


def save_login(login: Login, path: Path) -> None:
    """0600 in a 0700 directory: the token is as good as a password."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": login.url, "token": login.token}, handle)
    os.replace(partial, path)


def stored_login(path: Path) -> Login | None:
    try:
        data = json.loads(path.read_text())
        return Login(url=str(data["url"]), token=str(data["token"]), source=str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_login(path: Path) -> Login | None:
    """Remove the stored login; the one removed, or None when there was none."""
    found = stored_login(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return found


def local_login() -> Login | None:
    """On the platform's machine: its own API and the admin token it made on first start."""
    try:
        from app.access.tokens import admin_token_path
        from app.kernel.settings import load_settings

        settings = load_settings()
        path = admin_token_path(settings.data_dir)
        token = path.read_text().strip()
    except (SlipwayError, OSError, RuntimeError):
        return None
    if not token:
        return None
    return Login(url=settings.api_url, token=token, source=f"the platform's admin token ({path})")


def same_api(a: str, b: str) -> bool:
    """Whether two API URLs name the same place: scheme, host, port and path, ignoring case
    where URLs do (scheme, host), a default port and a trailing slash."""

    def key(url: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port or {"http": 80, "https": 443}.get(scheme)
        except ValueError:
            port = -1
        return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")

    return key(a) == key(b)


def token_from_environment(environ: Mapping[str, str]) -> Login | None:
    """The token in SLIPWAY_TOKEN (or its old name), as a Login without a URL yet."""
    for name in (TOKEN_VARIABLE, OLD_TOKEN_VARIABLE):
        token = environ.get(name, "").strip()
        if token:
            return Login(url="", token=token, source=name)
    return None


def find_login(url: str | None, path: Path, environ: Mapping[str, str] | None = None) -> Login:
    environ = os.environ if environ is None else environ
    url = url or environ.get(URL_VARIABLE) or None
    given = token_from_environment(environ)
    if url and given:
        return Login(url=url, token=given.token, source=given.source)
    stored = stored_login(path)
    if url is None:
        found = stored or local_login()
        if found is None:
            raise NotLoggedIn(
                f"not logged in: run `slipway auth login URL` (or set {URL_VARIABLE} and "
                f"{TOKEN_VARIABLE})"
            )
        if given is None:
            return found
        return Login(url=found.url, token=given.token, source=given.source)
    # A URL was named: only a token stored for that very URL goes there.
    if stored is not None and same_api(stored.url, url):
        return Login(url=url, token=stored.token, source=stored.source)
    local = local_login()
    if local is not None and same_api(local.url, url):
        return Login(url=url, token=local.token, source=local.source)
    where = f" (the stored login is for {stored.url})" if stored else ""
    raise NotLoggedIn(
        f"no token for {url}{where}: run `slipway auth login {url}`, or set {TOKEN_VARIABLE} "
        "to a token of that platform"
    )


class SlipwayClient:
    def __init__(self, login: Login, *, transport: httpx.BaseTransport | None = None) -> None:
        self.url = login.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {login.token}"},
            timeout=TIMEOUT_SECONDS,
            trust_env=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlipwayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ClientError(f"Slipway at {self.url} did not answer: {exc}") from exc
        if response.is_error:
            raise ClientError(_reason(response), response.status_code)
        return response.json() if response.content else None

    # -- who --------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The token's name and whether it is read-only (and proof that it is accepted).
        A platform older than /api/whoami is asked to list deployments instead: that proves
        the token, without a name."""
        try:
            return dict(self._call("GET", "/api/whoami"))
        except ClientError as exc:
            if exc.status != 404:
                raise
        self.deployments()
        return {"name": None, "read_only": None}

    # -- deployments ------------------------------------------------------------------------
    def deployments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/deployments"))

    def deployment(self, name_or_id: str) -> dict[str, Any]:
        """By id, or by slug (what people remember)."""
        if name_or_id.startswith("dep_"):
            return dict(self._call("GET", f"/api/deployments/{name_or_id}"))
        for deployment in self.deployments():
            if deployment["slug"] == name_or_id:
                return dict(deployment)
        raise ClientError(
            f"no deployment named {name_or_id!r} (see `slipway deployments list`)", 404
        )

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/api/deployments", body))

    def deploy(self, deployment_id: str, ref: str | None) -> dict[str, Any]:
        return dict(self._call("POST", f"/api/deployments/{deployment_id}/revisions", {"ref": ref}))

    def rollback(self, deployment_id: str, number: int) -> dict[str, Any]:
        return dict(
            self._call("POST", f"/api/deployments/{deployment_id}/rollback", {"revision": number})
        )

    def delete(self, deployment_id: str, confirm: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/api/deployments/{deployment_id}", {"confirm": confirm}))

    def env(self, deployment_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/deployments/{deployment_id}/env"))

    def change_env(self, deployment_id: str, change: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/api/deployments/{deployment_id}/env", change))

    # -- revisions --------------------------------------------------------------------------
    def revisions(self, deployment_id: str) -> list[dict[str, Any]]:
        """Newest first."""
        return list(self._call("GET", f"/api/deployments/{deployment_id}/revisions"))

    def revision(self, revision_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/revisions/{revision_id}"))

    def log(self, revision_id: str) -> str:
        try:
            response = self._http.get(f"/api/revisions/{revision_id}/logs")
        except httpx.HTTPError as exc:
            raise ClientError(f"Slipway at {self.url} did not answer: {exc}") from exc
        if response.is_error:
            raise ClientError(_reason(response), response.status_code)
        return response.text

    def follow_log(self, revision_id: str) -> Iterator[str]:
        """The log as it is written, until the revision is live or finished."""
        try:
            with self._http.stream(
                "GET",
                f"/api/revisions/{revision_id}/logs",
                params={"follow": "true"},
                timeout=httpx.Timeout(TIMEOUT_SECONDS, read=None),
            ) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(_reason(response), response.status_code)
                yield from response.iter_text()
        except httpx.HTTPError as exc:
            raise ClientError(f"the log stream broke off: {exc}") from exc

    # -- databases --------------------------------------------------------------------------
    def download(self, path: str, out: BinaryIO) -> int:
        """A dump or a stored backup into `out`, as it streams; the bytes written."""
        written = 0
        try:
            with self._http.stream(
                "GET", path, timeout=httpx.Timeout(TIMEOUT_SECONDS, read=None)
            ) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(_reason(response), response.status_code)
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        except httpx.HTTPError as exc:
            raise ClientError(f"the dump broke off after {written} bytes: {exc}") from exc
        return written

    def upload(self, path: str, source: BinaryIO, **params: str) -> dict[str, Any]:
        """An archive as the request's body, streamed from `source`."""

        def chunks() -> Iterator[bytes]:
            while chunk := source.read(UPLOAD_CHUNK_BYTES):
                yield chunk

        try:
            response = self._http.post(
                path,
                content=chunks(),
                params=params,
                headers={"Content-Type": "application/octet-stream"},
                timeout=httpx.Timeout(TIMEOUT_SECONDS, read=None, write=None),
            )
        except httpx.HTTPError as exc:
            raise ClientError(f"Slipway at {self.url} did not answer: {exc}") from exc
        if response.is_error:
            raise ClientError(_reason(response), response.status_code)
        return dict(response.json())

    def backups(self, deployment_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/deployments/{deployment_id}/backups"))

    def restore_backup(self, deployment_id: str, backup_id: str, confirm: str) -> dict[str, Any]:
        return dict(
            self._call(
                "POST",
                f"/api/deployments/{deployment_id}/backups/{backup_id}/restore",
                {"confirm": confirm},
            )
        )

    def server_logs(self, deployment_id: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            response = self._http.get(f"/api/deployments/{deployment_id}/logs", params=params)
        except httpx.HTTPError as exc:
            raise ClientError(f"Slipway at {self.url} did not answer: {exc}") from exc
        if response.is_error:
            raise ClientError(_reason(response), response.status_code)
        return list(response.json())

    def follow_server_logs(
        self, deployment_id: str, params: dict[str, str]
    ) -> Iterator[dict[str, Any]]:
        """The matching lines, then each new one as it is written (Server-Sent Events), until
        the platform ends the follow (SLIPWAY_LOG_FOLLOW_MAX_SECONDS) or Ctrl-C."""
        try:
            with self._http.stream(
                "GET",
                f"/api/deployments/{deployment_id}/logs",
                params={**params, "follow": "true"},
                timeout=httpx.Timeout(TIMEOUT_SECONDS, read=None),
            ) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(_reason(response), response.status_code)
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        yield dict(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError as exc:
            raise ClientError(f"the log stream broke off: {exc}") from exc

    # -- tokens -----------------------------------------------------------------------------
    def domains(self, deployment_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/deployments/{deployment_id}/domains"))

    def add_domain(self, deployment_id: str, domain: str) -> dict[str, Any]:
        path = f"/api/deployments/{deployment_id}/domains"
        return dict(self._call("POST", path, {"domain": domain}))

    def remove_domain(self, deployment_id: str, domain: str) -> None:
        self._call("DELETE", f"/api/deployments/{deployment_id}/domains/{quote(domain, safe='')}")

    def tokens(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/tokens"))

    def create_token(self, name: str, *, read_only: bool) -> dict[str, Any]:
        return dict(self._call("POST", "/api/tokens", {"name": name, "read_only": read_only}))

    def revoke_token(self, name: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/api/tokens/{name}"))


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    extra = body.get("extra") if isinstance(body, dict) else None
    text = str(detail or response.text.strip() or response.reason_phrase)
    if extra:
        text += f" ({extra})"
    return f"{text} (HTTP {response.status_code})"
