"""Container specs: what the runtime starts for a revision, with the deployment type's limits.

Pure data and pure functions: the pipeline decides here what a replica is allowed, and the
runtime only translates it into engine flags.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from manifests.errors import RuntimeStartError
from manifests.paths import SAFE_CHARACTERS, is_clean_absolute

LABEL_PREFIX = "dev.slipway"
"""Docker labels on every image, container and network Slipway makes, so they can be found and
cleaned up even when the control plane never recorded them."""
DEPLOYMENT_LABEL = f"{LABEL_PREFIX}.deployment"
REVISION_LABEL = f"{LABEL_PREFIX}.revision"
ROLE_LABEL = f"{LABEL_PREFIX}.role"
"""On a container that is not an app: what it does (`holder`)."""
HOLDER_ROLE = "holder"
WRITABLE_LAYER_LABEL = f"{LABEL_PREFIX}.writable-layer-bytes"
"""On a replica's container: the most its own filesystem (the writable layer) may grow to."""
HOLDER_LABEL = f"{LABEL_PREFIX}.holder"
"""On a replica's container: the name of the container holding its network namespace."""
HOLDER_SUFFIX = "-holder"
CONTAINER_HOST_ALIAS = "host.docker.internal"
"""How a replica names the host (the database cluster listens there): mapped to the engine's
`host-gateway`, the default bridge's address, which every bridge network still reaches."""
NETWORK_PREFIX = "slipway-net-"
NETWORK_SUBNET_PREFIX_LENGTH = 27
"""Each deployment network gets a /27 (29 addresses for replicas): more than a production
deployment's most replicas twice over, as old and new replicas overlap at a route switch, and
small enough that a /16 pool holds 2048 deployments."""
DEFAULT_NETWORK_POOL = "172.16.0.0/16"
"""Inside 172.16.0.0/12, the range the embedded cluster admits, and never handed out by Docker's
own default pools (172.17-172.31 and 192.168), so it does not meet networks Docker makes."""


class DeploymentType(enum.StrEnum):
    """What a deployment is for; it decides each replica's limits and how far it scales."""

    development = "development"
    production = "production"


@dataclass(frozen=True)
class Limits:
    cpus: float
    memory_bytes: int
    max_replicas: int

    @property
    def memory_swap_bytes(self) -> int:
        """Memory plus swap, equal to memory: a replica over its limit is OOM-killed and seen
        as such, instead of swapping the host to a crawl."""
        return self.memory_bytes


GIB = 1024**3

LIMITS: dict[DeploymentType, Limits] = {
    DeploymentType.development: Limits(cpus=1.0, memory_bytes=1 * GIB, max_replicas=1),
    DeploymentType.production: Limits(cpus=2.0, memory_bytes=2 * GIB, max_replicas=10),
}
"""The deployment types users choose from (as LangGraph Cloud offers them)."""


@dataclass(frozen=True)
class LogRotation:
    """The engine keeps at most `max_files` files of `max_size` each per replica, so a chatty app
    cannot fill the host's disk with its output."""

    max_size: str = "10m"
    """A Docker size: digits with an optional k, m or g."""
    max_files: int = 3
    driver: str = "json-file"
    """Named, not left to the engine's default: the rotation options belong to this driver, and
    `docker logs` (the log tail in a failed check run) reads it."""


@dataclass(frozen=True)
class Confinement:
    """What every replica is denied, whatever its type: apps run code from any pull request.

    No capabilities (so no raw sockets, no chown of others' files, no binding below 1024), no
    gaining privileges through setuid binaries, a bounded number of processes (a fork bomb stops
    at its own container), and rotated logs.
    """

    pids_limit: int = 1024
    logs: LogRotation = field(default_factory=LogRotation)
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    """Empty: no app seen so far needs one back."""
    security_opts: tuple[str, ...] = ("no-new-privileges",)
    writable_layer_bytes: int | None = 2 * 1024**3
    """The most a replica may write to its own filesystem (not its volume, not its database):
    one that fills the host's disk would stop every other deployment. None: unbounded."""


@dataclass(frozen=True)
class NetworkSpec:
    """A deployment's own bridge network: its replicas reach each other, the host (database,
    router) and nothing of another deployment."""

    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    port: int
    """Port the app listens on inside the container; dialled at the replica's address."""
    limits: Limits
    env: dict[str, str] = field(repr=False)
    """Includes secrets (DATABASE_URI, user env): never logged, hence repr=False."""
    network: str
    """The deployment's network (see `deployment_network`); it must exist before the start."""
    labels: dict[str, str] = field(default_factory=dict)
    extra_hosts: dict[str, str] = field(default_factory=dict)
    confinement: Confinement = field(default_factory=Confinement)
    volumes: dict[str, str] = field(default_factory=dict)
    """The deployment's volumes (name → path in the container), made on first use with the
    deployment's label, so its teardown removes them."""


def clean_state_dir(path: str) -> str:
    """The state directory as a clean absolute path of safe characters, or refused.

    It is a mount target: even as a structured field, a path with a comma, a space or `..` in
    it is never what a recipe meant, so it is refused rather than interpreted.
    """
    if not is_clean_absolute(path):
        raise RuntimeStartError(
            f"the state directory {path!r} is not a clean absolute path ({SAFE_CHARACTERS}): "
            "refused"
        )
    return path


def holder_name(replica: str) -> str:
    """The container keeping the replica's address (see `app.adapters.docker`), found by its
    name."""
    return f"{replica}{HOLDER_SUFFIX}"


RESERVE_LABEL = f"{LABEL_PREFIX}.reserve"
"""On a spare holder of the host's reserve and on its network: the platform it belongs to."""
DEFAULT_HOLDER_RESERVE = 3
"""A burst from one replica to four (35 requests in flight at 10 each) takes three at once."""


def reserve_id(lock_dir: str) -> str:
    """Which platform a reserve belongs to (two platforms may share an engine): a digest of
    its lock directory, which is its own DATA_DIR's."""
    return hashlib.sha256(lock_dir.encode()).hexdigest()[:10]


def reserve_network(platform: str) -> NetworkSpec:
    """Where the host's spare holders wait, on no deployment's network: a spare joins its
    deployment's network when a replica takes it."""
    return NetworkSpec(name=f"slipway-reserve-{platform}", labels={RESERVE_LABEL: platform})


def reserve_holder_names(platform: str, count: int) -> list[str]:
    """The spare holders the host keeps ready for any deployment's next replicas (not per
    deployment: at 100 idle deployments, 300 idle containers and their shims once), so that a
    replica's start waits for a network connection (~85 ms) rather than a holder's start."""
    return [f"slipway-reserve-{platform}-{index}{HOLDER_SUFFIX}" for index in range(count)]


def is_holder(name: str) -> bool:
    return name.endswith(HOLDER_SUFFIX)


def deployment_volume(deployment_id: str) -> str:
    """The one volume of a deployment: its app's state (the inmem runtime's files)."""
    return f"slipway-state-{deployment_id}"


def deployment_network(deployment_id: str) -> NetworkSpec:
    """Named after the deployment, so every start finds the same one and a teardown finds it by
    label even after a crash."""
    return NetworkSpec(
        name=f"{NETWORK_PREFIX}{deployment_id}", labels={DEPLOYMENT_LABEL: deployment_id}
    )


def replica_spec(
    *,
    deployment_id: str,
    revision_id: str,
    name: str,
    image: str,
    port: int,
    limits: Limits,
    env: dict[str, str],
    confinement: Confinement,
    state_dir: str | None = None,
) -> ContainerSpec:
    """The one way a replica is specified, so no start path forgets its network or confinement.

    `state_dir`: a directory of the image kept on the deployment's volume (see
    deployment_volume), the same for every replica and revision.
    """
    return ContainerSpec(
        name=name,
        image=image,
        port=port,
        limits=limits,
        env=env,
        network=deployment_network(deployment_id).name,
        labels={DEPLOYMENT_LABEL: deployment_id, REVISION_LABEL: revision_id},
        extra_hosts={CONTAINER_HOST_ALIAS: "host-gateway"},
        confinement=confinement,
        volumes={deployment_volume(deployment_id): clean_state_dir(state_dir)} if state_dir else {},
    )


def replica_name(slug: str, revision_number: int, replica_id: str) -> str:
    """Readable in `docker ps` (which deployment, which revision) and unique per replica."""
    return f"slipway-{slug}-r{revision_number}-{replica_id.removeprefix('rep_')}"[:120]


def replica_env(
    *,
    user_env: dict[str, str],
    port: int,
    database_uri: str,
    deployment_slug: str,
    revision_id: str,
    commit_sha: str,
    redis_uri: str | None = None,
) -> dict[str, str]:
    """What a replica's process sees: the user's env, then what the platform provides (which
    wins: the names are reserved, see app/deployments/environment.py)."""
    env = {
        **user_env,
        "PORT": str(port),
        "DATABASE_URI": database_uri,
        "SLIPWAY_DEPLOYMENT": deployment_slug,
        "SLIPWAY_REVISION": revision_id,
        "SLIPWAY_COMMIT": commit_sha,
    }
    if redis_uri is not None:
        env["REDIS_URI"] = redis_uri
    return env


def free_subnets(
    pool: ipaddress.IPv4Network,
    taken: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
    prefix_length: int = NETWORK_SUBNET_PREFIX_LENGTH,
) -> Iterator[ipaddress.IPv4Network]:
    """Subnets of the pool, in order, that overlap no network the engine already has.

    Chosen here because Docker's default pools give out whole /16s and /20s: about 30 networks
    fit, and from the 15th on they fall outside 172.16.0.0/12, where the database cluster admits
    clients.
    """
    used = [net for net in taken if isinstance(net, ipaddress.IPv4Network)]
    for subnet in pool.subnets(new_prefix=prefix_length):
        if not any(subnet.overlaps(net) for net in used):
            yield subnet


REDIS_PORT = 6379
REDIS_CONFIG_PATH = "/slipway/valkey.conf"
"""Copied into the container before its first start (never an argument: it holds the password);
a top-level directory, since a `FROM scratch` image has no /etc."""
REDIS_LIMITS = Limits(cpus=0.5, memory_bytes=256 * 1024**2, max_replicas=1)
"""langgraph-api uses Redis for run signalling and streaming, not storage: a small cap."""
REDIS_MAXMEMORY_BYTES = 192 * 1024**2
"""Below the container's cap, so Valkey refuses writes (noeviction) before the kernel kills it."""


@dataclass(frozen=True)
class ServiceSpec:
    """A backing service of one deployment (its Redis): on the deployment's network only,
    reached by its container name, never published on the host, shared by every revision."""

    name: str
    image: str
    command: tuple[str, ...]
    limits: Limits
    network: str
    files: dict[str, str] = field(repr=False)
    """Absolute path in the container → content (0600), placed before the first start."""
    labels: dict[str, str] = field(default_factory=dict)
    confinement: Confinement = field(default_factory=Confinement)


def redis_name(deployment_id: str) -> str:
    """Stable per deployment: every revision finds (and reuses) the same container."""
    return f"slipway-redis-{deployment_id}"


def redis_config(password: str, *, maxmemory_bytes: int = REDIS_MAXMEMORY_BYTES) -> str:
    """Valkey's config: password, memory cap, no persistence (nothing in it outlives a run)."""
    return "\n".join(
        [
            f"port {REDIS_PORT}",
            "bind * -::*",
            "protected-mode no",
            f"requirepass {password}",
            f"maxmemory {maxmemory_bytes}",
            "maxmemory-policy noeviction",
            'save ""',
            "appendonly no",
            "",
        ]
    )


def redis_spec(
    *, deployment_id: str, image: str, password: str, confinement: Confinement
) -> ServiceSpec:
    """The one way a deployment's Redis is specified: labelled with the deployment, so the
    teardown that removes its replicas by label removes it too."""
    return ServiceSpec(
        name=redis_name(deployment_id),
        image=image,
        command=("valkey-server", REDIS_CONFIG_PATH),
        limits=REDIS_LIMITS,
        network=deployment_network(deployment_id).name,
        files={REDIS_CONFIG_PATH: redis_config(password)},
        labels={DEPLOYMENT_LABEL: deployment_id, f"{LABEL_PREFIX}.service": "redis"},
        confinement=confinement,
    )


def redis_uri(deployment_id: str, password: str) -> str:
    """What the replicas get as REDIS_URI: the container's name resolves on their network."""
    return f"redis://:{quote(password, safe='')}@{redis_name(deployment_id)}:{REDIS_PORT}/0"
