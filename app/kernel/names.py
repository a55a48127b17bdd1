"""Names Slipway gives things outside its control plane, made from ids so they never clash."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""A Postgres identifier that needs no quoting."""


def database_identifier(deployment_id: str) -> str:
    """Database and role name for a deployment: ids are random, so two platforms never clash."""
    name = "slipway_" + deployment_id.replace("-", "_").lower()
    assert _IDENTIFIER.match(name), name
    return name
