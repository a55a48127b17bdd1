"""First run without an App: /setup creates Slipway's GitHub App with GitHub's manifest flow.

0. Only the holder of the setup token (app/setup/token.py: printed by `slipway up`, kept in
   DATA_DIR/setup-token) gets anywhere: every step checks it first, so a stranger who reaches
   a fresh install can neither create the App nor use up the pages the operator may open.
1. `start` builds the manifest from app.yml and PUBLIC_URL and issues a one-time `state`; the
   page posts both to GitHub's "new App" form (personal account or an organisation).
2. GitHub creates the App and sends the browser to PUBLIC_URL/setup/callback?code=…&state=….
   The browser brings the token back too (the page set it as a cookie for /setup): a state
   alone, copied from a URL on its way through GitHub, buys nothing.
3. `complete` spends the state, trades the code for the App's id, key and secrets (GitHub's
   `POST /app-manifests/{code}/conversions`, through the `ManifestConverter` port) and stores
   them encrypted; every process then finds the App through `GitHubAppCredentials`. The
   setup token is spent with it.

Nothing here knows HTTP: the controller in app/api/setup.py renders the results and errors.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import yaml
from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import GitHubAppRegistration, SetupState
from app.kernel.ports import Clock
from app.setup.credentials import GitHubAppCredentials, GitHubAppUnreadable, first_registration
from app.setup.token import SETUP_TOKEN_FILE, SetupTokenFile
from manifests.errors import SlipwayError

MANIFEST_TEMPLATE = Path(__file__).resolve().parents[2] / "app.yml"
"""The App's manifest; its URLs are placeholders that `build_manifest` replaces."""
WEBHOOK_PATH = "/webhooks/github"
CALLBACK_PATH = "/setup/callback"
OAUTH_CALLBACK_PATH = "/dashboard/oauth/callback"
"""Where GitHub sends a browser back after the dashboard's sign-in."""
STATE_LIFETIME = timedelta(hours=1)
"""As long as GitHub's manifest code lives: a state older than that has nothing left to buy."""
STATE_KEPT_AFTER_EXPIRY = timedelta(days=1)
"""Expired states are kept this long, so a late callback is told "expired", not "unknown"."""
STATE_BYTES = 32
MAX_OPEN_STATES = 100
"""Setup pages open at once (each holds a state); only the token's holder opens one, so this
bounds what a runaway reload stores, and a stranger cannot use it up."""
GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
"""What GitHub accepts as a user or organisation name."""
MANIFEST_CODE = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""GitHub's codes are hex; anything else would only be pasted into a URL path."""


class SetupError(SlipwayError):
    """Setting the App up cannot go on; the message says what the user can do."""


class AppAlreadyConfigured(SetupError):
    """An App exists (in the environment or made here): setup is closed."""


class SetupTokenRefused(SetupError):
    """The request does not carry the current setup token."""


class SetupStateRefused(SetupError):
    """The callback's state is unknown, expired or already spent."""


class TooManySetupPages(SetupError):
    """Too many setup pages are open; the message says to use one or wait."""


class BadOrganization(SetupError):
    """The organisation name cannot be a GitHub organisation."""


class ManifestCodeRefused(SetupError):
    """GitHub did not trade the code for the App (it expired, or was used already)."""


class ManifestConversionFailed(SetupError):
    """GitHub could not be reached, or its answer lacked what Slipway needs."""


@dataclass(frozen=True)
class ConvertedApp:
    """What GitHub hands over once, for the code of a newly created App."""

    id: int
    slug: str
    name: str
    owner_login: str
    html_url: str
    client_id: str
    client_secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    pem: str = field(repr=False)


class ManifestConverter(Protocol):
    def convert(self, code: str) -> ConvertedApp:
        """Raises ManifestCodeRefused or ManifestConversionFailed."""


@dataclass(frozen=True)
class SetupForm:
    """The page's form: posted by the browser to GitHub, the manifest in field `manifest`."""

    action: str
    manifest: str
    organization: str | None


@dataclass(frozen=True)
class CreatedApp:
    id: int
    slug: str
    name: str
    owner_login: str
    html_url: str

    @property
    def install_url(self) -> str:
        return f"{self.html_url.rstrip('/')}/installations/new"


# -- the manifest --------------------------------------------------------------------------


def load_manifest_template(path: Path = MANIFEST_TEMPLATE) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise SetupError(f"{path} is not a YAML mapping: it must hold the App's manifest")
    return loaded


def build_manifest(template: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    """The manifest for this platform: app.yml with its URLs pointed at PUBLIC_URL."""
    base = public_url.rstrip("/")
    manifest = copy.deepcopy(dict(template))
    manifest["url"] = base
    hook = dict(manifest.get("hook_attributes") or {})
    hook["url"] = base + WEBHOOK_PATH
    hook.setdefault("active", True)
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = base + CALLBACK_PATH
    # The dashboard's "Sign in with GitHub" comes back here (GitHub checks redirect_uri).
    manifest["callback_urls"] = [base + OAUTH_CALLBACK_PATH]
    return manifest


def new_app_url(github_url: str, state: str, organization: str | None) -> str:
    """GitHub's "register a new App" form, for the user's account or an organisation."""
    base = github_url.rstrip("/")
    where = "" if organization is None else f"/organizations/{quote(organization, safe='')}"
    return f"{base}{where}/settings/apps/new?{urlencode({'state': state})}"


def organization_name(value: str | None) -> str | None:
    """The organisation to create the App under; None (or blank) for the user's own account."""
    if value is None or not value.strip():
        return None
    name = value.strip()
    if not GITHUB_LOGIN.fullmatch(name):
        raise BadOrganization(
            f"{name!r} is not a GitHub organisation name (letters, digits and single hyphens, "
            "at most 39 characters)"
        )
    return name


# -- one-time states ---------------------------------------------------------------------


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def issue_state(session: Session, now: datetime) -> str:
    """A new state good for one callback within STATE_LIFETIME (long-dead ones are dropped)."""
    session.execute(
        delete(SetupState).where(col(SetupState.expires_at) < now - STATE_KEPT_AFTER_EXPIRY)
    )
    open_states = session.exec(
        select(func.count())
        .select_from(SetupState)
        .where(col(SetupState.used_at).is_(None), col(SetupState.expires_at) > now)
    ).one()
    if open_states >= MAX_OPEN_STATES:
        raise TooManySetupPages(
            f"{open_states} setup pages are open already: use one of them, or try again within "
            "the hour when they expire"
        )
    state = secrets.token_urlsafe(STATE_BYTES)
    session.add(
        SetupState(state_hash=_hash(state), created_at=now, expires_at=now + STATE_LIFETIME)
    )
    session.commit()
    return state


def spend_state(session: Session, state: str, now: datetime) -> None:
    """Mark the state used, once; refuse one that is unknown, expired or spent already."""
    digest = _hash(state)
    spent = session.execute(
        update(SetupState)
        .where(
            col(SetupState.state_hash) == digest,
            col(SetupState.used_at).is_(None),
            col(SetupState.expires_at) > now,
        )
        .values(used_at=now)
    )
    session.commit()
    if spent.rowcount == 1:  # type: ignore[attr-defined]
        return
    row = session.get(SetupState, digest)
    again = "start again from the setup page"
    if row is None:
        raise SetupStateRefused(f"this setup link is not one Slipway issued: {again}")
    if row.used_at is not None:
        raise SetupStateRefused(f"this setup link was already used: {again}")
    raise SetupStateRefused(
        f"this setup link expired (it is good for {STATE_LIFETIME.seconds // 60} minutes): {again}"
    )


# -- the service -------------------------------------------------------------------------


class AppSetup:
    """Creates the App once, then stays closed (an App in the environment closes it too)."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        credentials: GitHubAppCredentials,
        converter: ManifestConverter,
        manifest_template: Mapping[str, Any],
        public_url: str,
        github_url: str,
        clock: Clock,
        token: SetupTokenFile,
    ) -> None:
        self._token = token
        self._sessions = sessions
        self._secrets = secrets
        self._credentials = credentials
        self._converter = converter
        self._template = manifest_template
        self._public_url = public_url
        self._github_url = github_url
        self._clock = clock

    @property
    def https(self) -> bool:
        """Whether the pages are reached over TLS (then the token's cookie is Secure)."""
        return self._public_url.startswith("https://")

    def _ensure_open(self) -> None:
        try:
            found = self._credentials.current()
        except GitHubAppUnreadable as exc:
            raise AppAlreadyConfigured(str(exc)) from None
        if found is not None:
            raise AppAlreadyConfigured(
                "a GitHub App is already configured: setup is closed (App settings in the "
                "environment, or the App made here, are used)"
            )

    def _check_token(self, offered: str | None) -> None:
        if self._token.matches(offered):
            return
        self._token.ensure()  # an API started without `slipway up` makes it on first need
        where = f"DATA_DIR/{SETUP_TOKEN_FILE}"
        raise SetupTokenRefused(
            ("this setup token is not the current one" if offered else "setup needs a token")
            + f": open the setup link `slipway up` printed, or add ?token=… with the token "
            f"from {where} (readable by the user that runs Slipway)"
        )

    def start(self, organization: str | None, token: str | None) -> SetupForm:
        """The page for the token's holder; nobody else gets a state (or uses up the pages)."""
        self._ensure_open()
        self._check_token(token)
        owner = organization_name(organization)
        manifest = build_manifest(self._template, self._public_url)
        with self._sessions() as session:
            state = issue_state(session, self._clock())
        return SetupForm(
            action=new_app_url(self._github_url, state, owner),
            manifest=json.dumps(manifest),
            organization=owner,
        )

    def complete(self, code: str | None, state: str | None, token: str | None) -> CreatedApp:
        """Stores the App for the token's holder only: a valid state without it is refused
        before it is spent, so a copied state neither buys an App nor spoils the holder's."""
        self._ensure_open()
        self._check_token(token)
        if not state:
            raise SetupStateRefused(
                "the callback carries no state: start again from the setup page"
            )
        with self._sessions() as session:
            spend_state(session, state, self._clock())
        self._ensure_open()
        if not code or not MANIFEST_CODE.fullmatch(code):
            raise ManifestCodeRefused(
                "the callback carries no usable code from GitHub: start again from the setup page"
            )
        converted = self._converter.convert(code)
        registration = GitHubAppRegistration(
            id=converted.id,
            slug=converted.slug,
            name=converted.name,
            owner_login=converted.owner_login,
            html_url=converted.html_url,
            client_id=converted.client_id,
            client_secret_encrypted=self._secrets.encrypt(converted.client_secret),
            webhook_secret_encrypted=self._secrets.encrypt(converted.webhook_secret),
            private_key_encrypted=self._secrets.encrypt(converted.pem),
            created_at=self._clock(),
        )
        with self._sessions() as session:
            if first_registration(session) is not None:
                raise AppAlreadyConfigured(
                    f"another setup finished first, so the App {converted.html_url} is not "
                    "used: delete it on GitHub"
                )
            session.add(registration)
            session.commit()
        self._token.spend()
        return CreatedApp(
            id=converted.id,
            slug=converted.slug,
            name=converted.name,
            owner_login=converted.owner_login,
            html_url=converted.html_url,
        )
