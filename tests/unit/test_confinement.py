"""What a replica is allowed, as specified (pure) and as the Engine API create call carries it.

The integration tier checks the same properties on containers the real engine started.
"""

from __future__ import annotations

import ipaddress

import pytest

from app.adapters.docker import holder_options, replica_options
from manifests.containers import (
    LIMITS,
    Confinement,
    ContainerSpec,
    DeploymentType,
    LogRotation,
    deployment_network,
    free_subnets,
    replica_spec,
)
from manifests.errors import RuntimeStartError

SECRET = "s3cret-database-password"


def spec(
    confinement: Confinement | None = None,
    kind: DeploymentType = DeploymentType.production,
    *,
    env: dict[str, str] | None = None,
    state_dir: str | None = None,
) -> ContainerSpec:
    return replica_spec(
        deployment_id="dep_aaaa",
        revision_id="rev_bbbb",
        name="slipway-web-r1-bbbb",
        image="slipway/dep_aaaa:rev_bbbb",
        port=8000,
        limits=LIMITS[kind],
        env={"DATABASE_URI": f"postgresql://u:{SECRET}@host.docker.internal/d"}
        if env is None
        else env,
        confinement=confinement or Confinement(),
        state_dir=state_dir,
    )


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
def test_the_replicas_create_call_carries_every_confinement(kind: DeploymentType) -> None:
    options = replica_options(spec(kind=kind), "slipway-web-r1-bbbb-holder")
    host = options["host_config"]

    assert host["cap_drop"] == ["ALL"]
    assert host["cap_add"] == []
    assert host["security_opt"] == ["no-new-privileges"]
    assert host["pids_limit"] == 1024
    assert host["mem_limit"] == LIMITS[kind].memory_bytes
    assert host["memswap_limit"] == host["mem_limit"]
    assert host["nano_cpus"] == round(LIMITS[kind].cpus * 1e9)
    assert host["log_config"]["Type"] == "json-file"
    assert host["log_config"]["Config"] == {"max-size": "10m", "max-file": "3"}
    assert host["network_mode"] == "container:slipway-web-r1-bbbb-holder"
    assert "port_bindings" not in host  # the router dials the holder's address
    assert "extra_hosts" not in host  # the holder's: a joined container shares them
    assert "privileged" not in host
    assert options["labels"]["dev.slipway.holder"] == "slipway-web-r1-bbbb-holder"
    assert options["image"] == "slipway/dep_aaaa:rev_bbbb"
    # The operator's proxy settings (~/.docker/config.json) never reach a tenant's container.
    assert options["use_config_proxy"] is False


def test_a_holder_is_on_the_network_with_the_hosts_and_allowed_nothing() -> None:
    options = holder_options(spec(), "slipway-net-dep_aaaa-spare-holder", "slipway/holder:1")
    host = options["host_config"]

    assert options["name"] == "slipway-net-dep_aaaa-spare-holder"
    assert host["network_mode"] == "slipway-net-dep_aaaa"
    assert host["extra_hosts"] == {"host.docker.internal": "host-gateway"}
    # The deployment's label only: a spare made before its revision is known fits any.
    assert options["labels"] == {"dev.slipway.deployment": "dep_aaaa"}
    assert host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges"]
    assert options["user"] == "65534:65534"
    assert options["stop_signal"] == "SIGKILL"
    assert host["read_only"] is True
    assert host["mem_limit"] <= 16 * 1024**2
    assert options["image"] == "slipway/holder:1"


def test_configured_limits_and_rotation_are_the_ones_passed() -> None:
    confinement = Confinement(pids_limit=64, logs=LogRotation(max_size="1m", max_files=5))

    host = replica_options(spec(confinement), "holder")["host_config"]

    assert host["pids_limit"] == 64
    assert host["log_config"]["Config"] == {"max-size": "1m", "max-file": "5"}


def test_env_values_travel_as_data_whatever_they_hold() -> None:
    """A line break or a `--flag` in a value is the value: there is no command line to parse
    it, and nothing of the user's env reaches a process of the platform."""
    env = {"PEM": "-----BEGIN-----\nabc\n-----END-----", "LD_PRELOAD": "/x.so", "A": "--privileged"}
    options = replica_options(spec(env=env), "holder")

    assert options["environment"] == env
    assert "privileged" not in options["host_config"]


def test_the_state_volume_is_one_mount_whose_target_is_one_field() -> None:
    replica = spec(state_dir="/deps/app/.langgraph_api")

    [mount] = replica_options(replica, "holder")["host_config"]["mounts"]

    assert mount["Type"] == "volume"
    assert mount["Source"] == "slipway-state-dep_aaaa"
    assert mount["Target"] == "/deps/app/.langgraph_api"


@pytest.mark.parametrize(
    "state_dir",
    [
        "/x,type=bind,source=/,target=/host",
        "relative/dir",
        "/deps/../../etc",
        "/deps/app/ spaced",
        "/deps/app\n",
        "/",
    ],
)
def test_a_state_dir_that_is_not_a_clean_absolute_path_is_refused(state_dir: str) -> None:
    with pytest.raises(RuntimeStartError, match="state directory"):
        spec(state_dir=state_dir)


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
