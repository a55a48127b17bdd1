"""The default Docker bridge (docker0) as the engine describes it: the subnet BuildKit's RUN
steps run on, and its gateway, the host as containers see it (`host-gateway`).

Read once at `slipway up` by the two that need it: the supervisor (the embedded Postgres listens
on the gateway, which replicas reach as `host.docker.internal`) and the network policy (builds on
docker0 held to their rules). Asked of the Docker CLI the platform builds with, so it is the
engine that CLI's context names.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builders.docker_cli import run_docker
from builders.errors import EngineError

INSPECT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class DefaultBridge:
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    ipv6: bool = False
    """The engine gives it IPv6 (which the network policy does not filter)."""
    ipv6_subnet: ipaddress.IPv6Network | None = None


def default_bridge(docker_binary: str) -> DefaultBridge:
    """docker0 now; an EngineError (of its kind: EngineUnreachable when dockerd does not answer)
    when the engine cannot say."""
    answer = run_docker(
        [docker_binary, "network", "inspect", "bridge"], timeout=INSPECT_TIMEOUT_SECONDS
    )
    try:
        network = json.loads(answer)[0]
    except (ValueError, LookupError) as exc:
        raise EngineError(f"`docker network inspect bridge` gave no network ({exc})") from exc
    return described(network)


def described(network: Mapping[str, Any]) -> DefaultBridge:
    """The bridge an inspection describes. Docker 20.10 leaves the default bridge's Gateway
    empty: it is then the subnet's first address."""
    ipv4: tuple[ipaddress.IPv4Network, ipaddress.IPv4Address] | None = None
    ipv6: ipaddress.IPv6Network | None = None
    for config in (network.get("IPAM") or {}).get("Config") or []:
        try:
            subnet = ipaddress.ip_network(str(config.get("Subnet") or ""), strict=False)
        except ValueError:
            continue
        if isinstance(subnet, ipaddress.IPv4Network) and ipv4 is None:
            ipv4 = (subnet, _gateway(config.get("Gateway"), subnet))
        elif isinstance(subnet, ipaddress.IPv6Network) and ipv6 is None:
            ipv6 = subnet
    if ipv4 is None:
        raise EngineError("the default Docker bridge has no IPv4 subnet")
    return DefaultBridge(
        subnet=ipv4[0],
        gateway=ipv4[1],
        ipv6=bool(network.get("EnableIPv6")),
        ipv6_subnet=ipv6,
    )


def _gateway(given: object, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    try:
        gateway = ipaddress.ip_interface(str(given or "")).ip  # "172.17.0.1" or ".../16"
    except ValueError:
        return next(subnet.hosts())
    return gateway if isinstance(gateway, ipaddress.IPv4Address) else next(subnet.hosts())
