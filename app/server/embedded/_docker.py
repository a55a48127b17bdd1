"""The Docker bridge, which decides where Postgres must listen for containers."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess

from app.server.embedded._common import (
    _DEFAULT_DOCKER,
)

# --------------------------------------------------------------------------------------------
# Docker bridge
# --------------------------------------------------------------------------------------------


def docker_bridge_gateway(docker_binary: str = _DEFAULT_DOCKER) -> str | None:
    """IPv4 address of the default Docker bridge's gateway (the host as containers see it).

    Postgres must listen on this address for containers to reach it via
    ``host.docker.internal`` (``--add-host host.docker.internal:host-gateway``). Docker 20.10
    leaves ``IPAM.Config[].Gateway`` empty for the default bridge; the gateway is then the
    subnet's first host (172.17.0.1 for 172.17.0.0/16). Returns None when no engine answers.
    """
    binary = docker_binary if os.path.isfile(docker_binary) else shutil.which(docker_binary)
    if binary is None and docker_binary == _DEFAULT_DOCKER:
        binary = shutil.which("docker")
    if binary is None:
        return None
    try:
        proc = subprocess.run(
            [binary, "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        configs = json.loads(proc.stdout.strip() or "null")
    except json.JSONDecodeError:
        return None
    for entry in configs or []:
        if not isinstance(entry, dict):
            continue
        gateway = str(entry.get("Gateway") or "")
        with contextlib.suppress(ValueError):
            if gateway and ipaddress.ip_address(gateway).version == 4:
                return gateway
        with contextlib.suppress(ValueError, StopIteration):
            network = ipaddress.ip_network(str(entry.get("Subnet") or ""), strict=False)
            if network.version == 4:
                return str(next(network.hosts()))
    return None
