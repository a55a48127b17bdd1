"""The Docker bridge, which decides where Postgres must listen for containers."""

from __future__ import annotations

import logging
import os
import shutil

from app.server.embedded._common import (
    _DEFAULT_DOCKER,
)
from builders.errors import EngineError

log = logging.getLogger(__name__)


def docker_bridge_gateway(docker_binary: str = _DEFAULT_DOCKER) -> str | None:
    """IPv4 address of the default Docker bridge's gateway (the host as containers see it).

    Postgres must listen on this address for containers to reach it via
    ``host.docker.internal`` (``--add-host host.docker.internal:host-gateway``). Returns None
    when no engine answers (`app.adapters.default_bridge` reads it, for the network policy too).
    """
    binary = docker_binary if os.path.isfile(docker_binary) else shutil.which(docker_binary)
    if binary is None and docker_binary == _DEFAULT_DOCKER:
        binary = shutil.which("docker")
    if binary is None:
        return None
    # Imported here: the engine's client libraries stay out of the supervisor, which imports
    # this package for the embedded services and lives as long as the platform.
    from app.adapters.default_bridge import default_bridge

    try:
        return str(default_bridge(binary).gateway)
    except EngineError as exc:
        log.info("default Docker bridge not read", extra={"why": str(exc)})
        return None
