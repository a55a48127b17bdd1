"""Encryption of what users and the platform store as secrets (database passwords, user env).

Fernet (AES-128-CBC + HMAC-SHA256) keyed from SECRET_KEY: a copied database file without the key
reveals nothing, and a tampered value fails loudly instead of decrypting to garbage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from manifests.errors import SlipwayError


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be read with this SECRET_KEY (it was changed or the value altered)."""


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._secret_key = secret_key
        self._hash_key = self.derive_key("env-hash")

    def derive_key(self, purpose: str) -> bytes:
        """A key of its own for each use of SECRET_KEY (env hashes, signed links)."""
        return hashlib.sha256(f"{purpose}:".encode() + self._secret_key.encode()).digest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError(
                "a stored secret cannot be decrypted: SLIPWAY_SECRET_KEY differs from the key "
                "it was stored with"
            ) from exc

    def encrypt_env(self, env: dict[str, str]) -> str:
        return self.encrypt(json.dumps(env, sort_keys=True))

    def decrypt_env(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        loaded = json.loads(self.decrypt(token))
        assert isinstance(loaded, dict)
        return {str(k): str(v) for k, v in loaded.items()}

    def env_hash(self, env: dict[str, str]) -> str:
        """Identifies an env snapshot without revealing it: keyed, so values cannot be guessed."""
        message = json.dumps(env, sort_keys=True).encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()[:16]


class SecretKeyError(SlipwayError):
    """DATA_DIR/secret.key is unusable; the message says how to fix it."""


def load_or_create_secret_key(path: Path) -> str:
    """A key generated on first start and kept beside the data it protects (mode 0600).

    An existing key readable by others, or empty, is refused rather than used or replaced:
    replacing it would make every stored secret unreadable.
    """
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretKeyError(
                f"{path} is readable by other users (mode {mode:04o}): it decrypts every stored "
                f"secret; run `chmod 600 {path}` (and consider the key leaked)"
            )
        key = path.read_text().strip()
        if not key:
            raise SecretKeyError(
                f"{path} is empty: restore it from a backup (a new key cannot read the secrets "
                "stored with the old one), or delete it on a fresh install"
            )
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
