"""The one-time setup token: who may create the GitHub App on a fresh install.

Until an App exists, /setup could make whoever reaches it first the owner of the platform.
So `slipway up` makes a random token when no App is configured, writes it where only the
platform's user can read it (DATA_DIR/setup-token, 0600) and prints the setup URL with it,
as Jupyter prints its login URL. /setup and its callback need the token; it is spent (the
file removed, so nothing accepts it) once an App is stored.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

SETUP_TOKEN_FILE = "setup-token"  # noqa: S105 (a file's name, not a secret)
TOKEN_BYTES = 32
"""256 random bits: beyond guessing, however many requests a stranger sends."""


def setup_token_path(data_dir: Path) -> Path:
    return data_dir / SETUP_TOKEN_FILE


class SetupTokenFile:
    """The token as the file holds it: read at each check, so every process agrees at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def issue(self) -> str:
        """A new token, replacing any earlier one (each start of the platform makes its own)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._write(token)
        return token

    def ensure(self) -> str:
        """The current token, or a new one when there is none (an API started on its own)."""
        return self.read() or self.issue()

    def read(self) -> str | None:
        try:
            token = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return token or None

    def matches(self, offered: str | None) -> bool:
        """Whether `offered` is the current token, compared in constant time."""
        current = self.read()
        if current is None or not offered:
            return False
        return hmac.compare_digest(offered.encode(), current.encode())

    def spend(self) -> None:
        """No token is accepted any more: the App exists, setup is over."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        log.info("setup token spent", extra={"path": str(self.path)})

    def _write(self, token: str) -> None:
        """0600 from its first byte, and whole: written aside, then renamed into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.unlink(missing_ok=True)  # a leftover of a crash keeps its mode: start afresh
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        os.replace(partial, self.path)
