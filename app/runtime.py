"""The container runtime on one Docker engine: start, watch and stop a revision's replicas.

Replicas run without an engine restart policy: one that exits is seen by the reconciler, which
takes it out of the route and starts a new one (with a backoff when it keeps dying), the same
way whatever the runtime.

Secrets reach the container through an env file readable only by us and deleted as soon as
`docker run` returns, so they never appear in an argument list, a process listing or a log.
Each deployment's replicas run on a bridge network of their own: user-defined bridges are
isolated from each other by the engine, while the host and the replicas reach each other (the
database cluster on the default bridge's gateway; the router and the health probe dialling the
replica's address on its network, where nothing is published on the host).

A replica is two containers, as a Kubernetes pod is: a holder, which owns the network
namespace (the address, `/etc/hosts`) and only sleeps, and the app, which joins it. When the
app dies, its address still refuses connections at once, so the router sends a request that
met the dead app to another replica; without the holder the address would answer nothing, and
a request dialling it would wait out the dial timeout, then fail if a route reload came first
(5 of 980 requests when a replica was killed under load, docs/performance.md). Each network
keeps spare holders ready, so a new replica waits only for its app's `docker run`.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import ipaddress
import json
import logging
import os
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException, NoSuchContainer
from python_on_whales.utils import run as docker_cli

from app.bridges import enable_quick_acks
from app.errors import EngineError, RuntimeStartError
from app.ports import Endpoint, ReplicaStatus, StartedReplica
from builders.holder_image import holder_image as builders_holder_image
from manifests.containers import (
    DEFAULT_NETWORK_POOL,
    DEPLOYMENT_LABEL,
    HOLDER_LABEL,
    NETWORK_SUBNET_PREFIX_LENGTH,
    REVISION_LABEL,
    Confinement,
    ContainerSpec,
    Limits,
    ServiceSpec,
    free_subnets,
    holder_name,
    is_holder,
    spare_holder_names,
)

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RESTART_POLICY_REPLICA = "no"
"""The reconciler, not the engine, replaces a replica that died (the engine does not restart
one stopped by `docker kill`, and would bring it back on a port the router no longer dials)."""
RESTART_POLICY_SERVICE = "unless-stopped"
"""A deployment's Redis comes back on its own after a crash (not after a `docker kill`, which
the engine counts as a manual stop)."""
STOP_TIMEOUT_SECONDS = 10
"""Grace period between SIGTERM and SIGKILL when a replica is stopped."""
START_ATTEMPTS = 3
"""A name still held by an earlier attempt (a retried job), or a holder that stopped before
its app joined it, is cleared and tried again."""
HOLDER_LIMITS = Limits(cpus=0.1, memory_bytes=16 * 1024**2, max_replicas=1)
"""A holder only sleeps; it uses about 300 KB."""
HOLDER_PIDS_LIMIT = 4
HOLDER_USER = "65534:65534"
"""nobody: a holder needs no right at all."""
RUNNING_STATES = frozenset({"running", "restarting", "created"})
"""What `docker ps` shows of a container that is (or is about to be) up: `created` while
`docker run` is at it."""
HOLDER_GONE = "its network is gone (the container holding its address stopped)"
NETWORK_ATTEMPTS = 5
"""A free subnet can be taken between listing and creating (another platform on the engine, or
a network made by hand); the next free one is tried."""
LIST_ATTEMPTS = 3
"""Listing every network's subnet fails when one goes meanwhile (a teardown); it is listed again."""


class DockerRuntime:
    def __init__(
        self,
        docker_binary: str,
        env_dir: Path,
        network_pool: ipaddress.IPv4Network | None = None,
        quick_acks: Callable[[ipaddress.IPv4Network], bool] = enable_quick_acks,
        holder_image: Callable[[], str] | None = None,
    ) -> None:
        self._docker = DockerClient(client_call=[docker_binary])
        self._env_dir = env_dir
        self._network_pool = network_pool or ipaddress.IPv4Network(DEFAULT_NETWORK_POOL)
        self._quick_acks = quick_acks
        self._holder_image = holder_image or builders_holder_image(docker_binary).tag
        self._spares = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spare-holder")
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="holder-address")
        self._spares_lock = threading.Lock()
        self._spares_coming: set[str] = set()

    def start(self, spec: ContainerSpec) -> StartedReplica:
        """Run the replica in a holder of its own; its endpoint is the holder's address.

        Nothing is published on the host: the router and the health probe dial the address on
        the deployment's network, so a request crosses one proxy (Caddy), not two (Caddy, then
        the engine's port relay: ~0.5 ms more at the median here).
        """
        for volume in spec.volumes:
            self._ensure_volume(volume, spec.labels)
        holder = holder_name(spec.name)
        one_line, multi_line = split_env(spec.env)
        env_file = self._write_env_file(one_line)
        try:
            self._take_holder(spec, holder)
            # Read beside the app's start (~40 ms less on the way to live).
            address = self._lookups.submit(self._address_of, holder, spec.network)
            for _attempt in range(START_ATTEMPTS):
                try:
                    container_id = self._run(spec, env_file, multi_line, holder)
                    break
                except DockerException as exc:
                    if _holder_not_running(exc) or _start_failed(exc):
                        # A spare that stopped before it was taken, or a start that failed
                        # midway while joining it: a new holder, then again.
                        log.warning(
                            "replica start retried with a new holder",
                            extra={**_ids(spec), "replica": spec.name, "why": _stderr(exc)},
                        )
                        self._force_remove(spec.name)
                        self._force_remove(holder)
                        self._run_holder(spec, holder)
                        address = self._lookups.submit(self._address_of, holder, spec.network)
                    elif _name_in_use(exc):
                        # The name is held by an earlier attempt (a retried job): clear it.
                        self._force_remove(spec.name)
                    else:
                        raise
            else:
                raise RuntimeStartError(
                    f"the container could not be started after {START_ATTEMPTS} attempts"
                )
            endpoint = Endpoint(address.result(), spec.port)
            # Only now: a spare made while the app starts competes with it for the engine
            # (the start took ~100 ms longer).
            self._replenish(spec)
        except DockerException as exc:
            self._force_remove(holder)
            raise RuntimeStartError(f"the container could not be started: {_stderr(exc)}") from exc
        except RuntimeStartError:
            self._force_remove(holder)
            raise
        finally:
            env_file.unlink(missing_ok=True)
        return StartedReplica(name=spec.name, ref=container_id, endpoint=endpoint)

    def _run(
        self, spec: ContainerSpec, env_file: Path, multi_line: dict[str, str], holder: str
    ) -> str:
        argv = [
            *self._docker.client_config.docker_cmd,
            *run_arguments(spec, env_file, holder, inherited=sorted(multi_line)),
        ]
        # `-e NAME` without a value makes the CLI pass its own NAME: the one way a value
        # with line breaks (a PEM key) reaches the container without appearing in argv.
        return str(docker_cli(argv, env=multi_line)).strip()

    # -- holders ------------------------------------------------------------------------------
    def _take_holder(self, spec: ContainerSpec, holder: str) -> None:
        """One of the network's spares becomes the replica's holder (renaming is atomic: of
        two starts, one gets it; the other tries the next); without one left, one is run."""
        for spare in spare_holder_names(spec.network, spec.limits):
            for _attempt in range(START_ATTEMPTS):
                try:
                    self._cli("rename", spare, holder)
                    return
                except DockerException as exc:
                    if not _name_in_use(exc):
                        break  # taken by another start, or not made yet: the next one
                    self._force_remove(holder)  # left by an earlier attempt (a retried job)
        self._run_holder(spec, holder)

    def _run_holder(self, spec: ContainerSpec, name: str) -> None:
        for _attempt in range(START_ATTEMPTS):
            try:
                self._cli(*holder_arguments(spec, name, self._holder_image()))
                return
            except DockerException as exc:
                if not (_name_in_use(exc) or _start_failed(exc)):
                    raise
                if _start_failed(exc):
                    log.warning(
                        "replica holder start retried",
                        extra={**_ids(spec), "holder": name, "why": _stderr(exc)},
                    )
                self._force_remove(name)
        raise RuntimeStartError(
            f"the replica's holder could not be started after {START_ATTEMPTS} attempts"
        )

    def _replenish(self, spec: ContainerSpec) -> None:
        """The network's spares made up again, unless this process is at it already."""
        with self._spares_lock:
            if spec.network in self._spares_coming:
                return
            self._spares_coming.add(spec.network)
        self._spares.submit(self._make_spare, spec)

    def _make_spare(self, spec: ContainerSpec) -> None:
        """The network's missing or stopped spares made, under its lock, which its removal
        takes too: a spare made while its deployment goes would keep the network from going."""
        try:
            with self._lock(f"network-{spec.network}"):
                wanted = spare_holder_names(spec.network, spec.limits)
                filters = [arg for name in wanted for arg in ("--filter", f"name=^{name}$")]
                listed = self._cli("ps", "-a", *filters, "--format", "{{.Names}}\t{{.State}}")
                states = dict(line.split("\t", 1) for line in listed.splitlines() if "\t" in line)
                for name in wanted:
                    if states.get(name) in RUNNING_STATES:
                        continue
                    if name in states:  # stopped (killed, or the engine restarted): made anew
                        self._force_remove(name)
                    self._cli(*holder_arguments(spec, name, self._holder_image()))
        except DockerException as exc:
            # Another worker made one (the name is taken), or the network went meanwhile.
            log.info("spare holder not made", extra={"network": spec.network, "why": _stderr(exc)})
        except Exception:
            log.exception("spare holder not made", extra={"network": spec.network})
        finally:
            with self._spares_lock:
                self._spares_coming.discard(spec.network)

    def _address_of(self, holder: str, network: str) -> str:
        """The holder's IPv4 address on the deployment's network (~20 ms)."""
        text = self._cli(
            "container",
            "inspect",
            "--format",
            f"{{{{with index .NetworkSettings.Networks {json.dumps(network)}}}}}"
            "{{.IPAddress}}{{end}}",
            holder,
        ).strip()
        if not text:
            raise RuntimeStartError(
                f"the replica has no address on the deployment's network {network} (was the "
                "network removed meanwhile?)"
            )
        return text

    def _force_remove(self, name: str) -> None:
        with contextlib.suppress(DockerException):
            self._cli("rm", "--force", "--volumes", name)

    def _ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Made with the deployment's label (`docker run` would make it unlabelled, and its
        teardown would not find it); creating an existing volume changes nothing."""
        deployment = {DEPLOYMENT_LABEL: labels[DEPLOYMENT_LABEL]}
        try:
            self._cli("volume", "create", *label_arguments(deployment), name)
        except DockerException as exc:
            raise RuntimeStartError(
                f"the deployment's volume could not be created: {_stderr(exc)}"
            ) from exc

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """Create the deployment's network unless it exists (every start asks; ~40 ms), and
        have the host acknowledge at once on its route (`app.bridges`; kept by a network made
        before, or restored when the engine made its bridge anew).

        Its subnet is chosen here, from the pool, under a lock shared by this platform's
        workers; a subnet another platform took meanwhile is refused by the engine as
        overlapping, and the next one is tried.
        """
        for subnet in self._created_network(name, labels):
            if isinstance(subnet, ipaddress.IPv4Network):
                self._quick_acks(subnet)

    def _created_network(self, name: str, labels: dict[str, str]) -> list[IPNetwork]:
        """The subnets of the deployment's network, made now or before."""
        try:
            if (subnets := self._network_subnets(name)) is not None:
                return subnets
            with self._network_lock():
                if (subnets := self._network_subnets(name)) is not None:
                    return subnets
                for _attempt in range(NETWORK_ATTEMPTS):
                    subnet = next(free_subnets(self._network_pool, self._subnets_in_use()), None)
                    if subnet is None:
                        raise RuntimeStartError(
                            f"no free /{NETWORK_SUBNET_PREFIX_LENGTH} subnet is left in "
                            f"{self._network_pool} for the deployment's network (widen "
                            "SLIPWAY_CONTAINER_NETWORK_POOL, or remove deployments)"
                        )
                    try:
                        self._create_network(name, labels, subnet)
                        return [subnet]
                    except DockerException as exc:
                        if "already exists" in _stderr(exc):
                            return self._network_subnets(name) or []
                        if "overlaps" not in _stderr(exc):
                            raise
        except DockerException as exc:
            raise RuntimeStartError(
                f"the deployment's network could not be created: {_stderr(exc)}"
            ) from exc
        raise RuntimeStartError(
            f"the deployment's network could not be created after {NETWORK_ATTEMPTS} attempts: "
            f"every free subnet of {self._network_pool} was taken meanwhile"
        )

    def ensure_service(self, spec: ServiceSpec) -> bool:
        """Have the deployment's backing service running; True when it was (re)created.

        A running one is kept (its clients stay connected across revisions); a stopped or
        exited one is replaced. Its files (the Redis config, with the password) are copied in
        from memory between `create` and `start`: never in an argument, a file on the host
        or `docker inspect`. Serialised with network creation, so two revisions starting at
        once make one container.
        """
        try:
            with self._network_lock():
                state = self._container_state(spec.name)
                if state == "running":
                    return False
                if state is not None:
                    self._docker.container.remove(spec.name, force=True)
                self._cli(*service_arguments(spec))
                docker_cli(
                    [*self._docker.client_config.docker_cmd, "cp", "-", f"{spec.name}:/"],
                    input=files_tar(spec.files),
                )
                self._cli("start", spec.name)
        except DockerException as exc:
            raise RuntimeStartError(
                f"the deployment's {spec.name} could not be started: {_stderr(exc)}"
            ) from exc
        return True

    def _container_state(self, name: str) -> str | None:
        """The engine's word for the container's state (running, exited, ...), None if none."""
        try:
            return self._cli("container", "inspect", "--format", "{{.State.Status}}", name).strip()
        except DockerException as exc:
            if "no such" in _stderr(exc).lower():
                return None
            raise

    def _network_subnets(self, name: str) -> list[IPNetwork] | None:
        """The existing network's subnets (none for one made by hand without IPAM); None when
        there is no such network."""
        try:
            text = self._cli(
                "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", name
            )
        except DockerException as exc:
            if _no_such_network(exc):
                return None
            raise
        return [ipaddress.ip_network(word, strict=False) for word in text.split()]

    def _create_network(
        self, name: str, labels: dict[str, str], subnet: ipaddress.IPv4Network
    ) -> None:
        self._cli(
            "network", "create", "--driver", "bridge", "--subnet", str(subnet),
            *label_arguments(labels), name,
        )  # fmt: skip

    def _subnets_in_use(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        attempt = 0
        while True:
            attempt += 1
            ids = self._cli("network", "ls", "--quiet", "--no-trunc").split()
            try:
                text = self._cli(
                    "network",
                    "inspect",
                    "--format",
                    "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                    *ids,
                )
            except DockerException as exc:
                if _no_such_network(exc) and attempt < LIST_ATTEMPTS:
                    continue
                raise
            return [ipaddress.ip_network(word, strict=False) for word in text.split()]

    def _network_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while a subnet is chosen or a deployment's service is (re)made."""
        return self._lock("networks")

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """Shared by this platform's workers on this host (the engine is this host's)."""
        self._env_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self._env_dir / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _cli(self, *args: str) -> str:
        return str(docker_cli([*self._docker.client_config.docker_cmd, *args]))

    def status(self, ref: str) -> ReplicaStatus:
        try:
            state = self._docker.container.inspect(ref).state
        except NoSuchContainer:
            return ReplicaStatus(running=False)
        return ReplicaStatus(
            running=bool(state.running),
            exit_code=state.exit_code if not state.running else None,
            oom_killed=bool(state.oom_killed),
        )

    def statuses(self) -> dict[str, ReplicaStatus]:
        """One `docker ps` for every replica on the engine; exited ones are inspected for why.

        Once per reconciler tick for the whole platform: a CLI call costs ~25 ms of CPU. A
        replica whose holder is gone is dead too: its app has no network left.
        """
        try:
            listed = self._cli(
                "ps",
                "--all",
                "--no-trunc",
                "--filter",
                f"label={DEPLOYMENT_LABEL}",
                "--format",
                f'{{{{.Names}}}}\t{{{{.State}}}}\t{{{{.Label "{REVISION_LABEL}"}}}}'
                f'\t{{{{.Label "{HOLDER_LABEL}"}}}}',
            )
        except DockerException as exc:
            raise EngineError(f"the Docker engine did not list replicas: {_stderr(exc)}") from exc
        states: dict[str, str] = {}
        replicas: dict[str, str] = {}
        for line in listed.splitlines():
            name, state, revision, holder = [*line.split("\t"), "", "", ""][:4]
            if not name:
                continue
            states[name] = state.strip()
            if revision:
                replicas[name] = holder.strip()
        found: dict[str, ReplicaStatus] = {}
        for name, holder in replicas.items():
            if states[name] not in RUNNING_STATES:
                found[name] = self.status(name)
            elif holder and states.get(holder) not in RUNNING_STATES:
                found[name] = ReplicaStatus(running=False, detail=HOLDER_GONE)
            else:
                found[name] = ReplicaStatus(running=True)
        return found

    def remove_image(self, tag: str) -> None:
        """Best effort: an image still used by a container, or already gone, is left alone."""
        with contextlib.suppress(DockerException):
            self._docker.image.remove(tag)

    def logs_tail(self, ref: str, lines: int = 30) -> str:
        try:
            return str(self._docker.container.logs(ref, tail=lines))
        except DockerException:
            return ""

    def remove(self, name: str) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove, then its holder;
        safe to race.

        Two removers of one container (a teardown and a route switch retiring it) both end
        well: "no such container" and "removal already in progress" mean it is going.
        """
        self._remove_container(name)
        if not is_holder(name):
            self._remove_container(holder_name(name))

    def _remove_container(self, name_or_id: str) -> None:
        try:
            self._docker.container.stop(name_or_id, time=STOP_TIMEOUT_SECONDS)
        except NoSuchContainer:
            return
        except DockerException:
            pass
        try:
            self._docker.container.remove(name_or_id, force=True, volumes=True)
        except NoSuchContainer:
            return
        except DockerException as exc:
            if "already in progress" in str(exc) or "No such container" in str(exc):
                return
            raise

    def remove_labelled(self, label: str, value: str) -> None:
        """Containers first (an image in use cannot go, nor a network with containers on it),
        then images, then networks, then volumes (the app's state: gone with it); found by
        label, so what a crashed worker started without recording it goes too. A network left
        behind raises: subnets of the pool are finite.

        Each network goes under its lock, after a last look for containers: a spare holder
        being made meanwhile is either found there or fails for want of the network.
        """
        try:
            for name in self._labelled_containers(label, value):
                self.remove(name)
            images = self._docker.image.list(filters={"label": f"{label}={value}"})
        except DockerException as exc:
            raise EngineError(
                f"the Docker engine did not remove {value}'s containers: {_stderr(exc)}"
            ) from exc
        for image in images:
            with contextlib.suppress(DockerException):
                self._docker.image.remove(image.id, force=True)
        try:
            networks = self._cli(
                "network", "ls", "--filter", f"label={label}={value}", "--format", "{{.Name}}"
            ).split()
            for network in networks:
                with self._lock(f"network-{network}"):
                    for name in self._labelled_containers(label, value):
                        self.remove(name)
                    self._remove_network(network)
        except DockerException as exc:
            raise EngineError(
                f"the Docker engine did not remove {value}'s network: {_stderr(exc)}"
            ) from exc
        try:
            volumes = self._cli(
                "volume", "ls", "--quiet", "--filter", f"label={label}={value}"
            ).split()
            if volumes:
                self._cli("volume", "rm", "--force", *volumes)
        except DockerException as exc:
            raise EngineError(
                f"the Docker engine did not remove {value}'s volume: {_stderr(exc)}"
            ) from exc

    def _labelled_containers(self, label: str, value: str) -> list[str]:
        """Names, holders last: an app still draining keeps its network until it stops."""
        names = self._cli(
            "ps", "--all", "--filter", f"label={label}={value}", "--format", "{{.Names}}"
        ).split()
        return sorted(names, key=is_holder)

    def _remove_network(self, network: str) -> None:
        """Safe to race: a network another remover took first is gone, which is the aim."""
        try:
            self._cli("network", "rm", network)
        except DockerException as exc:
            if not _no_such_network(exc):
                raise

    def _write_env_file(self, env: dict[str, str]) -> Path:
        self._env_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=self._env_dir, prefix="env-", suffix=".list")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in env.items())
        return Path(name)


CLIENT_ENVIRONMENT = frozenset({"PATH", "HOME", "TMPDIR"})
"""What the Docker CLI itself must keep from the platform's environment."""


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(one-line values for the env file, values with line breaks for `-e NAME`)."""
    one_line, multi_line = {}, {}
    for key, value in env.items():
        if "\n" in value or "\r" in value:
            if key in CLIENT_ENVIRONMENT or key.upper().startswith("DOCKER_"):
                raise RuntimeStartError(
                    f"environment variable {key} holds a line break; it must be one line"
                )
            multi_line[key] = value
        else:
            one_line[key] = value
    return one_line, multi_line


def confinement_arguments(limits: Limits, confinement: Confinement) -> list[str]:
    """Limits and confinement as `docker run`/`create` flags, the same for replicas and for a
    deployment's services. Memory-swap equals memory: no swap on top."""
    logs = confinement.logs
    return [
        "--cpus",
        f"{limits.cpus:g}",
        "--memory",
        str(limits.memory_bytes),
        "--memory-swap",
        str(limits.memory_swap_bytes),
        "--pids-limit",
        str(confinement.pids_limit),
        *(arg for cap in confinement.cap_drop for arg in ("--cap-drop", cap)),
        *(arg for cap in confinement.cap_add for arg in ("--cap-add", cap)),
        *(arg for opt in confinement.security_opts for arg in ("--security-opt", opt)),
        "--log-driver",
        logs.driver,
        "--log-opt",
        f"max-size={logs.max_size}",
        "--log-opt",
        f"max-file={logs.max_files}",
    ]


def label_arguments(labels: dict[str, str]) -> list[str]:
    return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]


def run_arguments(
    spec: ContainerSpec, env_file: Path, holder: str, *, inherited: list[str] | None = None
) -> list[str]:
    """`docker run` for one replica's app, its limits and confinement spelled out as flags.

    It joins its holder's network namespace (`holder_arguments`), which carries its address
    and extra hosts; nothing is published on the host.
    """
    return [
        "run",
        "--detach",
        "--init",
        "--name",
        spec.name,
        "--network",
        f"container:{holder}",
        "--restart",
        RESTART_POLICY_REPLICA,
        *confinement_arguments(spec.limits, spec.confinement),
        "--env-file",
        str(env_file),
        *(arg for key in inherited or [] for arg in ("--env", key)),
        *(
            arg
            for volume, path in spec.volumes.items()
            for arg in ("--mount", f"type=volume,source={volume},target={path}")
        ),
        *label_arguments({**spec.labels, HOLDER_LABEL: holder}),
        spec.image,
    ]


def holder_arguments(spec: ContainerSpec, name: str, image: str) -> list[str]:
    """`docker run` for the holder of a replica of `spec`'s deployment: on its network, with
    its extra hosts (a joined container shares them), confined like a replica and smaller.

    Labelled with the deployment only, so a spare made before its revision is known fits any
    of them; a holder stops at once (SIGKILL: it has nothing to finish)."""
    hosts = [arg for h, ip in spec.extra_hosts.items() for arg in ("--add-host", f"{h}:{ip}")]
    confinement = Confinement(
        pids_limit=HOLDER_PIDS_LIMIT,
        logs=spec.confinement.logs,
        cap_drop=("ALL",),
        security_opts=spec.confinement.security_opts,
    )
    return [
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        spec.network,
        "--restart",
        RESTART_POLICY_REPLICA,
        "--stop-signal",
        "KILL",
        "--read-only",
        "--user",
        HOLDER_USER,
        *confinement_arguments(HOLDER_LIMITS, confinement),
        *label_arguments({DEPLOYMENT_LABEL: spec.labels[DEPLOYMENT_LABEL]}),
        *hosts,
        image,
    ]


def service_arguments(spec: ServiceSpec) -> list[str]:
    """`docker create` for a backing service: limits and confinement as for replicas, restarted
    by the engine, and no `--publish`: only the deployment's own network reaches it."""
    entrypoint, *args = spec.command
    return [
        "create",
        "--init",
        "--name",
        spec.name,
        "--network",
        spec.network,
        "--restart",
        RESTART_POLICY_SERVICE,
        *confinement_arguments(spec.limits, spec.confinement),
        *label_arguments(spec.labels),
        # The entrypoint is the command itself: an image's own entrypoint script (the official
        # valkey image's drops privileges with setuid) cannot run without capabilities.
        "--entrypoint",
        entrypoint,
        spec.image,
        *args,
    ]


def files_tar(files: dict[str, str]) -> bytes:
    """A tar of the files (0600, owned by root) and their directories, for `docker cp -`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories = sorted(
            {str(parent) for path in files for parent in Path(path.lstrip("/")).parents} - {"."}
        )
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _no_such_network(exc: DockerException) -> bool:
    """Read from the engine's answer only: the command line itself names the network."""
    text = (exc.stderr if isinstance(exc.stderr, str) else str(exc)).lower()
    return "no such network" in text or ("network" in text and "not found" in text)


def _name_in_use(exc: DockerException) -> bool:
    return "is already in use" in str(exc)


TRANSIENT_START_FAILURES = (
    "cannot start a stopped process",
    "can't get final child's PID from pipe",
)
"""runc's process died while the engine started the container: each seen once in a full test
run (~150 replica starts, under load), with nothing wrong with the app. A start that fails for
the app's own reason (a missing command) fails the same way each time and is reported so."""


def _ids(spec: ContainerSpec) -> dict[str, str]:
    """The deployment and revision a log line is about, from the replica's labels."""
    return {
        key: spec.labels[label]
        for key, label in (("deployment_id", DEPLOYMENT_LABEL), ("revision_id", REVISION_LABEL))
        if label in spec.labels
    }


def _start_failed(exc: DockerException) -> bool:
    text = str(exc)
    return any(failure in text for failure in TRANSIENT_START_FAILURES)


def _holder_not_running(exc: DockerException) -> bool:
    """The app could not join its holder: it stopped, or went, since it was taken."""
    text = _stderr(exc).lower()
    return "non running container" in text or "no such container" in text


def _stderr(exc: DockerException) -> str:
    text = (exc.stderr or "").strip() if isinstance(exc.stderr, str) else ""
    return text.splitlines()[-1] if text else str(exc).strip().splitlines()[-1]
