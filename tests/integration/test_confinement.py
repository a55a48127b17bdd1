"""Replicas on the real engine: confined, and on a network of their deployment's own.

Replicas are started by DockerRuntime from the spec the pipeline builds (`replica_spec`), and
probed from inside: what a process in the container can do is the outcome that matters, the
engine's inspect output is checked too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.adapters.bridges import has_quick_acks
from app.adapters.docker import DockerRuntime
from app.kernel.ports import Endpoint, ReplicaStatus, StartedReplica
from app.server.embedded import docker_bridge_gateway
from manifests.containers import (
    DEFAULT_HOLDER_RESERVE,
    DEPLOYMENT_LABEL,
    LIMITS,
    NETWORK_SUBNET_PREFIX_LENGTH,
    Confinement,
    DeploymentType,
    LogRotation,
    deployment_network,
    holder_name,
    replica_spec,
    reserve_holder_names,
    reserve_id,
)
from manifests.errors import RuntimeStartError
from tests.support.images import DOCKER, docker, ensure_busybox_image
from tests.support.platform import wait_for

pytestmark = pytest.mark.timeout(180)

APP_IMAGE = f"slipway-test/confined-httpd:{uuid.uuid4().hex[:8]}"
"""A tag of this run's own: another run of the module on the machine removes its own at its end."""
CHATTY_LINES = 2000
"""Lines the app prints before serving: ~100 KB, far more than a tiny rotation keeps."""
PAGE = "served from inside a confined replica"


@pytest.fixture(scope="module")
def app_image() -> Iterator[str]:
    """busybox httpd on 8000 after printing CHATTY_LINES lines, as a deployed app would run."""
    base = ensure_busybox_image()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "index.html").write_text(PAGE + "\n")
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY index.html /www/index.html\n"
            'CMD ["/bin/sh", "-c", "i=0; while [ $i -lt '
            f"{CHATTY_LINES}"
            " ]; do echo line-$i-padding-padding-padding-padding-padding-padding; i=$((i+1)); "
            'done; exec /bin/busybox httpd -f -p 8000 -h /www"]\n'
        )
        subprocess.run(
            [DOCKER, "build", "-q", "-t", APP_IMAGE, tmp],
            env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
            timeout=300,
        )
    yield APP_IMAGE
    subprocess.run([DOCKER, "rmi", APP_IMAGE], capture_output=True, check=False)


@dataclass
class Deployments:
    """Starts replicas the way the pipeline does, and removes what each deployment made."""

    runtime: DockerRuntime
    image: str
    lock_dir: Path
    ids: list[str] = field(default_factory=list)

    def start(self, confinement: Confinement | None = None) -> tuple[str, StartedReplica]:
        deployment_id = f"dep_test{uuid.uuid4().hex[:8]}"
        self.ids.append(deployment_id)
        return deployment_id, self.start_replica(deployment_id, confinement)

    def start_replica_in_new_deployment(self, state_dir: str) -> tuple[str, StartedReplica]:
        deployment_id = f"dep_test{uuid.uuid4().hex[:8]}"
        self.ids.append(deployment_id)
        return deployment_id, self.start_replica(deployment_id, state_dir=state_dir)

    def start_replica(
        self,
        deployment_id: str,
        confinement: Confinement | None = None,
        state_dir: str | None = None,
        env: dict[str, str] | None = None,
    ) -> StartedReplica:
        revision_id = f"rev_{uuid.uuid4().hex[:8]}"
        spec = replica_spec(
            deployment_id=deployment_id,
            revision_id=revision_id,
            name=f"slipway-test-{deployment_id}-{revision_id}",
            image=self.image,
            port=8000,
            limits=LIMITS[DeploymentType.production],
            env={**(env or {}), "PORT": "8000"},
            confinement=confinement or Confinement(),
            state_dir=state_dir,
        )
        network = deployment_network(deployment_id)
        self.runtime.ensure_network(network.name, network.labels)
        started = self.runtime.start(spec)
        wait_for(f"{spec.name} to serve", lambda: serves(started.endpoint), 30)
        return started

    def clean_up(self) -> None:
        for deployment_id in self.ids:
            try:
                self.runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)
            finally:  # whatever the runtime left: it is under test too
                label = f"label={DEPLOYMENT_LABEL}={deployment_id}"
                containers = docker("ps", "-aq", "--filter", label).split()
                if containers:
                    docker("rm", "-f", *containers)
                networks = docker("network", "ls", "-q", "--filter", label).split()
                if networks:
                    docker("network", "rm", *networks)
                volumes = docker("volume", "ls", "-q", "--filter", label).split()
                if volumes:
                    docker("volume", "rm", "-f", *volumes)


RUNTIME_POOL = ipaddress.IPv4Network("10.213.0.0/16")
"""The runtime's own tests carve their networks from here, outside every platform's pool: a
platform's network policy (a `slipway up` or an e2e platform on this machine) holds its own
pool's containers to its database port, which these tests stand in for with a listener of
their own (the policy itself is tested in test_network_policy.py)."""


@pytest.fixture
def deployments(app_image: str, tmp_path: Path) -> Iterator[Deployments]:
    runtime = DockerRuntime(DOCKER, tmp_path / "run", network_pool=RUNTIME_POOL)
    made = Deployments(runtime, app_image, tmp_path / "run")
    yield made
    made.clean_up()
    made.runtime.remove_reserve()


def serves(endpoint: Endpoint) -> bool:
    """What the router does: dial the replica's endpoint from the host."""
    try:
        response = httpx.get(f"http://{endpoint.address}/", timeout=2, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.text.strip() == PAGE


def in_container(container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER, "exec", container, *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fetch(container: str, url: str) -> subprocess.CompletedProcess[str]:
    """An HTTP GET from inside the container, given 5 s (busybox's own `wget -T` crashes)."""
    return in_container(container, "timeout", "5", "wget", "-q", "-O", "-", url)


def inspect(kind: str, name: str) -> dict[str, Any]:
    [found] = json.loads(docker(kind, "inspect", name))
    return dict(found)


def subnet_of(network: dict[str, Any]) -> ipaddress.IPv4Network:
    [config] = network["IPAM"]["Config"]
    return ipaddress.IPv4Network(config["Subnet"])


def container_ip(container: str) -> str:
    """Its address on its network: its holder's, for a replica (which joins the holder's)."""
    found = inspect("container", container)
    mode = str(found["HostConfig"]["NetworkMode"])
    if mode.startswith("container:"):
        return container_ip(mode.removeprefix("container:"))
    [network] = found["NetworkSettings"]["Networks"].values()
    return str(network["IPAddress"])


@dataclass
class HostServer:
    """A TCP server where the database cluster listens: on the default bridge's gateway."""

    address: str
    port: int
    peers: list[str]


@pytest.fixture
def host_server() -> Iterator[HostServer]:
    gateway = docker_bridge_gateway()
    assert gateway, "a Docker engine with its default bridge is needed (make test starts one)"
    listener = socket.create_server((gateway, 0))
    listener.settimeout(0.2)
    server = HostServer(gateway, listener.getsockname()[1], [])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, (peer, _port) = listener.accept()
            except TimeoutError:
                continue
            with connection:
                server.peers.append(peer)
                connection.sendall(b"cluster says hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_replica_runs_confined(deployments: Deployments) -> None:
    _, replica = deployments.start()

    host = inspect("container", replica.ref)["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 1024
    assert host["Memory"] == LIMITS[DeploymentType.production].memory_bytes
    assert host["MemorySwap"] == host["Memory"]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    assert host["Privileged"] is False

    # From inside: no capability at all, and no way to gain privileges.
    status = in_container(replica.ref, "cat", "/proc/self/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    denied = in_container(replica.ref, "ping", "-c", "1", "-W", "1", "127.0.0.1")
    assert denied.returncode != 0 and "permission denied" in denied.stderr.lower()
    chown = in_container(replica.ref, "chown", "65534", "/www/index.html")
    assert chown.returncode != 0, "chown worked without CAP_CHOWN"


def test_user_env_with_line_breaks_reaches_the_container_and_no_platform_process(
    deployments: Deployments, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile tenant sets LD_PRELOAD (and a PEM key) with a line break: the values reach
    the replica as they are, and no process the platform starts meanwhile has them in its
    environment (the Docker CLI once got such values as its own env)."""
    marker = f"slipway-attack-{uuid.uuid4().hex[:8]}"
    env = {
        "LD_PRELOAD": f"/tmp/{marker}.so\n",
        "GCONV_PATH": f"/tmp/{marker}\n",
        "PEM": f"-----BEGIN-----\n{marker}\n-----END-----",
    }
    seen: list[dict[str, str]] = []
    real_init = subprocess.Popen.__init__

    def recording_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        seen.append(dict(kwargs.get("env") or os.environ))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
    deployment_id = f"dep_test{uuid.uuid4().hex[:8]}"
    deployments.ids.append(deployment_id)
    replica = deployments.start_replica(deployment_id, env=env)
    monkeypatch.undo()

    assert not [process for process in seen if any(marker in v for v in process.values())]
    config_env = inspect("container", replica.ref)["Config"]["Env"]
    assert f"PEM={env['PEM']}" in config_env
    assert f"LD_PRELOAD={env['LD_PRELOAD']}" in config_env


def test_a_fork_bomb_stops_at_the_pids_limit(deployments: Deployments) -> None:
    _, replica = deployments.start(Confinement(pids_limit=24))

    bomb = in_container(
        replica.ref, "sh", "-c", "for i in $(seq 1 60); do sleep 20 & done; echo spawned"
    )

    assert "can't fork" in bomb.stderr or "Resource temporarily unavailable" in bomb.stderr, (
        bomb.stdout,
        bomb.stderr,
    )
    assert inspect("container", replica.ref)["HostConfig"]["PidsLimit"] == 24


def test_a_replica_writing_past_its_bound_is_stopped_with_the_reason(
    deployments: Deployments,
) -> None:
    """The engine cannot bound a writable layer on overlay2 over ext4: the runtime measures
    it, kills the replica over its bound, and reports it dead with why (the reconciler then
    replaces it with a fresh one)."""
    _, replica = deployments.start(Confinement(writable_layer_bytes=8 * 1024**2))
    assert deployments.runtime.statuses()[replica.name].running  # 0 bytes written so far

    wrote = in_container(replica.ref, "dd", "if=/dev/zero", "of=/filler", "bs=1M", "count=24")
    assert wrote.returncode == 0, wrote.stderr

    runtime = DockerRuntime(DOCKER, deployments.lock_dir, writable_layer_check_seconds=0)

    def dead() -> ReplicaStatus | None:
        status = runtime.statuses()[replica.name]
        return None if status.running else status

    status = wait_for("the replica over its bound to be reported dead", dead, 30)
    assert "over the bound of 8 MB" in status.exit_reason
    assert inspect("container", replica.ref)["State"]["Running"] is False


def test_a_chatty_replicas_log_is_rotated(deployments: Deployments) -> None:
    _, replica = deployments.start(Confinement(logs=LogRotation(max_size="2k", max_files=2)))
    last = f"line-{CHATTY_LINES - 1}-"

    def finished_log() -> str | None:
        text = subprocess.run(
            [DOCKER, "logs", replica.ref], capture_output=True, text=True, check=True
        ).stdout
        return text if last in text else None

    kept = wait_for("the last line in the replica's log", finished_log, 30)
    assert "line-0-" not in kept
    assert len(kept.encode()) <= 2 * 2048 + 200  # two files of 2 KB (and one line over)


def test_deployments_cannot_reach_each_other_but_reach_the_host(
    deployments: Deployments, host_server: HostServer
) -> None:
    a_id, a = deployments.start()
    b_id, b = deployments.start()
    a_net = inspect("network", deployment_network(a_id).name)
    b_net = inspect("network", deployment_network(b_id).name)
    assert a_net["Id"] != b_net["Id"]
    b_ip = container_ip(b.ref)
    subnets = [subnet_of(a_net), subnet_of(b_net)]
    for subnet in subnets:
        assert subnet.subnet_of(RUNTIME_POOL) and subnet.prefixlen == NETWORK_SUBNET_PREFIX_LENGTH
    assert not subnets[0].overlaps(subnets[1])

    # B serves on its own address (seen from B itself) ...
    from_b = fetch(b.ref, f"http://{b_ip}:8000/")
    assert from_b.returncode == 0 and from_b.stdout.strip() == PAGE, from_b.stderr
    # ... but nothing of A gets through to B's address, and B has no port on the host for A
    # to go round by.
    to_b = fetch(a.ref, f"http://{b_ip}:8000/")
    assert to_b.returncode != 0 and PAGE not in to_b.stdout, f"A reached B: {to_b.stdout!r}"
    assert docker("port", b.ref).strip() == ""

    # A reaches the database cluster's address as host.docker.internal, as itself ...
    to_cluster = in_container(
        a.ref, "sh", "-c", f"nc -w 5 host.docker.internal {host_server.port} </dev/null"
    )
    assert to_cluster.returncode == 0, to_cluster.stderr
    assert to_cluster.stdout == "cluster says hello\n"
    assert host_server.peers == [container_ip(a.ref)]
    # ... and the router's way in, each replica's endpoint dialled from the host, works for both.
    assert b.endpoint.host == b_ip
    assert serves(a.endpoint) and serves(b.endpoint)


def container_id(name: str) -> str | None:
    """The id of the running container called exactly `name`, None when there is none."""
    found = docker("ps", "-q", "--no-trunc", "--filter", f"name=^{name}$").split()
    return found[0] if found else None


def refuses(endpoint: Endpoint) -> bool:
    """A connection to it is refused at once (not left unanswered until a timeout)."""
    try:
        socket.create_connection((endpoint.host, endpoint.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_a_killed_replicas_address_refuses_at_once_until_the_replica_is_removed(
    deployments: Deployments,
) -> None:
    """What lets the router retry a request that met a dead replica elsewhere at once."""
    _, replica = deployments.start()
    holder = holder_name(replica.name)
    assert container_id(holder) is not None

    docker("kill", replica.ref)

    assert refuses(replica.endpoint)
    status = deployments.runtime.statuses()[replica.name]
    assert not status.running and status.exit_reason == "killed (exit code 137)"
    deployments.runtime.remove(replica.name)
    assert docker("ps", "-aq", "--filter", f"name=^{holder}$").split() == []


def reserve_of(deployments: Deployments) -> list[str]:
    """The names of the host's spare holders the fixture's runtime keeps."""
    platform = reserve_id(str(deployments.lock_dir.resolve()))
    return reserve_holder_names(platform, DEFAULT_HOLDER_RESERVE)


def test_the_next_replica_takes_a_spare_of_the_hosts_reserve(deployments: Deployments) -> None:
    deployment_id, first = deployments.start()
    spares = reserve_of(deployments)
    assert len(spares) == 3  # a production deployment may add three replicas at once
    wait_for("three spare holders", lambda: all(container_id(name) for name in spares), 30)
    spare = spares[0]
    waiting = container_id(spare)
    assert waiting is not None
    held = inspect("container", waiting)
    assert held["Config"]["User"] == "65534:65534"
    assert held["HostConfig"]["ReadonlyRootfs"] is True
    assert held["HostConfig"]["CapDrop"] == ["ALL"]
    assert DEPLOYMENT_LABEL not in held["Config"]["Labels"]  # any deployment's, until taken

    second = deployments.start_replica(deployment_id)

    assert container_id(holder_name(second.name)) == waiting
    taken = inspect("container", waiting)["NetworkSettings"]["Networks"]
    assert list(taken) == [deployment_network(deployment_id).name]  # and no longer the reserve's
    assert second.endpoint.host == taken[deployment_network(deployment_id).name]["IPAddress"]
    assert wait_for("a new spare", lambda: container_id(spare), 30) != waiting
    assert serves(first.endpoint) and serves(second.endpoint)


def test_idle_deployments_keep_one_container_of_slipways_per_replica(
    deployments: Deployments,
) -> None:
    """The spares are the host's, not each deployment's: two deployments at rest hold their
    replicas' apps and holders, and the host three spares in all."""
    ids = [deployments.start()[0] for _ in range(2)]
    spares = reserve_of(deployments)
    wait_for("three spare holders", lambda: all(container_id(name) for name in spares), 30)

    for deployment_id in ids:
        network = deployment_network(deployment_id).name
        on_network = set(inspect("network", network)["Containers"])
        assert len(on_network) == 1  # the replica's holder: the app shares its namespace
        label = f"label={DEPLOYMENT_LABEL}={deployment_id}"
        labelled = set(docker("ps", "-aq", "--no-trunc", "--filter", label).split())
        assert len(labelled | on_network) == 2  # the app and its holder, no spare of its own


def test_a_taken_holder_whose_replica_never_started_goes_with_its_deployment(
    deployments: Deployments,
) -> None:
    deployment_id, _ = deployments.start()
    spares = reserve_of(deployments)
    wait_for("three spare holders", lambda: all(container_id(name) for name in spares), 30)
    network = deployment_network(deployment_id).name
    # What a worker dying between taking a spare and starting its app leaves behind.
    orphan = "slipway-test-orphan-holder"
    docker("rename", spares[0], orphan)
    docker("network", "connect", network, orphan)

    deployments.runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)

    assert container_id(orphan) is None
    assert docker("network", "ls", "-q", "--filter", f"name=^{network}$") == ""


def test_a_burst_of_starts_takes_each_spare_once(
    deployments: Deployments, caplog: pytest.LogCaptureFixture
) -> None:
    """Three replicas started at once (the autoscaler's burst from one to four) each get a
    spare of their own: the engine resolves a rename's old name before it waits for the
    container, so two starts once took one spare, two replicas sharing an address and a third
    losing its holder."""
    deployment_id, first = deployments.start()
    spares = reserve_of(deployments)
    wait_for("three spare holders", lambda: all(container_id(name) for name in spares), 30)
    waiting = {container_id(name) for name in spares}

    with ThreadPoolExecutor(max_workers=3) as pool:
        burst = list(pool.map(lambda _: deployments.start_replica(deployment_id), range(3)))

    holders = {container_id(holder_name(replica.name)) for replica in burst}
    assert holders == waiting  # each spare taken once, no holder made on the start path
    assert len({replica.endpoint for replica in [first, *burst]}) == 4
    assert all(serves(replica.endpoint) for replica in burst)
    assert "retried with a new holder" not in caplog.text


def test_a_spare_that_stopped_is_replaced_and_the_retry_is_logged(
    deployments: Deployments, caplog: pytest.LogCaptureFixture
) -> None:
    deployment_id, first = deployments.start()
    spares = reserve_of(deployments)
    wait_for("three spare holders", lambda: all(container_id(name) for name in spares), 30)
    docker("stop", "--time", "0", *spares)  # what an OOM or a stray kill leaves behind

    with caplog.at_level("WARNING", logger="app.adapters.docker"):
        second = deployments.start_replica(deployment_id)

    assert serves(first.endpoint) and serves(second.endpoint)
    [retried] = [r for r in caplog.records if r.getMessage().startswith("replica start retried")]
    assert getattr(retried, "deployment_id", None) == deployment_id
    assert getattr(retried, "replica", None) == second.name
    assert "non running container" in str(getattr(retried, "why", "")).lower()
    wait_for("the stopped spares made anew", lambda: all(container_id(name) for name in spares), 30)


def test_a_replica_whose_holder_went_is_dead(deployments: Deployments) -> None:
    _, replica = deployments.start()

    docker("rm", "--force", holder_name(replica.name))

    status = deployments.runtime.statuses()[replica.name]
    assert not status.running
    assert status.exit_reason == "its network is gone (the container holding its address stopped)"


def test_a_deployments_replicas_share_its_network_and_leave_nothing_when_removed(
    deployments: Deployments,
) -> None:
    deployment_id, first = deployments.start()
    second = deployments.start_replica(deployment_id)  # ensure_network again: the same one
    network = deployment_network(deployment_id).name
    assert len(docker("network", "ls", "-q", "--filter", f"name=^{network}$").split()) == 1
    assert inspect("network", network)["Labels"] == {DEPLOYMENT_LABEL: deployment_id}
    reached = fetch(first.ref, f"http://{container_ip(second.ref)}:8000/")
    assert reached.returncode == 0 and reached.stdout.strip() == PAGE, reached.stderr

    deployments.runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)
    deployments.runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)  # a retried teardown

    label = f"label={DEPLOYMENT_LABEL}={deployment_id}"
    assert docker("ps", "-aq", "--filter", label).split() == []
    assert docker("network", "ls", "-q", "--filter", label).split() == []


def test_ensure_network_skips_subnets_taken_by_other_networks(
    deployments: Deployments, tmp_path: Path
) -> None:
    pool = ipaddress.IPv4Network("172.16.255.0/26")  # two /27s
    blocker = f"slipway-test-blocker-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--subnet", "172.16.255.0/27", blocker)
    runtime = DockerRuntime(DOCKER, tmp_path / "pool", network_pool=pool)
    first, second = (deployment_network(f"dep_test{uuid.uuid4().hex[:8]}") for _ in range(2))
    deployments.ids += [first.labels[DEPLOYMENT_LABEL], second.labels[DEPLOYMENT_LABEL]]
    try:
        runtime.ensure_network(first.name, first.labels)
        assert str(subnet_of(inspect("network", first.name))) == "172.16.255.32/27"
        with pytest.raises(RuntimeStartError, match="no free /27 subnet"):
            runtime.ensure_network(second.name, second.labels)
    finally:
        docker("network", "rm", blocker)


def test_a_subnet_the_engine_refuses_is_not_tried_again(
    deployments: Deployments, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine still holds a removed network's subnet a moment after it stops listing it
    (seen under churn: every retry chose the same refused subnet, and a deployment failed with
    "every free subnet was taken"). A listing that misses a taken subnet stands in for it."""
    pool = ipaddress.IPv4Network("172.16.254.0/26")  # two /27s
    blocker = f"slipway-test-blocker-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--subnet", "172.16.254.0/27", blocker)
    runtime = DockerRuntime(DOCKER, tmp_path / "stale", network_pool=pool)
    monkeypatch.setattr(runtime, "_subnets_in_use", list)  # it never sees the blocker
    network = deployment_network(f"dep_test{uuid.uuid4().hex[:8]}")
    deployments.ids.append(network.labels[DEPLOYMENT_LABEL])
    try:
        runtime.ensure_network(network.name, network.labels)
        assert str(subnet_of(inspect("network", network.name))) == "172.16.254.32/27"
    finally:
        docker("network", "rm", blocker)


def test_a_deployments_state_outlives_its_replicas_and_goes_with_the_deployment(
    deployments: Deployments,
) -> None:
    """The inmem runtime's files: on the deployment's own volume, not in one container."""
    deployment_id, first = deployments.start_replica_in_new_deployment(state_dir="/state")
    written = in_container(first.ref, "sh", "-c", "echo kept > /state/thread.pckl && echo ok")
    assert written.stdout.strip() == "ok", written.stderr
    deployments.runtime.remove(first.ref)

    second = deployments.start_replica(deployment_id, state_dir="/state")
    assert in_container(second.ref, "cat", "/state/thread.pckl").stdout.strip() == "kept"

    deployments.runtime.remove_labelled(DEPLOYMENT_LABEL, deployment_id)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={DEPLOYMENT_LABEL}={deployment_id}")
    assert volumes.split() == []


def route_to(subnet: str) -> dict[str, Any]:
    [route] = json.loads(
        subprocess.run(
            ["ip", "-json", "route", "show", "exact", subnet],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert isinstance(route, dict)
    return route


def test_the_hosts_route_to_a_deployment_network_acknowledges_at_once(
    deployments: Deployments,
) -> None:
    """So an app that writes its headers and body in two pieces with Nagle on is not held
    back 40 ms behind the router (app.adapters.bridges); kept across starts and restored when
    lost."""
    deployment_id, _first = deployments.start()
    subnet = str(subnet_of(inspect("network", deployment_network(deployment_id).name)))
    route = route_to(subnet)
    assert has_quick_acks(route), route

    # As when the engine makes the bridge anew: the route comes back without it.
    subprocess.run(
        ["ip", "route", "change", subnet, "dev", route["dev"], "proto", "kernel",
         "scope", "link", "src", route["prefsrc"]],
        check=True,
    )  # fmt: skip
    assert not has_quick_acks(route_to(subnet))
    deployments.start_replica(deployment_id)
    assert has_quick_acks(route_to(subnet))
