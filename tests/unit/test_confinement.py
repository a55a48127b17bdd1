"""What a replica is allowed, as specified (pure) and as spelled out for `docker run`.

The integration tier checks the same properties on containers the real engine started.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from app.models import DeploymentType
from app.runtime import holder_arguments, run_arguments
from manifests.containers import (
    LIMITS,
    Confinement,
    ContainerSpec,
    LogRotation,
    deployment_network,
    free_subnets,
    replica_spec,
)

SECRET = "s3cret-database-password"


def spec(
    confinement: Confinement | None = None, kind: DeploymentType = DeploymentType.production
) -> ContainerSpec:
    return replica_spec(
        deployment_id="dep_aaaa",
        revision_id="rev_bbbb",
        name="slipway-web-r1-bbbb",
        image="slipway/dep_aaaa:rev_bbbb",
        port=8000,
        limits=LIMITS[kind],
        env={"DATABASE_URI": f"postgresql://u:{SECRET}@host.docker.internal/d"},
        confinement=confinement or Confinement(),
    )


def values(argv: list[str], flag: str) -> list[str]:
    """Every value given to `flag` (flags here always take their value as the next word)."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


def test_a_replica_is_specified_with_every_confinement_by_default() -> None:
    replica = spec()

    assert replica.confinement.cap_drop == ("ALL",)
    assert replica.confinement.cap_add == ()
    assert replica.confinement.security_opts == ("no-new-privileges",)
    assert replica.confinement.pids_limit == 1024
    assert replica.confinement.logs == LogRotation(max_size="10m", max_files=3, driver="json-file")
    assert replica.limits.memory_swap_bytes == replica.limits.memory_bytes
    assert replica.network == "slipway-net-dep_aaaa"
    assert replica.labels == {
        "dev.slipway.deployment": "dep_aaaa",
        "dev.slipway.revision": "rev_bbbb",
    }
    assert replica.extra_hosts == {"host.docker.internal": "host-gateway"}


def test_a_deployment_network_is_named_and_labelled_after_its_deployment() -> None:
    network = deployment_network("dep_aaaa")

    assert network.name == spec().network
    assert network.labels == {"dev.slipway.deployment": "dep_aaaa"}
    assert deployment_network("dep_cccc").name != network.name


@pytest.mark.parametrize("kind", list(DeploymentType))
def test_docker_run_gets_every_confinement_flag(kind: DeploymentType, tmp_path: Path) -> None:
    argv = run_arguments(spec(kind=kind), tmp_path / "env.list", "slipway-web-r1-bbbb-holder")

    assert argv[0] == "run"
    assert values(argv, "--cap-drop") == ["ALL"]
    assert values(argv, "--cap-add") == []
    assert values(argv, "--security-opt") == ["no-new-privileges"]
    assert values(argv, "--pids-limit") == ["1024"]
    assert values(argv, "--memory") == [str(LIMITS[kind].memory_bytes)]
    assert values(argv, "--memory-swap") == values(argv, "--memory")
    assert values(argv, "--log-driver") == ["json-file"]
    assert values(argv, "--log-opt") == ["max-size=10m", "max-file=3"]
    assert values(argv, "--network") == ["container:slipway-web-r1-bbbb-holder"]
    assert values(argv, "--publish") == []  # the router dials the holder's address
    assert values(argv, "--add-host") == []  # the holder's: a joined container shares them
    assert "dev.slipway.holder=slipway-web-r1-bbbb-holder" in values(argv, "--label")
    assert "--privileged" not in argv
    assert argv[-1] == "slipway/dep_aaaa:rev_bbbb"
    assert not any(SECRET in word for word in argv)  # secrets go through the env file


def test_a_holder_is_on_the_network_with_the_hosts_and_allowed_nothing() -> None:
    argv = holder_arguments(spec(), "slipway-net-dep_aaaa-spare-holder", "slipway/holder:1")

    assert argv[0] == "run"
    assert values(argv, "--name") == ["slipway-net-dep_aaaa-spare-holder"]
    assert values(argv, "--network") == ["slipway-net-dep_aaaa"]
    assert values(argv, "--add-host") == ["host.docker.internal:host-gateway"]
    # The deployment's label only: a spare made before its revision is known fits any.
    assert values(argv, "--label") == ["dev.slipway.deployment=dep_aaaa"]
    assert values(argv, "--cap-drop") == ["ALL"]
    assert values(argv, "--security-opt") == ["no-new-privileges"]
    assert values(argv, "--user") == ["65534:65534"]
    assert values(argv, "--stop-signal") == ["KILL"]
    assert "--read-only" in argv
    assert int(values(argv, "--memory")[0]) <= 16 * 1024**2
    assert argv[-1] == "slipway/holder:1"


def test_configured_limits_and_rotation_are_the_ones_passed(tmp_path: Path) -> None:
    confinement = Confinement(pids_limit=64, logs=LogRotation(max_size="1m", max_files=5))

    argv = run_arguments(spec(confinement), tmp_path / "env.list", "holder")

    assert values(argv, "--pids-limit") == ["64"]
    assert values(argv, "--log-opt") == ["max-size=1m", "max-file=5"]


def test_free_subnets_skip_every_network_the_engine_has() -> None:
    pool = ipaddress.IPv4Network("172.16.0.0/24")
    taken = [
        ipaddress.ip_network("172.17.0.0/16"),  # the default bridge, outside the pool
        ipaddress.ip_network("172.16.0.0/27"),
        ipaddress.ip_network("172.16.0.64/26"),  # someone's larger network: two /27s
        ipaddress.ip_network("fd00::/64"),
    ]

    free = [str(subnet) for subnet in free_subnets(pool, taken)]

    assert free == [
        "172.16.0.32/27",
        "172.16.0.128/27",
        "172.16.0.160/27",
        "172.16.0.192/27",
        "172.16.0.224/27",
    ]


def test_a_full_pool_has_no_free_subnet() -> None:
    pool = ipaddress.IPv4Network("172.16.0.0/26")

    assert list(free_subnets(pool, [ipaddress.ip_network("172.16.0.0/16")])) == []
