"""In-memory fakes at the ports of app/kernel/ports.py, keeping what a user would see on the
other side.

Each fake holds state (containers, images, the router's routes, databases), not a call log, so
tests assert outcomes: what runs, where a hostname routes. GitHub is not faked here: the unit
tier uses the fake GitHub every tier shares (tests/support/fake_github), in process.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from app.kernel.addresses import Route
from app.kernel.errors import RouterError
from app.kernel.ports import (
    Endpoint,
    ReplicaEvent,
    ReplicaEvents,
    ReplicaStatus,
    StartedReplica,
)
from builders.errors import BuildCancelled, BuildError
from builders.errors import EngineError as DomainEngineError
from builders.images import BuiltImage
from manifests.containers import DEPLOYMENT_LABEL, ContainerSpec, ServiceSpec
from manifests.errors import RuntimeStartError
from manifests.recipes import BuildPlan

REVISION_LABEL = "dev.slipway.revision"


class EngineError(Exception):
    """What the engine's client raises (python-on-whales' DockerException), not a SlipwayError."""


@dataclass
class FakeBuilder:
    """Builds instantly: writes BuildKit-like lines to the log, or fails with `failure`.

    Built images land in `images` (tag → the Dockerfile text it was built from), the engine's
    image store that FakeRuntime removes images from.
    """

    failure: str | None = None
    output: list[str] = field(default_factory=lambda: ["#1 [internal] load build definition"])
    during_build: Callable[[], object] | None = None
    after_build: Callable[[], object] | None = None
    images: dict[str, str] = field(default_factory=dict)
    labels_of: dict[str, dict[str, str]] = field(default_factory=dict)
    """Each image's labels, by tag."""

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
        log_path.parent.mkdir(parents=True, exist_ok=True)
        hide = redact or (lambda line: line)
        with log_path.open("a", encoding="utf-8") as log:
            log.write(hide(f"slipway: building {tag} from {plan.dockerfile_path}") + "\n")
            log.writelines(hide(line) + "\n" for line in self.output)
        if self.during_build is not None:
            self.during_build()
        if cancelled():
            raise BuildCancelled("a newer revision superseded this one")
        if self.failure is not None:
            raise BuildError(self.failure)
        self.images[tag] = plan.dockerfile.read_text()
        if self.after_build is not None:
            self.after_build()
        self.labels_of[tag] = dict(labels)
        return BuiltImage(
            tag=tag, image_id=f"sha256:{len(self.images):064x}", method="fake", seconds=1.5
        )

    def labels(self, image: str) -> dict[str, str] | None:
        return self.labels_of.get(image) if image in self.images else None

    def retag(self, source: str, tag: str) -> dict[str, str] | None:
        if source not in self.images:
            return None
        self.images[tag] = self.images[source]
        self.labels_of[tag] = self.labels_of.get(source, {})
        return self.labels_of[tag]


@dataclass
class Container:
    id: str
    spec: ContainerSpec
    host_port: int
    running: bool
    exit_code: int | None
    output: str
    oom_killed: bool = False

    @property
    def revision_id(self) -> str:
        return self.spec.labels[REVISION_LABEL]


@dataclass
class FakeRuntime:
    """Containers that exist until removed; `exit_code` makes the next ones exit at start.

    `images` is the engine's image store, shared with FakeBuilder. `networks` maps a network's
    name to its labels; like the engine, a container starts only on a network that exists.
    """

    images: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    stuck: set[str] = field(default_factory=set)
    """Revision ids whose containers the engine fails to remove."""
    output: Callable[[ContainerSpec], str] = lambda spec: "listening on 0.0.0.0:8000\n"
    containers: dict[str, Container] = field(default_factory=dict)
    networks: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    """Running backing services (a deployment's Redis) by container name."""
    service_starts: int = 0
    events_lost: bool = False
    """While True, containers change without an event reaching anyone (a dropped stream)."""
    feeds: list[queue.Queue[ReplicaEvent | None]] = field(default_factory=list)
    """One per open `replica_events`, as the engine streams to each follower."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ports: itertools.count[int] = field(default_factory=lambda: itertools.count(41001))

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self.networks.setdefault(name, dict(labels))

    def ensure_service(self, spec: ServiceSpec) -> bool:
        if spec.network not in self.networks:
            raise RuntimeStartError(f"network {spec.network} not found")
        if spec.name in self.services:
            return False
        self.services[spec.name] = spec
        self.service_starts += 1
        return True

    def start(self, spec: ContainerSpec) -> StartedReplica:
        if spec.network not in self.networks:
            raise RuntimeStartError(
                "the container could not be started: Error response from daemon: "
                f"network {spec.network} not found"
            )
        self.remove(spec.name)  # as the Docker runtime does: a name is reused by a retry
        exited = self.exit_code is not None
        container = Container(
            id=f"ctr{next(self._ids):09d}",
            spec=spec,
            host_port=next(self._ports),
            running=not exited,
            exit_code=self.exit_code,
            output=self.output(spec),
        )
        self.containers[container.id] = container
        self._emit(container, "start")
        if exited:
            self._emit(container, "die")
        return StartedReplica(
            name=spec.name, ref=container.id, endpoint=Endpoint("127.0.0.1", container.host_port)
        )

    def status(self, ref: str) -> ReplicaStatus:
        container = self.containers.get(ref) or next(
            (c for c in self.containers.values() if c.spec.name == ref), None
        )
        if container is None:
            return ReplicaStatus(running=False)
        return ReplicaStatus(
            running=container.running,
            exit_code=container.exit_code,
            oom_killed=container.oom_killed,
        )

    def statuses(self) -> dict[str, ReplicaStatus]:
        return {c.spec.name: self.status(c.id) for c in self.containers.values()}

    def logs_tail(self, ref: str, lines: int = 30) -> str:
        container = self.containers.get(ref)
        return "\n".join(container.output.splitlines()[-lines:]) if container else ""

    def kill(self, container_id: str, *, exit_code: int = 137, oom: bool = False) -> None:
        """The replica dies on its own (`docker kill`, a crash, the OOM killer)."""
        container = self.containers[container_id]
        container.running = False
        container.exit_code = exit_code
        container.oom_killed = oom
        if oom:
            self._emit(container, "oom")
        self._emit(container, "die")

    def running(self, revision_id: str) -> list[Container]:
        return [c for c in self.of_revision(revision_id) if c.running]

    def remove_image(self, tag: str) -> None:
        self.images.pop(tag, None)

    def remove(self, name_or_id: str) -> None:
        for container in list(self.containers.values()):
            if name_or_id in (container.id, container.spec.name):
                if container.revision_id in self.stuck:
                    raise EngineError(
                        f"Error response from daemon: removal of container {container.id} "
                        "is already in progress"
                    )
                del self.containers[container.id]
                if container.running:
                    self._emit(container, "die")
                self._emit(container, "destroy")

    def remove_labelled(self, label: str, value: str) -> None:
        for name in [n for n, s in self.services.items() if s.labels.get(label) == value]:
            del self.services[name]
        for container in list(self.containers.values()):
            if container.spec.labels.get(label) == value:
                try:
                    self.remove(container.id)
                except EngineError as exc:  # as DockerRuntime reports it
                    raise DomainEngineError(f"the Docker engine did not remove it: {exc}") from exc
        for tag in [t for t in self.images if t.startswith(f"slipway/{value}:")]:
            del self.images[tag]
        for name in [n for n, labels in self.networks.items() if labels.get(label) == value]:
            del self.networks[name]

    def replica_events(self) -> ReplicaEvents:
        feed: queue.Queue[ReplicaEvent | None] = queue.Queue()
        self.feeds.append(feed)

        def events() -> Iterator[ReplicaEvent]:
            try:
                while True:
                    event = feed.get()
                    try:
                        if event is None:
                            return
                        yield event
                    finally:
                        feed.task_done()  # once the follower asks for the next one
            finally:
                self.feeds.remove(feed)

        return ReplicaEvents(events=events(), close=lambda: feed.put(None))

    def cut_events(self) -> None:
        """The engine's stream drops (a restart, a proxy timing out)."""
        for feed in list(self.feeds):
            feed.put(None)

    def events_delivered(self, timeout: float = 5.0) -> None:
        """Every event so far was handed to the followers and acted on by them."""
        deadline = time.monotonic() + timeout
        while any(feed.unfinished_tasks for feed in list(self.feeds)):
            assert time.monotonic() < deadline, "the runtime's events were not followed"
            time.sleep(0.001)

    def _emit(self, container: Container, action: str) -> None:
        deployment_id = container.spec.labels.get(DEPLOYMENT_LABEL)
        if self.events_lost or deployment_id is None:
            return
        for feed in list(self.feeds):
            feed.put(ReplicaEvent(deployment_id, action, container.spec.name))

    def network_of(self, revision_id: str) -> str:
        [container] = self.of_revision(revision_id)
        assert container.spec.network in self.networks, "started on a network that is gone"
        return container.spec.network

    def of_revision(self, revision_id: str) -> list[Container]:
        return [c for c in self.containers.values() if c.revision_id == revision_id]


@dataclass
class FakeRouter:
    """Holds the routes last applied, as Caddy would serve them."""

    routes: list[Route] | None = None
    failure: str | None = None
    load: dict[str, int] = field(default_factory=dict)
    """In-flight requests by upstream address, as Caddy would report them."""
    loads: int = 0
    """Configurations applied so far."""
    served: dict[str, int] = field(default_factory=dict)
    """Requests answered by hostname since the configuration was last loaded: Caddy starts
    its counts again at every load (a test adds to it with `serve`)."""
    reloaded_at: float = 1.0
    """Caddy's caddy_config_last_reload_success_timestamp_seconds."""
    before_loads: list[str] = field(default_factory=list)
    """The reads taken just before each load since the last metrics read (as the Caddy
    adapter keeps them)."""

    def in_flight(self) -> dict[str, int]:
        return dict(self.load)

    def serve(self, hostname: str, count: int = 1) -> None:
        """Requests through the router to the hostname."""
        self.served[hostname] = self.served.get(hostname, 0) + count

    def metrics_text(self) -> str:
        """Caddy's /metrics as the sampler reads it: the per-host counts and the reload stamp."""
        lines = [f"caddy_config_last_reload_success_timestamp_seconds {self.reloaded_at}"]
        lines += [
            f'caddy_http_requests_total{{handler="reverse_proxy",host="{host}",server="srv0"}} '
            f"{count}"
            for host, count in self.served.items()
        ]
        return "\n".join(lines) + "\n"

    def metrics_reads(self) -> list[str]:
        if self.failure is not None:
            raise RouterError(self.failure)
        kept, self.before_loads = self.before_loads, []
        return [*kept, self.metrics_text()]

    def reload(self, *, read_before: bool = True) -> None:
        """A configuration load: the counts start again (read just before it, as the adapter
        does for its own loads; `read_before=False` is a load by another process)."""
        if read_before:
            self.before_loads.append(self.metrics_text())
        self.served = {}
        self.reloaded_at += 1.0

    def apply(self, routes: list[Route]) -> None:
        if self.failure is not None:
            raise RouterError(self.failure)
        self.reload()
        self.routes = list(routes)
        self.loads += 1

    def upstreams(self, hostname: str) -> tuple[str, ...] | None:
        for route in self.routes or []:
            if route.hostname == hostname:
                return route.upstreams
        return None


@dataclass
class FakeDatabases:
    """A Postgres cluster holding one database per name, with the role's current password."""

    databases: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name → (role, password)."""
    times_ensured: int = 0
    connection_limits: dict[str, int] = field(default_factory=dict)

    def ensure(self, name: str, role: str, password: str, *, connection_limit: int) -> None:
        self.databases[name] = (role, password)
        self.connection_limits[name] = connection_limit
        self.times_ensured += 1

    def drop(self, name: str, role: str) -> None:
        self.databases.pop(name, None)

    def container_uri(self, name: str, role: str, password: str) -> str:
        return f"postgresql://{role}:{password}@host.docker.internal:5432/{name}"

    def limit(self, roles: Iterable[tuple[str, int]]) -> int:
        changed = 0
        for role, limit in roles:
            for name, (owner, _password) in self.databases.items():
                if owner == role:
                    self.connection_limits[name] = limit
                    changed += 1
        return changed


@dataclass
class FakeHealthProbe:
    """Answers for running replicas; `answer` can decide per probe (and act, like a new push).

    Like a real port, one whose container exited answers nothing.
    """

    healthy: bool = True
    answer: Callable[[int, str], bool] | None = None
    runtime: FakeRuntime | None = None

    def answers(self, endpoint: Endpoint, path: str) -> bool:
        host_port = endpoint.port
        if self.runtime is not None and not any(
            c.running and c.host_port == host_port for c in self.runtime.containers.values()
        ):
            return False
        if self.answer is not None:
            return self.answer(host_port, path)
        return self.healthy


@dataclass
class TickingClock:
    """Each reading is one second after the last: durations are non-zero and deterministic."""

    now: datetime

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class FakeServiceImages:
    image: str = "slipway/valkey:test"

    def redis(self) -> str:
        return self.image
