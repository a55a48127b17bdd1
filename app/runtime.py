"""The container runtime on one Docker engine: start, watch and stop a revision's replicas.

Replicas run without an engine restart policy: one that exits is seen by the reconciler, which
takes it out of the route and starts a new one (with a backoff when it keeps dying), the same
way whatever the runtime.

Secrets reach the container through an env file readable only by us and deleted as soon as
`docker run` returns, so they never appear in an argument list, a process listing or a log.
Each deployment's replicas run on a bridge network of their own: user-defined bridges are
isolated from each other by the engine, while the host stays reachable (the database cluster on
the default bridge's gateway, and the router dialling the replica's port published on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import ipaddress
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException, NoSuchContainer
from python_on_whales.utils import run as docker_cli

from app.bridges import enable_quick_acks
from app.embedded import free_port
from app.errors import EngineError, RuntimeStartError
from app.ports import Endpoint, ReplicaStatus, StartedReplica
from manifests.containers import (
    DEFAULT_NETWORK_POOL,
    DEPLOYMENT_LABEL,
    NETWORK_SUBNET_PREFIX_LENGTH,
    REVISION_LABEL,
    Confinement,
    ContainerSpec,
    Limits,
    ServiceSpec,
    free_subnets,
)

LOCALHOST = "127.0.0.1"
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
"""A chosen host port can be taken between choosing and binding; that is retried."""
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
    ) -> None:
        self._docker = DockerClient(client_call=[docker_binary])
        self._env_dir = env_dir
        self._network_pool = network_pool or ipaddress.IPv4Network(DEFAULT_NETWORK_POOL)
        self._quick_acks = quick_acks

    def start(self, spec: ContainerSpec) -> StartedReplica:
        """Run the replica with its port published on a host port chosen here.

        Choosing the port (instead of letting the engine pick) saves an inspect on the push
        path and keeps the port when the engine restarts a crashed replica.
        """
        for volume in spec.volumes:
            self._ensure_volume(volume, spec.labels)
        one_line, multi_line = split_env(spec.env)
        env_file = self._write_env_file(one_line)
        try:
            for _attempt in range(START_ATTEMPTS):
                host_port = free_port()
                try:
                    container_id = self._run(spec, env_file, multi_line, host_port)
                    break
                except DockerException as exc:
                    if not _retryable(exc):
                        raise
                    # The name is held by an earlier attempt (a retried job, or a run whose
                    # port was taken in the meantime): clear it and try again.
                    with contextlib.suppress(DockerException):
                        self._docker.container.remove(spec.name, force=True)
            else:
                raise RuntimeStartError(
                    f"the container could not be started after {START_ATTEMPTS} attempts"
                )
        except DockerException as exc:
            raise RuntimeStartError(f"the container could not be started: {_stderr(exc)}") from exc
        finally:
            env_file.unlink(missing_ok=True)
        return StartedReplica(
            name=spec.name, ref=container_id, endpoint=Endpoint(LOCALHOST, host_port)
        )

    def _run(
        self, spec: ContainerSpec, env_file: Path, multi_line: dict[str, str], host_port: int
    ) -> str:
        argv = [
            *self._docker.client_config.docker_cmd,
            *run_arguments(spec, env_file, host_port, inherited=sorted(multi_line)),
        ]
        # `-e NAME` without a value makes the CLI pass its own NAME: the one way a value
        # with line breaks (a PEM key) reaches the container without appearing in argv.
        return str(docker_cli(argv, env=multi_line)).strip()

    def _ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Made with the deployment's label (`docker run` would make it unlabelled, and its
        teardown would not find it); creating an existing volume changes nothing."""
        deployment = {DEPLOYMENT_LABEL: labels[DEPLOYMENT_LABEL]}
        label_args = [arg for k, v in deployment.items() for arg in ("--label", f"{k}={v}")]
        try:
            self._cli("volume", "create", *label_args, name)
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
        label_args = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
        self._cli(
            "network", "create", "--driver", "bridge", "--subnet", str(subnet), *label_args, name
        )

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

    @contextlib.contextmanager
    def _network_lock(self) -> Iterator[None]:
        self._env_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self._env_dir / "networks.lock").open("w") as lock:
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

        Once per reconciler tick for the whole platform: a CLI call costs ~25 ms of CPU.
        """
        try:
            listed = self._cli(
                "ps",
                "--all",
                "--no-trunc",
                "--filter",
                f"label={REVISION_LABEL}",
                "--format",
                "{{.Names}}\t{{.State}}",
            )
        except DockerException as exc:
            raise EngineError(f"the Docker engine did not list replicas: {_stderr(exc)}") from exc
        found: dict[str, ReplicaStatus] = {}
        for line in listed.splitlines():
            name, _, state = line.partition("\t")
            if not name:
                continue
            if state.strip() in ("running", "restarting", "created"):
                found[name] = ReplicaStatus(running=True)  # `created`: `docker run` is at it
            else:
                found[name] = self.status(name)
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

    def remove(self, name_or_id: str) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove; safe to race.

        Two removers of one container (a teardown and a route switch retiring it) both end
        well: "no such container" and "removal already in progress" mean it is going.
        """
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
        behind raises: subnets of the pool are finite."""
        selector = {"label": f"{label}={value}"}
        try:
            for container in self._docker.container.list(all=True, filters=selector):
                self.remove(container.id)
            images = self._docker.image.list(filters=selector)
        except DockerException as exc:
            raise EngineError(
                f"the Docker engine did not remove {value}'s containers: {_stderr(exc)}"
            ) from exc
        for image in images:
            with contextlib.suppress(DockerException):
                self._docker.image.remove(image.id, force=True)
        try:
            networks = self._cli(
                "network", "ls", "--quiet", "--no-trunc", "--filter", f"label={label}={value}"
            ).split()
            for network in networks:
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


def run_arguments(
    spec: ContainerSpec, env_file: Path, host_port: int, *, inherited: list[str] | None = None
) -> list[str]:
    """`docker run` for one replica, its limits and confinement spelled out as flags.

    The port is published on loopback only, where the router dials it.
    """
    labels = [arg for k, v in spec.labels.items() for arg in ("--label", f"{k}={v}")]
    hosts = [arg for h, ip in spec.extra_hosts.items() for arg in ("--add-host", f"{h}:{ip}")]
    return [
        "run",
        "--detach",
        "--init",
        "--name",
        spec.name,
        "--network",
        spec.network,
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
        "--publish",
        f"{LOCALHOST}:{host_port}:{spec.port}",
        *labels,
        *hosts,
        spec.image,
    ]


def service_arguments(spec: ServiceSpec) -> list[str]:
    """`docker create` for a backing service: limits and confinement as for replicas, restarted
    by the engine, and no `--publish`: only the deployment's own network reaches it."""
    labels = [arg for k, v in spec.labels.items() for arg in ("--label", f"{k}={v}")]
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
        *labels,
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


def _retryable(exc: DockerException) -> bool:
    text = str(exc)
    return any(
        marker in text
        for marker in ("is already in use", "port is already allocated", "address already in use")
    )


def _stderr(exc: DockerException) -> str:
    text = (exc.stderr or "").strip() if isinstance(exc.stderr, str) else ""
    return text.splitlines()[-1] if text else str(exc).strip().splitlines()[-1]
