"""Which GitHub App Slipway is: the one in the environment, else the one /setup stored.

The API (webhook signatures) and the workers (App JWTs) each hold a `GitHubAppCredentials`.
Until an App exists they look again at every use, so an App created at /setup is picked up by
every process without a restart; once found, it is cached for the life of the process (an App's
id, key and webhook secret do not change under it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
from githubkit import GitHub
from sqlmodel import Session, col, select

from app.github.auth import GitHubApp
from app.github.oauth import OAuthClient
from app.kernel.crypto import SecretBox, SecretDecryptionError
from app.kernel.db import SessionFactory
from app.kernel.errors import GitHubError
from app.kernel.models import GitHubAppRegistration
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.setup.token import SETUP_TOKEN_FILE

SETUP_PATH = "/setup"


class GitHubAppMissing(GitHubError):
    """No App in the environment and none made at /setup yet."""


class GitHubAppUnreadable(GitHubError):
    """The App made at /setup is stored, but with another SECRET_KEY."""


@dataclass(frozen=True)
class AppCredentials:
    """What acting as the App takes: the JWT issuer and key, and the webhook secret."""

    app_id: int
    private_key_pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    source: Literal["environment", "setup"]


def setup_url(settings: Settings) -> str:
    return settings.api_url + SETUP_PATH


def not_configured_message(settings: Settings) -> str:
    """Where to go, without the setup token (this is shown to whoever sends a webhook)."""
    return (
        f"no GitHub App is configured yet: open {setup_url(settings)} with the setup token "
        f"(the link `slipway up` printed, or the token in DATA_DIR/{SETUP_TOKEN_FILE})"
    )


class GitHubAppCredentials:
    """The App's credentials: environment settings first, else the stored registration."""

    def __init__(self, settings: Settings, sessions: SessionFactory, secrets: SecretBox) -> None:
        self._settings = settings
        self._sessions = sessions
        self._secrets = secrets
        self._lock = threading.Lock()
        self._found: AppCredentials | None = self._from_environment()

    def cached(self) -> AppCredentials | None:
        """The credentials if already known, without touching the database (for hot paths)."""
        return self._found

    def current(self) -> AppCredentials | None:
        """The credentials, reading the control plane while no App has been found."""
        if self._found is not None:
            return self._found
        with self._lock:
            if self._found is None:
                self._found = self._from_control_plane()
            return self._found

    def require(self) -> AppCredentials:
        found = self.current()
        if found is None:
            raise GitHubAppMissing(not_configured_message(self._settings))
        return found

    def _from_environment(self) -> AppCredentials | None:
        settings = self._settings
        pem = settings.private_key_pem
        if settings.github_app_id is None or pem is None or settings.github_webhook_secret is None:
            return None
        return AppCredentials(
            app_id=settings.github_app_id,
            private_key_pem=pem,
            webhook_secret=settings.github_webhook_secret.get_secret_value(),
            source="environment",
        )

    def _from_control_plane(self) -> AppCredentials | None:
        with self._sessions() as session:
            stored = first_registration(session)
        if stored is None:
            return None
        try:
            return AppCredentials(
                app_id=stored.id,
                private_key_pem=self._secrets.decrypt(stored.private_key_encrypted),
                webhook_secret=self._secrets.decrypt(stored.webhook_secret_encrypted),
                source="setup",
            )
        except SecretDecryptionError:
            raise GitHubAppUnreadable(
                f"the GitHub App made at /setup (id {stored.id}) cannot be read: SECRET_KEY "
                "(or DATA_DIR/secret.key) is not the key it was stored with; restore that key, "
                "or set SLIPWAY_GITHUB_APP_ID, SLIPWAY_GITHUB_PRIVATE_KEY_PATH and "
                "SLIPWAY_GITHUB_WEBHOOK_SECRET in the environment"
            ) from None


def first_registration(session: Session) -> GitHubAppRegistration | None:
    """The App /setup made; should two callbacks race, the first one stored is the App."""
    statement = select(GitHubAppRegistration).order_by(
        col(GitHubAppRegistration.created_at), col(GitHubAppRegistration.id)
    )
    return session.exec(statement).first()


class LazyGitHubApp:
    """A `GitHubApp` made on first use from the credentials.

    A worker starts (and idles) before the App exists; its first call to GitHub, which can only
    follow a webhook signed by the App, builds the real client with the App's id and key.
    """

    def __init__(
        self,
        credentials: GitHubAppCredentials,
        api_url: str,
        *,
        transport: httpx.BaseTransport,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._credentials = credentials
        self._api_url = api_url
        self._transport = transport
        self._clock = clock
        self._app: GitHubApp | None = None
        self._lock = threading.Lock()

    def _get(self) -> GitHubApp:
        with self._lock:
            if self._app is None:
                found = self._credentials.require()
                self._app = GitHubApp(
                    found.app_id,
                    found.private_key_pem,
                    self._api_url,
                    transport=self._transport,
                    clock=self._clock,
                )
            return self._app

    def client(self, installation_id: int) -> GitHub[Any]:
        return self._get().client(installation_id)

    def installation_token(self, installation_id: int) -> str:
        return self._get().installation_token(installation_id)

    def forget_installation(self, installation_id: int) -> None:
        with self._lock:
            app = self._app
        if app is not None:
            app.forget_installation(installation_id)


def oauth_client(
    settings: Settings, sessions: SessionFactory, secrets: SecretBox
) -> OAuthClient | None:
    """The App's OAuth client: GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET, else as the manifest
    flow stored them; None when neither is known (people then sign in with an API token)."""
    if settings.github_client_id and settings.github_client_secret is not None:
        return OAuthClient(
            settings.github_client_id, settings.github_client_secret.get_secret_value()
        )
    return stored_oauth_client(sessions, secrets)


def stored_oauth_client(sessions: SessionFactory, secrets: SecretBox) -> OAuthClient | None:
    """The App's OAuth client id and secret, as the manifest flow stored them."""
    with sessions() as session:
        stored = first_registration(session)
    if stored is None or not stored.client_id:
        return None
    try:
        return OAuthClient(stored.client_id, secrets.decrypt(stored.client_secret_encrypted))
    except SecretDecryptionError:
        return None
