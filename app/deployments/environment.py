"""A deployment's env: plain variables and write-only secrets, changed all at once or not at all.

Both are stored in one encrypted JSON object (the deployment's and each revision's
`env_encrypted`); which keys are secrets is kept beside it in plain text, since a name is not a
secret. Everything is checked before anything changes, so a bad key loses nothing.

A production deployment holds a second env of the same kind, scope "previews": values its
same-repository previews get over its own (a test database's URL, a sandbox API key).
"""

from __future__ import annotations

import enum
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


class EnvScope(enum.StrEnum):
    deployment = "deployment"
    """What the deployment's own containers get."""
    previews = "previews"
    """What its previews get over that (production deployments only)."""


@dataclass(frozen=True)
class StoredEnv:
    """An env as a revision stores it (encrypted values, secret names beside them)."""

    env_encrypted: str | None
    secret_names: str | None


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


def preview_overrides(box: SecretBox, deployment: Deployment) -> Env:
    return load_env(box, deployment.preview_env_encrypted, deployment.preview_secret_names)


def scoped_env(box: SecretBox, deployment: Deployment, scope: EnvScope) -> Env:
    if scope is EnvScope.previews:
        return preview_overrides(box, deployment)
    return deployment_env(box, deployment)


def store_scoped_env(box: SecretBox, deployment: Deployment, scope: EnvScope, env: Env) -> None:
    if scope is EnvScope.previews:
        deployment.preview_env_encrypted, deployment.preview_secret_names = store_env(box, env)
    else:
        deployment.env_encrypted, deployment.secret_names = store_env(box, env)


def overlay(base: Env, over: Env) -> Env:
    """`base` with `over`'s values winning; a key is secret when the value it ends with is."""
    values = {**base.values, **over.values}
    secret_names = (base.secret_names - over.values.keys()) | over.secret_names
    return Env(values=values, secret_names=frozenset(secret_names & values.keys()))


def preview_env(box: SecretBox, production: Deployment) -> StoredEnv:
    """What a same-repository preview of `production` runs with: production's env under its
    preview overrides. Without overrides it is production's stored env, untouched."""
    own = StoredEnv(production.env_encrypted, production.secret_names)
    if production.preview_env_encrypted is None:
        return own
    merged = overlay(deployment_env(box, production), preview_overrides(box, production))
    return StoredEnv(*store_env(box, merged))


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
    after = Env(values=values, secret_names=frozenset(secret_names & values.keys()))
    check_limits(after)
    return after


def check_limits(env: Env) -> None:
    """What one set of containers may be given (a preview's: production's and its overrides)."""
    if len(env.values) > MAX_KEYS:
        raise InvalidRequest(f"a deployment holds at most {MAX_KEYS} variables")
    total = sum(len(k.encode()) + len(v.encode()) for k, v in env.values.items())
    if total > MAX_ENV_BYTES:
        raise InvalidRequest(f"all variables together are over {MAX_ENV_BYTES // 1024} KiB")
