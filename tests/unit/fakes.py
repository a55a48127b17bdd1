"""In-memory fakes at the ports of app/kernel/ports.py, keeping what a user would see on the
other side.

Each fake holds state (check runs, containers, the router's routes, databases), not a call log,
so tests assert outcomes: what GitHub shows, what runs, where a hostname routes.
"""

from __future__ import annotations

import io
import itertools
import queue
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from app.kernel.addresses import Route
from app.kernel.errors import GitHubError, RouterError
from app.kernel.ports import (
    Commit,
    Endpoint,
    ReplicaEvent,
    ReplicaEvents,
    ReplicaStatus,
    StartedReplica,
)
from builders.errors import BuildCancelled, BuildError, SourceError
from builders.errors import EngineError as DomainEngineError
from builders.images import BuiltImage
from manifests.containers import DEPLOYMENT_LABEL, ContainerSpec, ServiceSpec
from manifests.errors import RuntimeStartError
from manifests.recipes import BuildPlan

FIRST_CHECK_RUN = 9001
FIRST_GITHUB_DEPLOYMENT = 7001
FIRST_COMMENT = 5001
REVISION_LABEL = "dev.slipway.revision"


class EngineError(Exception):
    """What the engine's client raises (python-on-whales' DockerException), not a SlipwayError."""


def source_tarball(top: str, files: dict[str, str]) -> bytes:
    """A gzipped tarball shaped like GitHub's: every file under one top-level folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo(top)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for name, content in files.items():
            data = content.encode()
            member = tarfile.TarInfo(f"{top}/{name}")
            member.size = len(data)
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class RecordingGitHub:
    """A GitHubPort keeping what GitHub would show: check runs, deployments and their statuses.

    `commits` maps a sha to the files of that commit, served as a tarball; `down` makes every
    call fail the way GitHubRest reports an unreachable GitHub, `refusing_reports` only the
    check-run and deployment calls (an App installed without those permissions).
    """

    commits: dict[str, dict[str, str]] = field(default_factory=dict)
    down: bool = False
    refusing_reports: bool = False
    check_runs: dict[int, dict[str, object]] = field(default_factory=dict)
    annotations: dict[int, list[dict[str, object]]] = field(default_factory=dict)
    """Check-run annotations sent, by check run id, in order."""
    deployments: dict[int, dict[str, object]] = field(default_factory=dict)
    statuses: dict[int, list[dict[str, object]]] = field(default_factory=dict)
    on_check_run_update: Callable[[dict[str, object]], None] | None = None
    messages: dict[str, str] = field(default_factory=dict)
    """sha → commit message (default "Update the app")."""
    permissions: dict[str, str] = field(default_factory=dict)
    """login → role name on the repository."""
    comments: dict[int, dict[str, object]] = field(default_factory=dict)
    deleted_comments: int = 0
    branches: dict[str, str] = field(default_factory=dict)
    """branch or tag name → the sha it points at."""

    def _answer(self, what: str, report: bool = True) -> None:
        if self.down:
            raise GitHubError(f"could not {what}: GitHub did not answer (ConnectError)")
        if report and self.refusing_reports:
            raise GitHubError(
                f"GitHub refused to {what} (HTTP 403): Resource not accessible by integration"
            )

    def download_tarball(
        self, installation_id: int, full_name: str, sha: str, dest: Path, *, max_bytes: int
    ) -> None:
        self._answer(f"download the tarball of {full_name}@{sha[:7]}", report=False)
        if sha not in self.commits:
            raise GitHubError(f"GitHub refused to download the tarball of {full_name} (HTTP 404)")
        top = f"{full_name.replace('/', '-')}-{sha[:7]}"
        data = source_tarball(top, self.commits[sha])
        if len(data) > max_bytes:
            raise SourceError(f"the commit's tarball is larger than {max_bytes} bytes")
        dest.write_bytes(data)

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
    ) -> int:
        self._answer("create a check run")
        check_run_id = FIRST_CHECK_RUN + len(self.check_runs)
        self.check_runs[check_run_id] = {
            "name": name,
            "head_sha": sha,
            "status": "queued" if conclusion is None else "completed",
            "conclusion": conclusion,
            "actions": actions or [],
            "external_id": external_id,
            "details_url": details_url,
            "title": title,
            "summary": summary,
        }
        return check_run_id

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
        self._answer(f"update check run {check_run_id}")
        run = self.check_runs[check_run_id]
        run.update(status=status, title=title, summary=summary, conclusion=conclusion)
        if actions is not None:
            run["actions"] = actions
        if annotations:
            self.annotations.setdefault(check_run_id, []).extend(annotations)
        if self.on_check_run_update is not None:
            self.on_check_run_update(run)

    def create_deployment(
        self,
        installation_id: int,
        full_name: str,
        sha: str,
        *,
        environment: str,
        production: bool,
        description: str,
    ) -> int:
        self._answer("create a deployment")
        deployment_id = FIRST_GITHUB_DEPLOYMENT + len(self.deployments)
        self.deployments[deployment_id] = {
            "sha": sha,
            "environment": environment,
            "production": production,
            "description": description,
        }
        return deployment_id

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
    ) -> None:
        self._answer(f"report deployment {deployment_id} as {state}")
        self.statuses.setdefault(deployment_id, []).append(
            {
                "state": state,
                "description": description,
                "environment_url": environment_url,
                "log_url": log_url,
            }
        )

    def file_at(self, installation_id: int, full_name: str, sha: str, path: str) -> bytes | None:
        self._answer(f"read {path} of {full_name}@{sha[:7]}", report=False)
        content = self.commits.get(sha, {}).get(path)
        return content.encode() if content is not None else None

    def commit_message(self, installation_id: int, full_name: str, sha: str) -> str:
        self._answer(f"read commit {full_name}@{sha[:7]}", report=False)
        return self.messages.get(sha, "Update the app")

    def resolve_commit(self, installation_id: int, full_name: str, ref: str) -> Commit | None:
        self._answer(f"read {full_name}@{ref}", report=False)
        sha = self.branches.get(ref, ref)
        if sha not in self.commits:
            return None
        return Commit(sha=sha, message=self.messages.get(sha, "Update the app"))

    def collaborator_permission(self, installation_id: int, full_name: str, login: str) -> str:
        self._answer(f"read {login}'s permission on {full_name}", report=False)
        return self.permissions.get(login, "none")

    def create_comment(
        self, installation_id: int, full_name: str, issue_number: int, body: str
    ) -> int:
        self._answer(f"comment on {full_name}#{issue_number}")
        comment_id = FIRST_COMMENT + len(self.comments) + self.deleted_comments
        self.comments[comment_id] = {"issue": issue_number, "body": body, "edits": 0}
        return comment_id

    def update_comment(
        self, installation_id: int, full_name: str, comment_id: int, body: str
    ) -> bool:
        self._answer(f"edit comment {comment_id} on {full_name}")
        comment = self.comments.get(comment_id)
        if comment is None:
            return False
        comment["body"] = body
        comment["edits"] = int(str(comment["edits"])) + 1
        return True

    def find_comment(
        self, installation_id: int, full_name: str, issue_number: int, marker: str
    ) -> int | None:
        self._answer(f"list comments of {full_name}#{issue_number}", report=False)
        for comment_id, comment in self.comments.items():
            if comment["issue"] == issue_number and marker in str(comment["body"]):
                return comment_id
        return None

    def delete_comment(self, comment_id: int) -> None:
        """A user deleting Slipway's comment on GitHub."""
        del self.comments[comment_id]
        self.deleted_comments += 1

    def comments_on(self, issue_number: int) -> list[str]:
        return [str(c["body"]) for c in self.comments.values() if c["issue"] == issue_number]

    def check_run_for(self, sha: str) -> dict[str, object]:
        """The commit's newest check run (an approved fork commit has two)."""
        return [run for run in self.check_runs.values() if run["head_sha"] == sha][-1]

    def check_runs_for(self, sha: str) -> list[dict[str, object]]:
        return [run for run in self.check_runs.values() if run["head_sha"] == sha]

    def deployment_state(self, sha: str) -> str | None:
        [deployment_id] = [i for i, d in self.deployments.items() if d["sha"] == sha]
        statuses = self.statuses.get(deployment_id, [])
        return str(statuses[-1]["state"]) if statuses else None

    def everything_shown(self) -> str:
        return repr((self.check_runs, self.deployments, self.statuses))


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

    def in_flight(self) -> dict[str, int]:
        return dict(self.load)

    def apply(self, routes: list[Route]) -> None:
        if self.failure is not None:
            raise RouterError(self.failure)
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
