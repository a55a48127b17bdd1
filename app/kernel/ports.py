"""The ports between Slipway's services and the outside, as Protocols.

`app.bootstrap` wires the real implementations from settings; unit tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from app.kernel.addresses import Route
from builders.images import BuiltImage
from manifests.containers import ContainerSpec, ServiceSpec
from manifests.recipes import BuildPlan

Clock = Callable[[], datetime]


class GitHubPort(Protocol):
    def download_tarball(
        self, installation_id: int, full_name: str, sha: str, dest: Path, *, max_bytes: int
    ) -> None: ...

    def create_check_run(
        self,
        installation_id: int,
        full_name: str,
        sha: str,
        *,
        name: str,
        external_id: str,
        details_url: str,
        title: str,
        summary: str,
        conclusion: str | None = None,
        actions: list[dict[str, str]] | None = None,
    ) -> int: ...

    def update_check_run(
        self,
        installation_id: int,
        full_name: str,
        check_run_id: int,
        *,
        status: str,
        title: str,
        summary: str,
        conclusion: str | None = None,
        text: str | None = None,
        started_at: str | None = None,
        completed_at: str | None = None,
        actions: list[dict[str, str]] | None = None,
        annotations: list[dict[str, object]] | None = None,
    ) -> None:
        """`annotations` are GitHub's `output.annotations[]` items, any number: the client
        sends them in as many requests as GitHub's limit per request needs."""

    def create_deployment(
        self,
        installation_id: int,
        full_name: str,
        sha: str,
        *,
        environment: str,
        production: bool,
        description: str,
    ) -> int: ...

    def create_deployment_status(
        self,
        installation_id: int,
        full_name: str,
        deployment_id: int,
        *,
        state: str,
        description: str,
        environment_url: str | None = None,
        log_url: str | None = None,
    ) -> None: ...

    def file_at(
        self, installation_id: int, full_name: str, sha: str, path: str
    ) -> bytes | None: ...

    def commit_message(self, installation_id: int, full_name: str, sha: str) -> str: ...

    def collaborator_permission(self, installation_id: int, full_name: str, login: str) -> str:
        """GitHub's role name: admin, maintain, write, triage, read or none."""

    def create_comment(
        self, installation_id: int, full_name: str, issue_number: int, body: str
    ) -> int: ...

    def update_comment(
        self, installation_id: int, full_name: str, comment_id: int, body: str
    ) -> bool:
        """False when the comment no longer exists."""

    def find_comment(
        self, installation_id: int, full_name: str, issue_number: int, marker: str
    ) -> int | None: ...

    def create_issue(self, installation_id: int, full_name: str, title: str, body: str) -> int:
        """Opens an issue on the repository; returns its number."""

    def update_issue(
        self,
        installation_id: int,
        full_name: str,
        number: int,
        *,
        title: str,
        body: str,
        state: str,
    ) -> bool:
        """Edits (and opens or closes: state "open" or "closed") an issue; False when it is
        gone (deleted, or the repository's issues were turned off)."""


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str


class CommitResolver(Protocol):
    def resolve_commit(self, installation_id: int, full_name: str, ref: str) -> Commit | None:
        """The commit a branch, tag or sha names now; None when the repository has no such
        ref."""


class ImageBuilder(Protocol):
    def build(
        self,
        plan: BuildPlan,
        tag: str,
        labels: dict[str, str],
        log_path: Path,
        *,
        cancelled: Callable[[], bool],
        timeout_seconds: float,
        redact: Callable[[str], str] | None = None,
    ) -> BuiltImage:
        """Every line of the build log goes through `redact` before it is written."""

    def retag(self, source: str, tag: str) -> dict[str, str] | None:
        """Tag the image `source` also as `tag` and return its labels; None when `source`
        is no longer in the engine (pruned)."""

    def labels(self, image: str) -> dict[str, str] | None:
        """The image's labels; None when it is not in the engine."""


@dataclass(frozen=True)
class Endpoint:
    """Where a replica answers HTTP: what the router and the health probe dial.

    The runtime decides it (the replica's address on its deployment's network for Docker, a
    pod address for Kubernetes); nothing else knows how it came about.
    """

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        host, _, port = address.rpartition(":")
        return cls(host=host, port=int(port))


@dataclass(frozen=True)
class StartedReplica:
    name: str
    ref: str
    """The runtime's own handle (a container id); passed back to it, never interpreted."""
    endpoint: Endpoint


@dataclass(frozen=True)
class ReplicaStatus:
    """What the runtime sees of one replica now."""

    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    detail: str | None = None
    """Why it stopped, when the runtime knows better than an exit code."""

    @property
    def exit_reason(self) -> str:
        if self.detail is not None:
            return self.detail
        if self.oom_killed:
            return "out of memory (killed by the deployment type's memory limit)"
        if self.exit_code is None:
            return "its container is gone"
        if self.exit_code in (137, 143):
            return f"killed (exit code {self.exit_code})"
        return f"exited with code {self.exit_code}"


REPLICA_EVENT_ACTIONS = ("die", "oom", "start", "destroy", "health_status")
"""What the runtime reports of a replica's containers: each may change what the reconciler
should do (bury and replace, take out of or into the route)."""


@dataclass(frozen=True)
class ReplicaEvent:
    deployment_id: str
    action: str
    """One of REPLICA_EVENT_ACTIONS."""
    name: str
    """The container's name (a replica's or its holder's)."""


@dataclass(frozen=True)
class ReplicaEvents:
    """A live feed of replica events, from when it was opened. Iterating blocks until the next
    event; it ends (or raises EngineError) when the runtime's stream drops, and events may have
    been missed since. `close`, from any thread, ends it."""

    events: Iterator[ReplicaEvent]
    close: Callable[[], None]


@dataclass(frozen=True)
class OutputLine:
    """One line a replica wrote, stamped by the runtime when it was written."""

    at_ns: int
    """Nanoseconds since the epoch (UTC): the engine's own stamp, finer than a datetime's."""
    deployment_id: str
    revision_id: str
    replica: str
    """The replica's name (its container's)."""
    stream: str
    """stdout or stderr."""
    text: str


class ReplicaOutputs(Protocol):
    """What the runtime still holds of replicas' output (running ones, and stopped ones not
    yet removed); the runtime drops it with the replica, so it is copied out at removal."""

    def of_deployment(
        self,
        deployment_id: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> list[OutputLine]:
        """Every line of the deployment's replicas the runtime holds, oldest first, or of each
        replica only its newest `tail` (a runtime that cannot be reached raises EngineError)."""

    def of_replica(self, name: str) -> list[OutputLine]:
        """Everything the runtime holds of one replica's output (none once it is gone)."""


KeepOutput = Callable[[list[OutputLine]], None]
"""Where a runtime hands a replica's output just before it removes the replica."""


class ContainerRuntime(Protocol):
    """Replicas and a deployment's services on some runtime (one Docker engine today).

    It deals in replicas and endpoints: whatever it runs on, the pipeline, the reconciler and
    the router only see names, opaque refs and host:port endpoints.
    """

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """The deployment's own network exists afterwards (made on its first start)."""

    def start(self, spec: ContainerSpec) -> StartedReplica: ...
    def ensure_service(self, spec: ServiceSpec) -> bool:
        """The deployment's backing service (its Redis) runs afterwards, on the deployment's
        network; a running one is kept. True when it was (re)created."""

    def status(self, ref: str) -> ReplicaStatus: ...
    def statuses(self) -> dict[str, ReplicaStatus]:
        """Every replica the runtime runs or ran, by name, in one call (the reconciler asks
        for the whole platform, on ticks after an event and at each resync)."""

    def logs_tail(self, ref: str, lines: int = 30) -> str: ...
    def remove_image(self, tag: str) -> None: ...
    def remove(self, name: str) -> None:
        """The replica `name` (what `start` was given) goes, with whatever the runtime runs
        beside it; safe to call for one already gone."""

    def remove_labelled(self, label: str, value: str) -> None:
        """Every container, then every image, then every network carrying the label with that
        value."""

    def replica_events(self) -> ReplicaEvents:
        """Follow the runtime's events of Slipway's replicas (EngineError if it cannot)."""


@dataclass(frozen=True)
class ReplicaUsage:
    """What one replica's app has used, as its runtime counts it, at one read."""

    cpu_seconds: float
    """CPU time since it started (cumulative: the sampler takes the difference of two reads)."""
    memory_bytes: int
    """Memory in use now, without the page cache the kernel may drop (what `docker stats`
    shows)."""
    read_at: float
    """When it was read, in seconds of a monotonic clock: a rate is taken over the reads' own
    times, not the sampler's schedule."""


class ReplicaResources(Protocol):
    def usage(self, refs: Iterable[str]) -> dict[str, ReplicaUsage]:
        """The usage of each running replica among `refs` (the runtime's handles); one the
        runtime does not know or that stopped is absent."""


class ServiceImages(Protocol):
    def redis(self) -> str:
        """The image a LangGraph deployment's own Redis runs (made on first use when local)."""


class RouterPort(Protocol):
    def apply(self, routes: list[Route]) -> None: ...
    def in_flight(self) -> dict[str, int]:
        """Requests being proxied now, by upstream address (host:port); an address the
        router no longer dials (or never did) is absent."""

    def metrics_reads(self) -> list[str]:
        """The router's request counts, latency histograms and in-flight requests per host,
        in Prometheus text: those read just before each route load since the last call, then
        now's (RouterError when it does not answer)."""


@dataclass(frozen=True)
class TracingProject:
    """A deployment's project on the tracing service (LangSmith's "session")."""

    id: str
    tenant_id: str
    url: str


class TracingService(Protocol):
    def ensure_project(self, name: str, description: str) -> TracingProject:
        """The project of this name, made if missing; safe to call again (raises
        TracingError when the service refuses or does not answer)."""

    def last_runs(self, project_ids: list[str]) -> dict[str, datetime | None]:
        """When each project's newest run started (None: no run yet), in as few calls as
        the service allows; projects it no longer has are absent."""


class DatabaseProvisioner(Protocol):
    def ensure(self, name: str, role: str, password: str, *, connection_limit: int) -> None: ...
    def drop(self, name: str, role: str) -> None: ...
    def container_uri(self, name: str, role: str, password: str) -> str: ...
    def limit(self, roles: Iterable[tuple[str, int]]) -> int:
        """Apply today's connection limits to existing roles; returns how many changed."""
        ...


@dataclass(frozen=True)
class DatabaseLogin:
    """A deployment's own database and role, as a dump or a restore signs in: never the
    cluster's superuser, so what an uploaded archive holds runs with the deployment's rights."""

    name: str
    role: str
    password: str

    def __repr__(self) -> str:
        return f"DatabaseLogin(name={self.name!r}, role={self.role!r})"


class RunQueueReader(Protocol):
    """A LangGraph Server's run queue, read from its deployment's own database (the `pg`
    runtime keeps every replica's runs in one table), signed in as the deployment's role."""

    def run_counts(self, deployment_id: str, login: DatabaseLogin) -> tuple[int, int]:
        """(pending runs due now, running runs); raises DatabaseError when it cannot say
        (no answer within a second, no table, the role's connections all taken)."""
        ...

    def keep_only(self, deployment_ids: Iterable[str]) -> None:
        """Let go of whatever is held for the deployments not named (their connections)."""
        ...


class DatabaseDumps(Protocol):
    """pg_dump and pg_restore against the deployment databases' cluster."""

    def dump(self, login: DatabaseLogin, destination: Path, *, timeout: float) -> int:
        """The database in pg_dump's custom format into `destination`; its size in bytes."""
        ...

    def stream(self, login: DatabaseLogin) -> Iterator[bytes]:
        """The database in pg_dump's custom format, as pg_dump writes it; a failure raises
        (after the first chunk, the stream just breaks off)."""
        ...

    def check(self, archive: Path) -> None:
        """Raise InvalidRequest unless `archive` is a custom-format archive pg_restore reads."""
        ...

    def restore(self, login: DatabaseLogin, archive: Path) -> None:
        """Replace what the archive holds (drop, then create) in one transaction: on any
        error nothing changes."""
        ...


class HealthProbe(Protocol):
    def answers(self, endpoint: Endpoint, path: str) -> bool:
        """True once the app answers HTTP at the endpoint with a status below 500."""


class PreviewNotifier(Protocol):
    def deployment_changed(self, deployment_id: str) -> None:
        """A preview's revision moved on: its pull request's comment has news."""

    def capacity_freed(self) -> None:
        """A build slot or a preview place came free: waiting revisions may start."""


class ChannelSender(Protocol):
    def send(self, url: str, *, title: str, body: str, tenant: bool) -> None:
        """Deliver one message to the channel an apprise URL names, or raise ChannelError.

        `tenant`: the URL came from a repository, so it reaches public addresses only (the
        operator's own URLs reach anything)."""


@dataclass(frozen=True)
class DnsAnswer:
    """What a name resolves to, as a visitor's resolver would see it."""

    canonical_name: str
    """The end of its CNAME chain (the name itself when it has no CNAME), lower case."""
    addresses: frozenset[str]
    """Its A and AAAA addresses (empty when it has none, or does not exist)."""


class Resolver(Protocol):
    def resolve(self, name: str) -> DnsAnswer:
        """Never raises for a name that does not resolve: an empty answer says so."""


class Certificates(Protocol):
    """The router's certificates for names it serves over HTTPS."""

    def obtain(self, name: str) -> bool:
        """True once the router holds a certificate for `name`; asks it to get one if not
        (the router orders one at a name's first TLS connection)."""
