"""A deployment's env: plain variables and write-only secrets, changed all at once or not at all.

Both are stored in one encrypted JSON object (the deployment's and each revision's
`env_encrypted`); which keys are secrets is kept beside it in plain text, since a name is not a
secret. Everything is checked before anything changes, so a bad key loses nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from app.kernel.crypto import SecretBox
from app.kernel.errors import InvalidRequest
from app.kernel.models import Deployment

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME_LENGTH = 256
MAX_VALUE_BYTES = 64 * 1024
"""A PEM key or a service-account JSON fits; a file does not belong in an env var."""
MAX_ENV_BYTES = 512 * 1024
"""All values of a deployment together."""
MAX_KEYS = 500
RESERVED = frozenset({"PORT", "DATABASE_URI"})
RESERVED_PREFIX = "SLIPWAY_"


@dataclass(frozen=True)
class EnvChange:
    set: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.set or self.secrets or self.unset)


@dataclass(frozen=True)
class Env:
    """What a deployment's containers get from the user, and which of it is secret."""

    values: dict[str, str] = field(default_factory=dict)
    secret_names: frozenset[str] = frozenset()

    @property
    def variables(self) -> dict[str, str]:
        return {k: v for k, v in sorted(self.values.items()) if k not in self.secret_names}

    @property
    def secrets(self) -> list[str]:
        return sorted(self.secret_names & self.values.keys())


def load_env(box: SecretBox, env_encrypted: str | None, secret_names: str | None) -> Env:
    names = json.loads(secret_names) if secret_names else []
    return Env(values=box.decrypt_env(env_encrypted), secret_names=frozenset(names))


def deployment_env(box: SecretBox, deployment: Deployment) -> Env:
    return load_env(box, deployment.env_encrypted, deployment.secret_names)


def store_env(box: SecretBox, env: Env) -> tuple[str | None, str | None]:
    """(env_encrypted, secret_names) columns for `env`; None for an empty env."""
    if not env.values:
        return None, None
    return box.encrypt_env(env.values), json.dumps(env.secrets) if env.secrets else None


def check_name(key: object) -> str:
    if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
        raise InvalidRequest(
            f"{key!r} is not a valid environment variable name: use letters, digits and _, "
            "not starting with a digit"
        )
    if len(key) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{key[:40]}…: names are at most {MAX_NAME_LENGTH} characters")
    if key in RESERVED or key.upper().startswith(RESERVED_PREFIX):
        raise InvalidRequest(
            f"{key} is set by Slipway itself (PORT, DATABASE_URI and SLIPWAY_* are reserved)"
        )
    return key


def _check_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{key}: the value must be a string")
    if "\x00" in value:
        raise InvalidRequest(f"{key}: the value holds a NUL character, which no env can carry")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidRequest(f"{key}: the value is over {MAX_VALUE_BYTES // 1024} KiB")
    return value


def apply_change(env: Env, change: EnvChange) -> Env:
    """The env after `change`, or InvalidRequest naming the first bad key (nothing changes).

    A key set as a variable stops being a secret and the other way round; unsetting a key
    that is not there is not an error (the outcome is what was asked).
    """
    seen: set[str] = set()
    for key in [*change.set, *change.secrets, *change.unset]:
        check_name(key)
        if key in seen:
            raise InvalidRequest(f"{key} is named twice in one change")
        seen.add(key)
    values = dict(env.values)
    secret_names = set(env.secret_names)
    for key, value in change.set.items():
        values[key] = _check_value(key, value)
        secret_names.discard(key)
    for key, value in change.secrets.items():
        values[key] = _check_value(key, value)
        secret_names.add(key)
    for key in change.unset:
        values.pop(key, None)
        secret_names.discard(key)
    if len(values) > MAX_KEYS:
        raise InvalidRequest(f"a deployment holds at most {MAX_KEYS} variables")
    total = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if total > MAX_ENV_BYTES:
        raise InvalidRequest(f"all variables together are over {MAX_ENV_BYTES // 1024} KiB")
    return Env(values=values, secret_names=frozenset(secret_names & values.keys()))
