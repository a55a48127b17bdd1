"""Addresses: where a deployment answers (its hostname and URL), what the router sends there
(a Route), and where the network policy lets a container reach (a Destination).

Pure values, so the settings, the router and the pipeline compute a URL the same way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


def route_hostname(slug: str, base_domain: str) -> str:
    """The Host a deployment answers to: its slug under the platform's base domain."""
    return f"{slug}.{base_domain}"


def deployment_url(slug: str, base_domain: str, router_port: int, *, https: bool = False) -> str:
    """What users open; the port is left out when it is the scheme's own (80, or 443 with
    automatic HTTPS), so the URLs of a platform on the standard ports carry none."""
    return site_url(route_hostname(slug, base_domain), router_port, https=https)


def site_url(hostname: str, port: int, *, https: bool = False) -> str:
    scheme, standard = ("https", 443) if https else ("http", 80)
    shown = "" if port == standard else f":{port}"
    return f"{scheme}://{hostname}{shown}/"


@dataclass(frozen=True)
class Route:
    """hostname → the replicas of the deployment's live revision."""

    hostname: str
    deployment_id: str
    upstreams: tuple[str, ...]
    """host:port addresses Caddy dials."""
    aliases: tuple[str, ...] = ()
    """The deployment's custom domains whose DNS points here, served like `hostname`."""

    @property
    def hostnames(self) -> list[str]:
        return [self.hostname, *self.aliases]


@dataclass(frozen=True)
class Destination:
    """Somewhere sources may reach: a network, on one port or on all."""

    network: ipaddress.IPv4Network
    port: int | None = None
    """None: every port and protocol."""
    protocols: tuple[str, ...] = ("tcp", "udp")
    """With a port: the protocols allowed on it."""

    def __str__(self) -> str:
        return f"{self.network}:{self.port}" if self.port is not None else str(self.network)


def parse_destination(text: str) -> Destination:
    """An allow-list entry: `CIDR` (every port) or `CIDR:PORT` (TCP and UDP), IPv4."""
    address, _, port = text.strip().partition(":")
    try:
        network = ipaddress.IPv4Network(address, strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{text!r}: not an IPv4 address or network such as 10.0.5.0/24 or 10.0.5.7:5432 ({exc})"
        ) from None
    if not port:
        return Destination(network)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return Destination(network, int(port))
