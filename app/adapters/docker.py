"""The container runtime on one Docker engine: start, watch and stop a revision's replicas.

Every container, network and volume goes through the Docker Engine API (the `docker` SDK),
as structured fields of a JSON body: nothing a repository, an image or a user controls becomes
part of an option string a command line would parse (a `--mount` value with a comma in it, an
env value with a line break), and user env never passes through the environment of a process
of the platform. Secrets travel in the request body over the engine's socket: never in an
argument list, a process listing, a file on the host or a log.

Replicas run without an engine restart policy: one that exits is seen by the reconciler, which
takes it out of the route and starts a new one (with a backoff when it keeps dying), the same
way whatever the runtime.

Each deployment's replicas run on a bridge network of their own: user-defined bridges are
isolated from each other by the engine, while the host and the replicas reach each other (the
database cluster on the default bridge's gateway; the router and the health probe dialling the
replica's address on its network, where nothing is published on the host).

A replica is two containers, as a Kubernetes pod is: a holder, which owns the network
namespace (the address, `/etc/hosts`) and only sleeps, and the app, which joins it. When the
app dies, its address still refuses connections at once, so the router sends a request that
met the dead app to another replica; without the holder the address would answer nothing, and
a request dialling it would wait out the dial timeout, then fail if a route reload came first
(5 of 980 requests when a replica was killed under load, docs/benchmarks/replicas.md). Each network
keeps spare holders ready, so a new replica waits only for its app's start.

The engine's refusals reach this module as kinds of EngineError (`builders.engine_errors`:
NoSuchContainer, NameTaken, SubnetTaken, ...): it catches them by name, and never reads the
engine's words or status codes itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import ipaddress
import logging
import secrets
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
from docker.types import IPAMConfig, IPAMPool, LogConfig, Mount

from app.adapters.bridges import enable_quick_acks
from app.adapters.docker_output import DockerOutputs
from app.kernel.ports import (
    REPLICA_EVENT_ACTIONS,
    Endpoint,
    KeepOutput,
    ReplicaEvent,
    ReplicaEvents,
    ReplicaStatus,
    StartedReplica,
)
from builders.engine_errors import (
    ENGINE_API_FAILURES,
    AlreadyRemoving,
    ContainerNotRunning,
    NameTaken,
    NoSuchContainer,
    NoSuchNetwork,
    NoSuchVolume,
    StartInterrupted,
    SubnetTaken,
    engine_api_error,
    failed,
    typed_api,
)
from builders.errors import EngineError
from builders.holder_image import holder_image as builders_holder_image
from manifests.containers import (
    CONTAINER_HOST_ALIAS,
    DEFAULT_HOLDER_RESERVE,
    DEFAULT_NETWORK_POOL,
    DEPLOYMENT_LABEL,
    HOLDER_LABEL,
    HOLDER_ROLE,
    HOLDER_SUFFIX,
    NETWORK_SUBNET_PREFIX_LENGTH,
    RESERVE_LABEL,
    REVISION_LABEL,
    ROLE_LABEL,
    WRITABLE_LAYER_LABEL,
    Confinement,
    ContainerSpec,
    Limits,
    ServiceSpec,
    free_subnets,
    holder_name,
    is_holder,
    reserve_holder_names,
    reserve_id,
    reserve_network,
)
from manifests.errors import RuntimeStartError

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Options = dict[str, Any]
"""Keyword arguments of the SDK's low-level `create_container`; its `host_config` as the keyword
arguments of `create_host_config` (which checks them against the engine's API version)."""
RESTART_POLICY_REPLICA = "no"
"""The reconciler, not the engine, replaces a replica that died (the engine does not restart
one stopped by `docker kill`, and would bring it back on a port the router no longer dials)."""
RESTART_POLICY_SERVICE = "unless-stopped"
"""A deployment's Redis comes back on its own after a crash (not after a `docker kill`, which
the engine counts as a manual stop)."""
STOP_TIMEOUT_SECONDS = 10
"""Grace period between SIGTERM and SIGKILL when a replica is stopped."""
ENGINE_TIMEOUT_SECONDS = 60
"""Per call to the engine (a stop adds its own grace period to it): an engine that hangs fails
the operation instead of a worker thread for ever."""
START_ATTEMPTS = 3
"""A name still held by an earlier attempt (a retried job), or a holder that stopped before
its app joined it, is cleared and tried again."""
HOLDER_LIMITS = Limits(cpus=0.1, memory_bytes=16 * 1024**2, max_replicas=1)
"""A holder only sleeps; it uses about 300 KB."""
HOLDER_PIDS_LIMIT = 4
HOLDER_USER = "65534:65534"
"""nobody: a holder needs no right at all."""
HOLDER_STOP_SIGNAL = "SIGKILL"
"""A holder has nothing to finish."""
RUNNING_STATES = frozenset({"running", "restarting", "created"})
"""What the engine says of a container that is (or is about to be) up: `created` while its
start is under way."""
HOLDER_GONE = "its network is gone (the container holding its address stopped)"
WRITABLE_LAYER_CHECK_SECONDS = 30.0
"""How often replicas' own filesystems are measured against their bound: the engine cannot
enforce one on overlay2 over ext4 (its `size` storage option needs xfs with project quotas),
and a listing with sizes costs more than the reconciler's every-tick listing."""
NETWORK_ATTEMPTS = 20
"""A free subnet can be taken between listing and creating (another platform on the engine, a
network made by hand), or still be held by the engine for a network just removed (it is no
longer listed): the next one is tried, never the refused one again. Each try costs a few
milliseconds."""


RESERVE_REMOVE_ATTEMPTS = 3
RESERVE_REMOVE_PAUSE_SECONDS = 0.5
RESERVE_ATTEMPTS = 3
RESERVE_RETRY_SECONDS = 1.0
"""A refill the engine refused is tried again this long after, a few times: else the reserve
stayed short until the next replica's start, which then ran a holder of its own (~250 ms
more). A likely cause of one wait for the spares that ran out in the integration tier (three
test workers making networks at once; its log did not say)."""


class DockerRuntime:
    def __init__(
        self,
        docker_binary: str,
        lock_dir: Path,
        network_pool: ipaddress.IPv4Network | None = None,
        quick_acks: Callable[[ipaddress.IPv4Network], bool] = enable_quick_acks,
        holder_image: Callable[[], str] | None = None,
        engine: docker.DockerClient | None = None,
        writable_layer_check_seconds: float = WRITABLE_LAYER_CHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        holder_reserve: int = DEFAULT_HOLDER_RESERVE,
        keep_output: KeepOutput | None = None,
    ) -> None:
        """`engine`: the Engine API client (from the environment, as the Docker CLI finds the
        engine, when not given); `docker_binary` only builds the holder's image;
        `holder_reserve`: spare holders the host keeps for any deployment's next replicas;
        `keep_output`: given each replica's output just before the replica is removed."""
        try:
            engine = engine or docker.from_env(timeout=ENGINE_TIMEOUT_SECONDS)
        except ENGINE_API_FAILURES as exc:
            raise engine_api_error(exc) from exc
        self._api = typed_api(engine.api)
        """Each call raises a kind of EngineError (`builders.engine_errors`), never the SDK's."""
        self._outputs = DockerOutputs(lambda: engine)
        self._keep_output = keep_output
        self._lock_dir = lock_dir
        self._network_pool = network_pool or ipaddress.IPv4Network(DEFAULT_NETWORK_POOL)
        self._quick_acks = quick_acks
        self._holder_image = holder_image or builders_holder_image(docker_binary).tag
        self._spares = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spare-holder")
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="holder-address")
        self._spares_lock = threading.Lock()
        self._reserve_coming = False
        self._reserve_again = False
        self._reserve = reserve_id(str(lock_dir.resolve()))
        self._reserve_names = reserve_holder_names(self._reserve, holder_reserve)
        self._writable_layer_check_seconds = writable_layer_check_seconds
        self._monotonic = monotonic
        self._writable_layers_checked: float | None = None
        self._over_bound: dict[str, str] = {}
        """Replicas stopped for writing past their bound, and why (until they are removed)."""

    def start(self, spec: ContainerSpec) -> StartedReplica:
        """Run the replica in a holder of its own; its endpoint is the holder's address.

        Nothing is published on the host: the router and the health probe dial the address on
        the deployment's network, so a request crosses one proxy (Caddy), not two (Caddy, then
        the engine's port relay: ~0.5 ms more at the median here).
        """
        for volume in spec.volumes:
            self._ensure_volume(volume, spec.labels)
        holder = holder_name(spec.name)
        try:
            self._take_holder(spec, holder)
            # Read beside the app's start (~40 ms less on the way to live).
            address = self._lookups.submit(self._address_of, holder, spec.network)
            for _attempt in range(START_ATTEMPTS):
                try:
                    container_id = self._run(replica_options(spec, holder))
                    break
                except (NoSuchContainer, ContainerNotRunning, StartInterrupted) as exc:
                    # A spare that stopped (or went) before it was taken, or a start that
                    # failed midway while joining it: a new holder, then again.
                    log.warning(
                        "replica start retried with a new holder",
                        extra={**_ids(spec), "replica": spec.name, "why": str(exc)},
                    )
                    self._force_remove(spec.name)
                    self._force_remove(holder)
                    self._run_holder(spec, holder)
                    address = self._lookups.submit(self._address_of, holder, spec.network)
                except NameTaken:
                    # The name is held by an earlier attempt (a retried job): clear it.
                    self._force_remove(spec.name)
            else:
                raise RuntimeStartError(
                    f"the container could not be started after {START_ATTEMPTS} attempts"
                )
            endpoint = Endpoint(address.result(), spec.port)
            # Only now: a spare made while the app starts competes with it for the engine
            # (the start took ~100 ms longer).
            self._replenish()
        except EngineError as exc:
            self._force_remove(holder)
            raise RuntimeStartError(f"the container could not be started: {exc}") from exc
        except RuntimeStartError:
            self._force_remove(holder)
            raise
        return StartedReplica(name=spec.name, ref=container_id, endpoint=endpoint)

    def _run(self, options: Options, files: bytes | None = None) -> str:
        """Create, place `files` (a tar for `/`), start; a container whose start failed is
        removed, so a retry finds its name free and nothing half-made stays behind."""
        host_config = self._api.create_host_config(**options["host_config"])
        created = self._api.create_container(**{**options, "host_config": host_config})
        container_id = str(created["Id"])
        try:
            if files is not None:
                self._api.put_archive(container_id, "/", files)
            self._api.start(container_id)
        except EngineError:
            self._force_remove(container_id)
            raise
        return container_id

    # -- holders ------------------------------------------------------------------------------
    def _take_holder(self, spec: ContainerSpec, holder: str) -> None:
        """A spare of the host's reserve becomes the replica's holder, joined to the
        deployment's network; without one left, a holder is run on it.

        Taken under the reserve's lock (this host's workers share it; held for a rename, a few
        milliseconds): a rename is not a take on its own. The engine resolves the old name
        before it waits for the container, so of two starts renaming one spare at once both
        succeeded, the second renaming the first's holder away under it (seen in bursts: two
        replicas at one address, a third whose holder was gone).
        """
        taken = False
        with self._lock("reserve"):
            for spare in self._reserve_names:
                for _attempt in range(START_ATTEMPTS):
                    try:
                        self._api.rename(spare, holder)
                        taken = True
                        break
                    except NameTaken:
                        self._force_remove(holder)  # left by an earlier attempt (a retried job)
                    except EngineError:
                        break  # taken by another start, or not made yet: the next one
                if taken:
                    break
        if not taken:
            self._run_holder(spec, holder)
            return
        try:
            # ~85 ms for both, against ~250 ms for a new holder's start.
            self._api.connect_container_to_network(holder, spec.network)
            self._api.disconnect_container_from_network(holder, reserve_network(self._reserve).name)
        except EngineError as exc:
            log.warning(
                "reserve holder not joined to its network: a new one is run",
                extra={**_ids(spec), "holder": holder, "why": str(exc)},
            )
            self._force_remove(holder)
            self._run_holder(spec, holder)

    def _run_holder(self, spec: ContainerSpec, name: str) -> None:
        for _attempt in range(START_ATTEMPTS):
            try:
                self._run(holder_options(spec, name, self._holder_image()))
                return
            except StartInterrupted as exc:
                log.warning(
                    "replica holder start retried",
                    extra={**_ids(spec), "holder": name, "why": str(exc)},
                )
                self._force_remove(name)
            except NameTaken:
                self._force_remove(name)  # left by an earlier attempt (a retried job)
        raise RuntimeStartError(
            f"the replica's holder could not be started after {START_ATTEMPTS} attempts"
        )

    def _replenish(self) -> None:
        """The host's reserve made up again. One refill at a time per process: asked while one
        runs, that one looks again once it is done, since it may have looked before the
        spares this start found stopped (or took) were gone."""
        if not self._reserve_names:
            return
        with self._spares_lock:
            if self._reserve_coming:
                self._reserve_again = True
                return
            self._reserve_coming = True
        self._spares.submit(self._make_reserve)

    def _make_reserve(self) -> None:
        try:
            while True:
                for attempt in range(1, RESERVE_ATTEMPTS + 1):
                    if self._make_reserve_once() or attempt == RESERVE_ATTEMPTS:
                        break
                    time.sleep(RESERVE_RETRY_SECONDS)  # in the reserve's own thread
                with self._spares_lock:
                    if not self._reserve_again:
                        self._reserve_coming = False
                        return
                    self._reserve_again = False
        except BaseException:
            with self._spares_lock:
                self._reserve_coming = False
            raise

    def _make_reserve_once(self) -> bool:
        """The reserve's missing or stopped spares made, on the reserve's own network; False
        when the engine refused something (the next attempt looks again)."""
        network = reserve_network(self._reserve)
        try:
            with self._lock("reserve-making"):
                self.ensure_network(network.name, network.labels)
                states = {
                    name: state
                    for name in self._reserve_names
                    if (state := self._container_state(name)) is not None
                }
                for name in self._reserve_names:
                    if states.get(name) == "running":
                        continue
                    if name in states:  # stopped (killed, or the engine restarted): made anew
                        self._force_remove(name)
                    self._publish_spare(name)
        except EngineError as exc:
            # Another worker made one (the name is taken), or the engine refused (a subnet
            # taken meanwhile by another network's creation): looked at again.
            log.info("spare holder not made", extra={"why": str(exc)})
            return False
        except Exception:
            log.exception("spare holder not made")
            return False
        return True

    def _publish_spare(self, name: str) -> None:
        """Made and started under a name of its own, then renamed into place: a start takes a
        spare by its name, so it only ever finds a running one. (Made under its final name, a
        spare could be taken between its creation and its start.)"""
        making = f"{name.removesuffix(HOLDER_SUFFIX)}-new{secrets.token_hex(4)}{HOLDER_SUFFIX}"
        options = reserve_holder_options(self._reserve, making, self._holder_image())
        container_id = self._run(options)
        try:
            self._api.rename(container_id, name)
        except EngineError:
            self._force_remove(container_id)
            raise

    def remove_reserve(self) -> None:
        """The host's spare holders and their network gone (a platform that leaves for good,
        or a test); the next start makes them again."""
        selector = {"label": f"{RESERVE_LABEL}={self._reserve}"}
        with self._lock("reserve-making"):
            for container in self._api.containers(all=True, filters=selector):
                self._force_remove(str(container["Id"]))
            for network in self._api.networks(filters=selector):
                self._remove_reserve_network(str(network["Id"]))

    def _remove_reserve_network(self, network: str) -> None:
        """What is still on it goes first, a few times over: a platform stopped just before
        (a bench's end) may have had a spare's creation in flight, which the engine completes
        after the containers were listed, and the network then has active endpoints. A taken
        spare left the reserve's network when it joined its deployment's, so only spares are
        on it.

        Docker 20.10 can also keep an endpoint of a container that no longer exists (a spare
        whose creation was cut short): the network then shows no container yet refuses to go
        until `docker network disconnect -f` of a name nobody knows, or dockerd's restart. It
        is left, with a warning; it holds a subnet of the pool and nothing else."""
        for attempt in range(RESERVE_REMOVE_ATTEMPTS):
            self._remove_attached(network)
            try:
                self._remove_network(network)
                return
            except EngineError as exc:
                if attempt < RESERVE_REMOVE_ATTEMPTS - 1:
                    time.sleep(RESERVE_REMOVE_PAUSE_SECONDS)
                    continue
                with contextlib.suppress(NoSuchNetwork):
                    if not self._api.inspect_network(network).get("Containers"):
                        log.warning(
                            "the reserve's network is left: the engine holds an endpoint of "
                            "a container that is gone (docker network prune after a dockerd "
                            "restart removes it)",
                            extra={"network": network, "why": str(exc)},
                        )
                        return
                raise

    def _address_of(self, holder: str, network: str) -> str:
        """The holder's IPv4 address on the deployment's network."""
        networks = self._api.inspect_container(holder)["NetworkSettings"]["Networks"] or {}
        address = str((networks.get(network) or {}).get("IPAddress") or "")
        if not address:
            raise RuntimeStartError(
                f"the replica has no address on the deployment's network {network} (was the "
                "network removed meanwhile?)"
            )
        return address

    def _force_remove(self, name: str) -> None:
        with contextlib.suppress(EngineError):
            self._api.remove_container(name, force=True, v=True)

    def _ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Made with the deployment's label (a container's start would make it unlabelled, and
        its teardown would not find it); creating an existing volume changes nothing."""
        try:
            self._api.create_volume(name, labels={DEPLOYMENT_LABEL: labels[DEPLOYMENT_LABEL]})
        except EngineError as exc:
            raise RuntimeStartError(f"the deployment's volume could not be created: {exc}") from exc

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """Create the deployment's network unless it exists (every start asks), and have the
        host acknowledge at once on its route (`app.adapters.bridges`; kept by a network made
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
                refused: list[IPNetwork] = []
                for _attempt in range(NETWORK_ATTEMPTS):
                    in_use = [*self._subnets_in_use(), *refused]
                    subnet = next(free_subnets(self._network_pool, in_use), None)
                    if subnet is None:
                        raise RuntimeStartError(
                            f"no free /{NETWORK_SUBNET_PREFIX_LENGTH} subnet is left in "
                            f"{self._network_pool} for the deployment's network (widen "
                            "SLIPWAY_CONTAINER_NETWORK_POOL, or remove deployments)"
                        )
                    try:
                        self._api.create_network(
                            name,
                            driver="bridge",
                            ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet))]),
                            labels=labels,
                            check_duplicate=True,
                        )
                        return [subnet]
                    except NameTaken:  # made by another platform's worker meanwhile
                        return self._network_subnets(name) or []
                    except SubnetTaken:
                        refused.append(subnet)  # still held (a network going), or just taken
        except EngineError as exc:
            raise RuntimeStartError(
                f"the deployment's network could not be created: {exc}"
            ) from exc
        raise RuntimeStartError(
            f"the deployment's network could not be created after {NETWORK_ATTEMPTS} attempts: "
            f"every free subnet of {self._network_pool} was taken meanwhile"
        )

    def ensure_service(self, spec: ServiceSpec) -> bool:
        """Have the deployment's backing service running; True when it was (re)created.

        A running one is kept (its clients stay connected across revisions); a stopped or
        exited one is replaced. Its files (the Redis config, with the password) are placed
        from memory between its creation and its start: never in an argument, a file on the
        host or `docker inspect`. Serialised with network creation, so two revisions starting
        at once make one container.
        """
        try:
            with self._network_lock():
                state = self._container_state(spec.name)
                if state == "running":
                    return False
                if state is not None:
                    self._api.remove_container(spec.name, force=True)
                self._run(service_options(spec), files=files_tar(spec.files))
        except EngineError as exc:
            raise RuntimeStartError(
                f"the deployment's {spec.name} could not be started: {exc}"
            ) from exc
        return True

    def _container_state(self, name: str) -> str | None:
        """The engine's word for the container's state (running, exited, ...), None if none."""
        try:
            return str(self._api.inspect_container(name)["State"]["Status"])
        except NoSuchContainer:
            return None

    def _network_subnets(self, name: str) -> list[IPNetwork] | None:
        """The existing network's subnets (none for one made by hand without IPAM); None when
        there is no such network."""
        try:
            found = self._api.inspect_network(name)
        except NoSuchNetwork:
            return None
        return _subnets(found)

    def _subnets_in_use(self) -> list[IPNetwork]:
        """Every network's subnets, in one answer (the list carries each network's IPAM)."""
        return [subnet for network in self._api.networks() for subnet in _subnets(network)]

    def _network_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while a subnet is chosen or a deployment's service is (re)made."""
        return self._lock("networks")

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """Shared by this platform's workers on this host (the engine is this host's)."""
        self._lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self._lock_dir / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def status(self, ref: str) -> ReplicaStatus:
        try:
            state = self._api.inspect_container(ref)["State"]
        except NoSuchContainer:
            return ReplicaStatus(running=False)
        except EngineError as exc:
            raise failed(f"the Docker engine did not inspect {ref}", exc) from exc
        running = bool(state.get("Running"))
        return ReplicaStatus(
            running=running,
            exit_code=None if running else int(state.get("ExitCode") or 0),
            oom_killed=bool(state.get("OOMKilled")),
        )

    def engine_stats(self, ref: str) -> dict[str, Any]:
        """The engine's one-shot stats of a container (`container_usage` asks for it where the
        kernel's cgroup files are out of this process's sight)."""
        return dict(self._api.stats(ref, stream=False, one_shot=True))

    def statuses(self) -> dict[str, ReplicaStatus]:
        """Two listings for every replica on the engine (apps, holders); exited ones are
        inspected for why.

        For the whole platform, when the reconciler looks (after an engine event, and at each
        resync). A replica whose holder is gone is dead too: its app has no network left.
        """
        try:
            listed = self._api.containers(all=True, filters={"label": DEPLOYMENT_LABEL})
            # Holders taken from the host's reserve carry no deployment label: every holder
            # carries its image's role.
            holders = self._api.containers(
                all=True, filters={"label": f"{ROLE_LABEL}={HOLDER_ROLE}"}
            )
        except EngineError as exc:
            raise failed("the Docker engine did not list replicas", exc) from exc
        self._check_writable_layers()
        states: dict[str, str] = {_name(c): str(c.get("State") or "") for c in holders}
        replicas: dict[str, str] = {}
        for container in listed:
            name = _name(container)
            labels = container.get("Labels") or {}
            states[name] = str(container.get("State") or "")
            if labels.get(REVISION_LABEL):
                replicas[name] = str(labels.get(HOLDER_LABEL) or "")
        found: dict[str, ReplicaStatus] = {}
        self._over_bound = {n: why for n, why in self._over_bound.items() if n in replicas}
        for name, holder in replicas.items():
            if name in self._over_bound:
                found[name] = ReplicaStatus(running=False, detail=self._over_bound[name])
            elif states[name] not in RUNNING_STATES:
                found[name] = self.status(name)
            elif holder and states.get(holder) not in RUNNING_STATES:
                found[name] = ReplicaStatus(running=False, detail=HOLDER_GONE)
            else:
                found[name] = ReplicaStatus(running=True)
        return found

    def _check_writable_layers(self) -> None:
        """Replicas that wrote past their bound are killed; the next listing reports them dead
        with why, and the reconciler replaces them (a new replica starts with an empty layer).

        One listing with sizes at most every WRITABLE_LAYER_CHECK_SECONDS; a failed one is
        tried again at the next.
        """
        now = self._monotonic()
        last = self._writable_layers_checked
        if last is not None and now - last < self._writable_layer_check_seconds:
            return
        self._writable_layers_checked = now
        try:
            listed = self._api.containers(
                filters={"label": WRITABLE_LAYER_LABEL, "status": "running"}, size=True
            )
        except EngineError as exc:
            log.warning("writable layers not measured", extra={"why": str(exc)})
            return
        for container in listed:
            labels = container.get("Labels") or {}
            try:
                bound = int(labels[WRITABLE_LAYER_LABEL])
            except (KeyError, ValueError):
                continue
            used = int(container.get("SizeRw") or 0)
            if used <= bound:
                continue
            name = _name(container)
            self._over_bound[name] = (
                f"it wrote {_mib(used)} to its own filesystem, over the bound of {_mib(bound)} "
                "(keep data in the deployment's database or volume); it was stopped"
            )
            log.warning(
                "replica over its writable-layer bound: killed",
                extra={
                    "deployment_id": labels.get(DEPLOYMENT_LABEL),
                    "revision_id": labels.get(REVISION_LABEL),
                    "replica": name,
                    "bytes": used,
                    "bound": bound,
                },
            )
            with contextlib.suppress(EngineError):
                self._api.kill(container["Id"])

    def remove_image(self, tag: str) -> None:
        """Best effort: an image still used by a container, or already gone, is left alone."""
        with contextlib.suppress(EngineError):
            self._api.remove_image(tag)

    def logs_tail(self, ref: str, lines: int = 30) -> str:
        try:
            raw = self._api.logs(ref, stdout=True, stderr=True, tail=lines)
        except EngineError:
            return ""
        return bytes(raw).decode("utf-8", errors="replace")

    def remove(self, name: str) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove, then its holder;
        safe to race.

        Two removers of one container (a teardown and a route switch retiring it) both end
        well: "no such container" and "removal already in progress" mean it is going.
        """
        if is_holder(name):
            self._remove_container(name)
            return
        self._remove_container(name, copy_output=True)
        self._remove_container(holder_name(name))

    def _remove_container(self, name_or_id: str, *, copy_output: bool = False) -> None:
        """`copy_output`: what the replica wrote, up to its last line (it is stopped first),
        is handed to `keep_output` before the engine drops it with the container."""
        try:
            self._api.stop(name_or_id, timeout=STOP_TIMEOUT_SECONDS)
        except NoSuchContainer:
            return
        except EngineError:
            pass  # stopped already, or it would not stop: the removal kills it
        if copy_output:
            self._copy_output(name_or_id)
        try:
            self._api.remove_container(name_or_id, force=True, v=True)
        except (NoSuchContainer, AlreadyRemoving):
            return
        except EngineError as exc:
            raise failed(f"the Docker engine did not remove {name_or_id}", exc) from exc

    def _copy_output(self, name: str) -> None:
        """Best effort: a replica whose output cannot be read or kept is removed all the same
        (a full disk must not keep dead replicas around)."""
        if self._keep_output is None:
            return
        try:
            lines = self._outputs.of_replica(name)
            if lines:
                self._keep_output(lines)
        except Exception as exc:
            log.warning("replica output not kept", extra={"replica": name, "why": repr(exc)})

    def remove_labelled(self, label: str, value: str) -> None:
        """Containers first (an image in use cannot go, nor a network with containers on it),
        then images, then networks, then volumes (the app's state: gone with it); found by
        label, so what a crashed worker started without recording it goes too. A network left
        behind raises: subnets of the pool are finite.

        Each network goes under its lock, after a last look for containers: a spare holder
        being made meanwhile is either found there or fails for want of the network.
        """
        selector = {"label": f"{label}={value}"}
        self._remove_containers(selector, value)
        try:
            images = self._api.images(filters=selector, quiet=True)
        except EngineError as exc:
            raise failed(f"the Docker engine did not remove {value}'s images", exc) from exc
        for image in images:
            with contextlib.suppress(EngineError):
                self._api.remove_image(image, force=True)
        try:
            networks = self._api.networks(filters=selector)
        except EngineError as exc:
            raise failed(f"the Docker engine did not remove {value}'s network", exc) from exc
        for network in networks:
            with self._lock(f"network-{network['Name']}"):
                self._remove_containers(selector, value)
                try:
                    # A holder taken from the reserve carries no deployment label: one whose
                    # replica never started (a worker died in between) is found on the network.
                    self._remove_attached(str(network["Id"]))
                    self._remove_network(str(network["Id"]))
                except EngineError as exc:
                    raise failed(
                        f"the Docker engine did not remove {value}'s network", exc
                    ) from exc
        try:
            for volume in self._api.volumes(filters=selector).get("Volumes") or []:
                with contextlib.suppress(NoSuchVolume):
                    self._api.remove_volume(volume["Name"], force=True)
        except EngineError as exc:
            raise failed(f"the Docker engine did not remove {value}'s volume", exc) from exc

    def _remove_containers(self, selector: dict[str, str], value: str) -> None:
        """Every container carrying the label; a refusal names the one refused (`remove`)."""
        try:
            names = self._labelled_containers(selector)
        except EngineError as exc:
            raise failed(f"the Docker engine did not remove {value}'s containers", exc) from exc
        for name in names:
            self.remove(name)

    def _labelled_containers(self, selector: dict[str, str]) -> list[str]:
        """Names, holders last: an app still draining keeps its network until it stops."""
        names = [_name(c) for c in self._api.containers(all=True, filters=selector)]
        return sorted(names, key=is_holder)

    def _remove_attached(self, network: str) -> None:
        with contextlib.suppress(NoSuchNetwork):
            attached = self._api.inspect_network(network).get("Containers") or {}
            for container_id in attached:
                self._force_remove(container_id)

    def _remove_network(self, network: str) -> None:
        """Safe to race: a network another remover took first is gone, which is the aim."""
        with contextlib.suppress(NoSuchNetwork):
            self._api.remove_network(network)

    def replica_events(self) -> ReplicaEvents:
        """The engine's `/events` for containers carrying the deployment label (replicas, their
        holders and services), from now on; the deployment is read off the event's labels.

        One streamed request, without the client's per-call timeout: an idle platform's stream
        stays silent for hours. Whatever drops the connection ends the iteration, and the
        caller resyncs (events sent meanwhile are lost).
        """
        try:
            stream = self._api.events(
                decode=True,
                filters={
                    "type": "container",
                    "label": DEPLOYMENT_LABEL,
                    "event": list(REPLICA_EVENT_ACTIONS),
                },
            )
        except EngineError as exc:
            raise failed("the Docker engine did not stream events", exc) from exc

        def events() -> Iterator[ReplicaEvent]:
            try:
                for raw in stream:
                    attributes = (raw.get("Actor") or {}).get("Attributes") or {}
                    deployment_id = attributes.get(DEPLOYMENT_LABEL)
                    if not deployment_id:
                        continue
                    yield ReplicaEvent(
                        deployment_id=str(deployment_id),
                        # "health_status: healthy" is a health_status
                        action=str(raw.get("Action") or raw.get("status") or "").split(":")[0],
                        name=str(attributes.get("name") or ""),
                    )
            except ENGINE_API_FAILURES as exc:  # read from the SDK's stream, not typed yet
                raise failed("the Docker engine's events stopped", engine_api_error(exc)) from exc
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

        def close() -> None:
            with contextlib.suppress(Exception):  # already closed, or closing under a reader
                stream.close()

        return ReplicaEvents(events=events(), close=close)


def confinement_options(limits: Limits, confinement: Confinement) -> Options:
    """Limits and confinement as host-config fields, the same for replicas and for a
    deployment's services. Memory-swap equals memory: no swap on top."""
    logs = confinement.logs
    return {
        "nano_cpus": round(limits.cpus * 1e9),
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_swap_bytes,
        "pids_limit": confinement.pids_limit,
        "cap_drop": list(confinement.cap_drop),
        "cap_add": list(confinement.cap_add),
        "security_opt": list(confinement.security_opts),
        "log_config": LogConfig(
            type=logs.driver,
            config={"max-size": logs.max_size, "max-file": str(logs.max_files)},
        ),
    }


def replica_options(spec: ContainerSpec, holder: str) -> Options:
    """The create call for one replica's app: its limits and confinement as host-config
    fields, its env and labels as maps, each volume as a mount whose target is one field.

    It joins its holder's network namespace (`holder_options`), which carries its address and
    extra hosts; nothing is published on the host.
    """
    host_config = dict(
        network_mode=f"container:{holder}",
        restart_policy={"Name": RESTART_POLICY_REPLICA},
        init=True,
        mounts=[
            Mount(target=path, source=volume, type="volume")
            for volume, path in spec.volumes.items()
        ],
        **confinement_options(spec.limits, spec.confinement),
    )
    return {
        "image": spec.image,
        "name": spec.name,
        "environment": dict(spec.env),
        "labels": {**spec.labels, HOLDER_LABEL: holder, **_bound_label(spec.confinement)},
        "host_config": host_config,
        "use_config_proxy": False,
    }


def holder_options(spec: ContainerSpec, name: str, image: str) -> Options:
    """The create call for a holder made for one replica of `spec`'s deployment (when the
    host's reserve has none left): on its network, with its extra hosts (a joined container
    shares them), confined like a replica and smaller; a holder stops at once (SIGKILL: it
    has nothing to finish)."""
    return _holder(
        name,
        image,
        network=spec.network,
        labels={DEPLOYMENT_LABEL: spec.labels[DEPLOYMENT_LABEL]},
        extra_hosts=spec.extra_hosts,
        confinement=spec.confinement,
    )


def reserve_holder_options(platform: str, name: str, image: str) -> Options:
    """The create call for a spare of the host's reserve: on the reserve's network, with the
    extra hosts every replica gets, labelled with the platform (no deployment yet)."""
    return _holder(
        name,
        image,
        network=reserve_network(platform).name,
        labels={RESERVE_LABEL: platform},
        extra_hosts={CONTAINER_HOST_ALIAS: "host-gateway"},
        confinement=Confinement(),
    )


def _holder(
    name: str,
    image: str,
    *,
    network: str,
    labels: dict[str, str],
    extra_hosts: dict[str, str],
    confinement: Confinement,
) -> Options:
    confined = Confinement(
        pids_limit=HOLDER_PIDS_LIMIT,
        logs=confinement.logs,
        cap_drop=("ALL",),
        security_opts=confinement.security_opts,
    )
    host_config = dict(
        network_mode=network,
        restart_policy={"Name": RESTART_POLICY_REPLICA},
        read_only=True,
        extra_hosts=dict(extra_hosts),
        **confinement_options(HOLDER_LIMITS, confined),
    )
    return {
        "image": image,
        "name": name,
        "user": HOLDER_USER,
        "stop_signal": HOLDER_STOP_SIGNAL,
        "labels": labels,
        "host_config": host_config,
        "use_config_proxy": False,
    }


def service_options(spec: ServiceSpec) -> Options:
    """The create call for a backing service: limits and confinement as for replicas,
    restarted by the engine, and nothing published: only the deployment's own network reaches
    it."""
    entrypoint, *args = spec.command
    host_config = dict(
        network_mode=spec.network,
        restart_policy={"Name": RESTART_POLICY_SERVICE},
        init=True,
        **confinement_options(spec.limits, spec.confinement),
    )
    return {
        "image": spec.image,
        "name": spec.name,
        # The entrypoint is the command itself: an image's own entrypoint script (the official
        # valkey image's drops privileges with setuid) cannot run without capabilities.
        "entrypoint": [entrypoint],
        "command": args,
        "labels": dict(spec.labels),
        "host_config": host_config,
        "use_config_proxy": False,
    }


def files_tar(files: dict[str, str]) -> bytes:
    """A tar of the files (0600, owned by root) and their directories, to place at `/`."""
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


def _bound_label(confinement: Confinement) -> dict[str, str]:
    bound = confinement.writable_layer_bytes
    return {WRITABLE_LAYER_LABEL: str(bound)} if bound is not None else {}


def _mib(size: int) -> str:
    return f"{size / 1024**2:.0f} MB"


def _subnets(network: dict[str, Any]) -> list[IPNetwork]:
    configs = (network.get("IPAM") or {}).get("Config") or []
    return [
        ipaddress.ip_network(config["Subnet"], strict=False)
        for config in configs
        if config.get("Subnet")
    ]


def _name(container: dict[str, Any]) -> str:
    """A listed container's name (the engine lists it with a leading slash)."""
    names = container.get("Names") or [""]
    return str(names[0]).lstrip("/")


def _ids(spec: ContainerSpec) -> dict[str, str]:
    """The deployment and revision a log line is about, from the replica's labels."""
    return {
        key: spec.labels[label]
        for key, label in (("deployment_id", DEPLOYMENT_LABEL), ("revision_id", REVISION_LABEL))
        if label in spec.labels
    }
