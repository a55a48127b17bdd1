"""docker0 read once, by one function, for the supervisor (where Postgres listens) and for the
network policy (where builds run): its subnet, its gateway, and its IPv6 when it has some."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from app.adapters.default_bridge import DefaultBridge, default_bridge, described
from app.adapters.network_policy import NetworkPolicyError, policy_bridge
from app.server.embedded import docker_bridge_gateway
from builders.engine_errors import EngineUnreachable
from builders.errors import EngineError

DOCKER_20_10 = {
    "Name": "bridge",
    "EnableIPv6": False,
    "IPAM": {"Driver": "default", "Options": None, "Config": [{"Subnet": "172.17.0.0/16"}]},
}
"""`docker network inspect bridge` of Docker 20.10: no Gateway given."""
UNREACHABLE = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?"
)


def inspecting(tmp_path: Path, answer: list[dict[str, Any]] | None) -> str:
    """A stand-in Docker CLI answering `network inspect bridge`, or refusing as one whose
    engine is down."""
    path = tmp_path / "docker"
    if answer is None:
        path.write_text(f"#!/bin/sh\necho '{UNREACHABLE}' >&2\nexit 1\n")
    else:
        path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    path.chmod(0o755)
    return str(path)


def test_without_a_gateway_given_it_is_the_subnets_first_address() -> None:
    assert described(DOCKER_20_10) == DefaultBridge(
        subnet=ipaddress.IPv4Network("172.17.0.0/16"),
        gateway=ipaddress.IPv4Address("172.17.0.1"),
    )


def test_a_gateway_given_and_ipv6_are_taken_as_the_engine_says() -> None:
    bridge = described(
        {
            "EnableIPv6": True,
            "IPAM": {
                "Config": [
                    {"Subnet": "fd00:dead:beef::/64", "Gateway": "fd00:dead:beef::1"},
                    {"Subnet": "10.200.0.0/24", "Gateway": "10.200.0.254"},
                ]
            },
        }
    )
    assert bridge.subnet == ipaddress.IPv4Network("10.200.0.0/24")
    assert bridge.gateway == ipaddress.IPv4Address("10.200.0.254")
    assert bridge.ipv6 and bridge.ipv6_subnet == ipaddress.IPv6Network("fd00:dead:beef::/64")


def test_a_bridge_without_ipv4_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="no IPv4 subnet"):
        described({"IPAM": {"Config": [{"Subnet": "fd00::/64"}]}})


def test_the_supervisor_and_the_network_policy_read_the_same_bridge(tmp_path: Path) -> None:
    docker = inspecting(tmp_path, [DOCKER_20_10])
    assert docker_bridge_gateway(docker) == "172.17.0.1"
    assert policy_bridge(docker) == default_bridge(docker) == described(DOCKER_20_10)


def test_an_engine_that_does_not_answer_gives_no_gateway_and_no_policy(tmp_path: Path) -> None:
    docker = inspecting(tmp_path, None)
    with pytest.raises(EngineUnreachable, match="Cannot connect to the Docker daemon"):
        default_bridge(docker)
    assert docker_bridge_gateway(docker) is None
    with pytest.raises(NetworkPolicyError) as raised:
        policy_bridge(docker)
    assert "Cannot connect to the Docker daemon" in str(raised.value)
    assert "SLIPWAY_NETWORK_POLICY=false" in str(raised.value)
