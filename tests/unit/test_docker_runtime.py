"""The Docker runtime acts on the engine's answers by their kind: a name an earlier attempt
holds is cleared, a stopped holder replaced, a subnet taken meanwhile skipped, a removal under
way left to finish; any other answer reaches the user in the engine's words.

The engine is a stand-in for the SDK's client whose refusals are the engine's own answers.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import docker
import pytest
import requests

import app.adapters.docker as docker_adapter
from app.adapters.docker import DockerRuntime
from app.kernel.ports import Endpoint
from builders.engine_errors import EngineUnreachable
from builders.errors import EngineError
from manifests.containers import (
    DEPLOYMENT_LABEL,
    LIMITS,
    REVISION_LABEL,
    ContainerSpec,
    DeploymentType,
    holder_name,
    reserve_network,
)
from manifests.errors import RuntimeStartError
from tests.unit.test_engine_errors import refusal

NETWORK = "slipway-net-dep_1"
ADDRESS = "10.88.0.2"
POOL = ipaddress.IPv4Network("10.88.0.0/24")
SPEC = ContainerSpec(
    name="slipway-shop-r1-x",
    image="slipway/dep_1:rev_1",
    port=8000,
    limits=LIMITS[DeploymentType.production],
    env={"SECRET": "s3cret"},
    network=NETWORK,
    labels={DEPLOYMENT_LABEL: "dep_1", REVISION_LABEL: "rev_1"},
)
HOLDER = holder_name(SPEC.name)


class Engine:
    """The Engine API calls the runtime makes. A refusal planned for a call and its target
    (a container's or a network's name) is raised once, by the first such call."""

    def __init__(self) -> None:
        self._client = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
        self._planned: dict[tuple[str, str], list[Exception]] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        self.subnets_asked: list[str] = []
        self.made: dict[str, str] = {}
        """Networks made: name → subnet."""

    def refuse(self, call: str, target: str, status: int, words: str) -> None:
        self._planned[(call, target)].append(refusal(status, words))

    def fail(self, call: str, target: str, error: Exception) -> None:
        self._planned[(call, target)].append(error)

    def _answer(self, call: str, target: str) -> None:
        self.calls.append((call, target))
        if planned := self._planned[(call, target)]:
            raise planned.pop(0)

    def create_host_config(self, **options: Any) -> Any:
        return self._client.create_host_config(**options)

    def create_container(self, image: str, name: str, **options: Any) -> dict[str, str]:
        self._answer("create_container", name)
        return {"Id": f"id-{name}"}

    def start(self, container: str) -> None:
        self._answer("start", container.removeprefix("id-"))

    def stop(self, container: str, timeout: int) -> None:
        self._answer("stop", container)

    def remove_container(self, container: str, **options: Any) -> None:
        self._answer("remove_container", container.removeprefix("id-"))

    def inspect_container(self, container: str) -> dict[str, Any]:
        self._answer("inspect_container", container)
        return {"NetworkSettings": {"Networks": {NETWORK: {"IPAddress": ADDRESS}}}}

    def containers(self, **options: Any) -> list[dict[str, Any]]:
        self._answer("containers", "")
        return []

    def networks(self, **options: Any) -> list[dict[str, Any]]:
        return [{"Id": n, "IPAM": {"Config": [{"Subnet": s}]}} for n, s in self.made.items()]

    def inspect_network(self, name: str) -> dict[str, Any]:
        self._answer("inspect_network", name)
        if name not in self.made:
            raise refusal(404, f"network {name} not found")
        return {"IPAM": {"Config": [{"Subnet": self.made[name]}]}, "Containers": {}}

    def remove_network(self, name: str) -> None:
        self._answer("remove_network", name)
        self.made.pop(name, None)

    def create_network(self, name: str, ipam: dict[str, Any], **options: Any) -> None:
        subnet = ipam["Config"][0]["Subnet"]
        self.subnets_asked.append(subnet)
        self._answer("create_network", name)
        self.made[name] = subnet


@pytest.fixture
def engine() -> Engine:
    return Engine()


def runtime(
    engine: Engine, tmp_path: Path, acked: list[object] | None = None, *, holder_reserve: int = 0
) -> DockerRuntime:
    """The runtime on the stand-in engine, without a reserve of spare holders unless asked;
    the subnets the host is asked to acknowledge at once go to `acked`."""
    acks = acked if acked is not None else []

    def quick_acks(subnet: ipaddress.IPv4Network) -> bool:
        acks.append(subnet)
        return True

    return DockerRuntime(
        "docker",
        tmp_path / "locks",
        network_pool=POOL,
        quick_acks=quick_acks,
        holder_image=lambda: "slipway/holder:test",
        engine=cast(docker.DockerClient, SimpleNamespace(api=engine)),
        holder_reserve=holder_reserve,
    )


def test_a_name_an_earlier_attempt_still_holds_is_cleared_and_the_replica_started(
    engine: Engine, tmp_path: Path
) -> None:
    engine.refuse(
        "create_container",
        SPEC.name,
        409,
        f'Conflict. The container name "/{SPEC.name}" is already in use by container '
        '"37f1165". You have to remove (or rename) that container to be able to reuse that name.',
    )
    started = runtime(engine, tmp_path).start(SPEC)
    assert started.ref == f"id-{SPEC.name}"
    assert started.endpoint == Endpoint(ADDRESS, 8000)
    assert ("remove_container", SPEC.name) in engine.calls


def test_a_holder_that_stopped_before_its_app_joined_is_replaced(
    engine: Engine, tmp_path: Path
) -> None:
    engine.refuse(
        "create_container",
        SPEC.name,
        409,
        "cannot join network of a non running container: 37f1165",
    )
    started = runtime(engine, tmp_path).start(SPEC)
    assert started.ref == f"id-{SPEC.name}"
    assert engine.calls.count(("create_container", HOLDER)) == 2


def test_any_other_refusal_of_a_start_is_said_in_the_engines_words(
    engine: Engine, tmp_path: Path
) -> None:
    engine.refuse("create_container", SPEC.name, 404, "No such image: slipway/dep_1:rev_1")
    with pytest.raises(RuntimeStartError) as raised:
        runtime(engine, tmp_path).start(SPEC)
    assert str(raised.value) == (
        "the container could not be started: No such image: slipway/dep_1:rev_1"
    )
    assert engine.calls.count(("create_container", SPEC.name)) == 1
    assert ("remove_container", HOLDER) in engine.calls  # nothing half-made stays behind


def test_a_subnet_taken_meanwhile_is_skipped_for_the_next_free_one(
    engine: Engine, tmp_path: Path
) -> None:
    engine.refuse(
        "create_network", NETWORK, 403, "Pool overlaps with other one on this address space"
    )
    acked: list[object] = []
    runtime(engine, tmp_path, acked).ensure_network(NETWORK, {DEPLOYMENT_LABEL: "dep_1"})
    refused, made = engine.subnets_asked
    assert refused != made and engine.made[NETWORK] == made
    assert acked == [ipaddress.IPv4Network(made)]


def test_a_removal_another_remover_has_under_way_is_left_to_finish(
    engine: Engine, tmp_path: Path
) -> None:
    engine.refuse(
        "remove_container", SPEC.name, 409, "removal of container 37f1165 is already in progress"
    )
    runtime(engine, tmp_path).remove(SPEC.name)
    assert ("remove_container", HOLDER) in engine.calls


def test_a_container_already_gone_is_removed_without_asking_twice(
    engine: Engine, tmp_path: Path
) -> None:
    engine.refuse("stop", SPEC.name, 404, f"No such container: {SPEC.name}")
    runtime(engine, tmp_path).remove(SPEC.name)
    assert ("remove_container", SPEC.name) not in engine.calls


def test_a_removal_the_engine_refuses_names_the_container_and_the_engines_words(
    engine: Engine, tmp_path: Path
) -> None:
    words = 'driver "overlay2" failed to remove root filesystem: device or resource busy'
    engine.refuse("remove_container", SPEC.name, 500, words)
    with pytest.raises(EngineError) as raised:
        runtime(engine, tmp_path).remove(SPEC.name)
    assert str(raised.value) == f"the Docker engine did not remove {SPEC.name}: {words}"


def test_an_engine_that_does_not_answer_is_said_so(engine: Engine, tmp_path: Path) -> None:
    engine.fail("containers", "", requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(EngineUnreachable, match="did not list replicas: the Docker engine did"):
        runtime(engine, tmp_path).statuses()


ACTIVE_ENDPOINTS = "error while removing network: network {} has active endpoints"


def test_the_reserves_network_still_held_by_a_spare_being_made_goes_at_the_next_try(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform stopped while a spare's creation was in flight: the engine completes it
    after the spares were listed and removed, and the network refuses to go once."""
    monkeypatch.setattr(docker_adapter, "RESERVE_REMOVE_PAUSE_SECONDS", 0)
    made = runtime(engine, tmp_path)
    network = reserve_network(made._reserve).name
    engine.made[network] = "10.89.0.0/24"
    engine.refuse("remove_network", network, 403, ACTIVE_ENDPOINTS.format(network))
    made.remove_reserve()
    assert network not in engine.made
    assert engine.calls.count(("remove_network", network)) == 2


def test_a_reserve_network_the_engine_holds_for_a_gone_container_is_left_with_a_warning(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Docker 20.10 can keep an endpoint of a container that no longer exists: the network
    shows no container and refuses every removal. The platform's stop does not fail on it."""
    monkeypatch.setattr(docker_adapter, "RESERVE_REMOVE_PAUSE_SECONDS", 0)
    made = runtime(engine, tmp_path)
    network = reserve_network(made._reserve).name
    engine.made[network] = "10.89.0.0/24"
    for _ in range(docker_adapter.RESERVE_REMOVE_ATTEMPTS):
        engine.refuse("remove_network", network, 403, ACTIVE_ENDPOINTS.format(network))
    made.remove_reserve()
    assert network in engine.made
    assert "the reserve's network is left" in caplog.text


def test_a_refill_asked_while_one_runs_makes_that_one_look_again(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that found the spares stopped asks for a refill while the previous one is
    finishing; that one may have looked before they stopped, so it must look once more
    (a CI run waited 30 s for spares nobody remade)."""
    made = runtime(engine, tmp_path, holder_reserve=3)
    looks: list[int] = []

    def look() -> bool:
        looks.append(len(looks))
        if len(looks) == 1:
            made._replenish()  # asked while this refill runs: not a second one at once
        return True

    monkeypatch.setattr(made, "_make_reserve_once", look)
    monkeypatch.setattr(made._spares, "submit", lambda work: work())
    made._replenish()
    assert looks == [0, 1]
    made._replenish()  # and the next ask, after, runs again
    assert looks == [0, 1, 2]


def test_a_refill_the_engine_refused_is_tried_again_a_few_times(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = runtime(engine, tmp_path, holder_reserve=3)
    answers = [False, True]
    looks: list[bool] = []

    def look() -> bool:
        looks.append(answers[min(len(looks), len(answers) - 1)])
        return looks[-1]

    monkeypatch.setattr(made, "_make_reserve_once", look)
    monkeypatch.setattr(made._spares, "submit", lambda work: work())
    monkeypatch.setattr(docker_adapter, "RESERVE_RETRY_SECONDS", 0.0)
    made._replenish()
    assert looks == [False, True]  # refused, then made

    answers[:] = [False]
    looks.clear()
    made._replenish()
    assert looks == [False] * docker_adapter.RESERVE_ATTEMPTS  # then left to the next start
