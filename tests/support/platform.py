"""The platform as a user starts it (`slipway up`), driven from outside: the e2e tier and bench.

Everything talks to 127.0.0.1 only: the API, the router (with a Host header, since
*.localhost does not resolve here), and the fake GitHub. A repository is connected the way
GitHub connects it: known to the fake, then an `installation` delivery to the platform.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from app.adapters.caddy import CaddyRouter
from app.adapters.caddy_admin import UNIX_SCHEME
from app.adapters.docker import DockerRuntime
from app.adapters.network_policy import Iptables, platform_tag
from app.kernel.crypto import SecretBox
from app.server.embedded import EmbeddedPostgres, free_port
from app.server.embedded._caddy import default_admin_socket
from app.setup.flow import OAUTH_CALLBACK_PATH
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA, installation_payload, push_payload
from tests.support.fake_github.payloads import headers as webhook_headers
from tests.support.git_repos import GitRepo
from tests.support.images import DOCKER, ensure_python_pip_image
from tests.support.wheelhouse import WheelIndex

INSTALLATION_ID = 4242
"""The installation the e2e tier's and the benches' repositories belong to."""
ACCOUNT = "octo-org"
WEBHOOK_SECRET = "test-webhook-secret-3f9c"
OAUTH_CLIENT_ID = "Iv1.slipwaye2e0001"
OAUTH_CLIENT_SECRET = "test-oauth-client-secret-8d2e"
"""The App's OAuth client (SLIPWAY_GITHUB_CLIENT_ID/SECRET) on the shared platform: the
dashboard's "Sign in with GitHub" (`register_dashboard_client` tells the fake of it)."""
SETTLED = frozenset({"live", "failed"})
"""Where a revision's pipeline stops when nothing supersedes it."""
STARTUP_TIMEOUT_SECONDS = 90.0
LANGGRAPH_HEALTH_TIMEOUT_SECONDS = "120"
"""A LangGraph Server answers /ok 2-5 s after its start, much later on a loaded 2-core host."""
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 120.0, every: float = 0.1
) -> T:
    """Poll probe until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class RunningPlatform:
    process: subprocess.Popen[bytes]
    data_dir: Path
    api_url: str
    router_port: int
    log_path: Path
    app_id: int
    webhook_secret: str = WEBHOOK_SECRET
    """What `send` signs with: the App's, once a test made one through /setup."""
    client: httpx.Client = field(default_factory=lambda: httpx.Client(trust_env=False))
    launch: Callable[[], RunningPlatform] | None = field(default=None, repr=False)
    """How it was started: `restart` starts it so again."""

    # -- webhooks ---------------------------------------------------------------------------
    def send(
        self,
        event: str,
        payload: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        delivery_id: str | None = None,
        secret: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        hdrs = webhook_headers(
            event,
            delivery_id or str(uuid.uuid4()),
            raw,
            secret or self.webhook_secret,
            app_id=self.app_id,
        )
        if signature is not None:
            hdrs["X-Hub-Signature-256"] = signature
        hdrs = {k: v for k, v in hdrs.items() if v}
        return self.client.post(f"{self.api_url}/webhooks/github", content=raw, headers=hdrs)

    # -- the API ----------------------------------------------------------------------------
    @property
    def admin_token(self) -> str:
        """The token a new platform writes into DATA_DIR/admin-token on its first start."""
        return (self.data_dir / "admin-token").read_text().strip()

    def in_flight(self) -> dict[str, int]:
        """What the platform's Caddy itself counts: requests in flight per upstream."""
        caddy = CaddyRouter(
            UNIX_SCHEME + str(default_admin_socket(self.data_dir / "caddy")),
            listen="",
            storage_dir=self.data_dir,
        )
        return caddy.in_flight()

    def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return self.client.request(
            method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs
        )

    def api(self, path: str) -> Any:
        response = self.call("GET", path)
        response.raise_for_status()
        return response.json()

    def deployment_of(self, full_name: str, timeout: float = 60) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for deployment in self.api("/api/deployments"):
                if deployment["repository"] == full_name:
                    return dict(deployment)
            return None

        return wait_for(f"a deployment of {full_name}", find, timeout)

    def revision_for(self, deployment_id: str, sha: str, timeout: float = 60) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for revision in self.api(f"/api/deployments/{deployment_id}/revisions"):
                if revision["commit_sha"] == sha:
                    return dict(revision)
            return None

        return wait_for(f"a revision for {sha[:7]}", find, timeout)

    def wait_state(
        self, revision_id: str, states: set[str], timeout: float = 180
    ) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            try:
                revision = self.api(f"/api/revisions/{revision_id}")
            except httpx.TransportError:
                # The API restarting: by default it shares its process with the worker, which
                # a test may kill (the supervisor starts both again at once).
                return None
            return dict(revision) if revision["state"] in states else None

        return wait_for(f"revision {revision_id} to reach {sorted(states)}", settled, timeout)

    def push(
        self,
        repository: dict[str, Any],
        installation_id: int,
        before: str,
        after: str,
        *,
        branch: str = "main",
        delivery_id: str | None = None,
    ) -> httpx.Response:
        """A signed push of `after` to a branch, as GitHub sends it (created when before is 0s)."""
        payload = push_payload(
            repository,
            installation_id,
            f"refs/heads/{branch}",
            before,
            after,
            created=before == ZERO_SHA,
        )
        return self.send("push", payload, delivery_id=delivery_id)

    def settle(
        self, full_name: str, sha: str, states: frozenset[str] = SETTLED
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The repository's deployment and the commit's revision, once it reached `states`."""
        deployment = self.deployment_of(full_name)
        revision = self.revision_for(deployment["id"], sha)
        return deployment, self.wait_state(revision["id"], set(states))

    def logs(self, revision_id: str) -> str:
        return self.call("GET", f"/api/revisions/{revision_id}/logs").text

    # -- the router -------------------------------------------------------------------------
    def request(
        self, slug: str, path: str = "/", method: str = "GET", **kwargs: Any
    ) -> httpx.Response:
        def send() -> httpx.Response:
            return self.client.request(
                method,
                f"http://127.0.0.1:{self.router_port}{path}",
                headers={"Host": f"{slug}.localhost:{self.router_port}"},
                timeout=10,
                **kwargs,
            )

        try:
            return send()
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if method not in ("GET", "HEAD"):
                raise
            # Caddy closes its idle kept-alive connections when it loads a new route table, and
            # one reused at that moment is reset: browsers send such a request again, once.
            return send()

    # -- its processes --------------------------------------------------------------------------
    def worker_pid(self) -> int | None:
        """The child of `slipway up` that runs the worker: `slipway combined` (the default,
        with the API) or `slipway worker`."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if (
                parent == self.process.pid
                and b"app.cli" in argv
                and (b"worker" in argv or b"combined" in argv)
            ):
                return int(entry.name)
        return None

    # -- the control-plane database, read-only, for "nothing was stored" ------------------
    def count(self, table: str) -> int:
        with sqlite3.connect(self.data_dir / "slipway.db") as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    def database_password(self, deployment_id: str) -> str:
        """Decrypted with the platform's own key: for asserting it is never shown."""
        box = SecretBox((self.data_dir / "secret.key").read_text().strip())
        with sqlite3.connect(self.data_dir / "slipway.db") as db:
            row = db.execute(
                "SELECT password_encrypted FROM databases WHERE deployment_id = ?",
                (deployment_id,),
            ).fetchone()
        assert row is not None, f"deployment {deployment_id} has no database"
        return box.decrypt(str(row[0]))

    def postgres_admin_url(self) -> str:
        """The embedded cluster's superuser URL, as `slipway up` stored it in DATA_DIR."""
        return EmbeddedPostgres(self.data_dir / "postgres").admin_url

    def database_uri(self, deployment_id: str) -> str:
        """The deployment's own URI as its containers get it, but reached from this host."""
        with sqlite3.connect(self.data_dir / "slipway.db") as db:
            row = db.execute(
                "SELECT name, role FROM databases WHERE deployment_id = ?", (deployment_id,)
            ).fetchone()
        assert row is not None, f"deployment {deployment_id} has no database"
        name, role = str(row[0]), str(row[1])
        password = quote(self.database_password(deployment_id), safe="")
        port = urlsplit(self.postgres_admin_url()).port
        return f"postgresql://{role}:{password}@127.0.0.1:{port}/{name}"

    def restart(self) -> None:
        """`slipway up` stopped and started again on the same data dir, ports and settings, as
        an operator restarts it; this object then drives the new one."""
        assert self.launch is not None, "only a platform start_platform started restarts"
        self._halt()
        fresh = self.launch()
        self.process, self.client = fresh.process, fresh.client

    def stop_and_clean(self) -> None:
        """Stopped, and the containers, images and networks of its deployments removed."""
        self.stop()

    def stop(self) -> None:
        """Stopped for good: its deployments' containers, images and networks removed, then
        its spare holders and their network (whose removal fails while a deployment's holder,
        once a spare, is still attached to it)."""
        self._halt()
        remove_docker_objects(self.deployment_ids())
        # Nor do its spare holders come back (a platform keeps them across its restarts).
        DockerRuntime(DOCKER, self.data_dir.resolve() / "run").remove_reserve()

    def deployment_ids(self) -> list[str]:
        try:
            with sqlite3.connect(self.data_dir / "slipway.db") as db:
                return [str(row[0]) for row in db.execute("SELECT id FROM deployments")]
        except sqlite3.Error:  # it never got as far as its control plane
            return []

    def _halt(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.client.close()
        if shutil.which("iptables") is not None:
            # The network policy's rules of this platform: a test's platform does not come back.
            Iptables().forget(platform_tag(self.data_dir))


def start_platform(
    data_dir: Path,
    github: FakeGitHub,
    *,
    api_port: int | None = None,
    router_port: int | None = None,
    app_settings: bool = True,
    **settings: str,
) -> RunningPlatform:
    """`app_settings=False`: a first run, with no App in the environment (made at /setup)."""
    api_port = api_port or free_port()
    router_port = router_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    app_env: dict[str, str] = {}
    if app_settings:
        key_path = data_dir / "github-app.pem"
        key_path.write_text(github.private_key_pem)
        key_path.chmod(0o600)
        app_env = {
            "SLIPWAY_GITHUB_APP_ID": str(github.app_id),
            "SLIPWAY_GITHUB_PRIVATE_KEY_PATH": str(key_path),
            "SLIPWAY_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
        **app_env,
        "SLIPWAY_GITHUB_API_URL": github.url,
        "SLIPWAY_GITHUB_URL": github.url,
        "SLIPWAY_DATA_DIR": str(data_dir),
        "SLIPWAY_PORT": str(api_port),
        "SLIPWAY_ROUTER_PORT": str(router_port),
        **{f"SLIPWAY_{k.upper()}": v for k, v in settings.items()},
    }
    log_path = data_dir / "platform.log"
    log_path.touch(mode=0o600)  # where an operator would send `slipway up`'s output: private
    log_path.chmod(0o600)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,  # no stray .env from the developer's checkout
        )
    platform = RunningPlatform(
        process=process,
        data_dir=data_dir,
        api_url=f"http://127.0.0.1:{api_port}",
        router_port=router_port,
        log_path=log_path,
        app_id=github.app_id,
        launch=functools.partial(
            start_platform,
            data_dir,
            github,
            api_port=api_port,
            router_port=router_port,
            app_settings=app_settings,
            **settings,
        ),
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"slipway up exited with {process.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        try:
            api_ok = platform.client.get(f"{platform.api_url}/healthz", timeout=2).is_success
            router = platform.client.get(f"http://127.0.0.1:{router_port}/", timeout=2)
        except httpx.HTTPError:
            return False
        return api_ok and router.status_code == 404

    try:
        wait_for("slipway up to answer", ready, STARTUP_TIMEOUT_SECONDS, every=0.2)
    except AssertionError:
        platform.stop()
        raise
    return platform


def start_langgraph_platform(
    data_dir: Path,
    github: FakeGitHub,
    index: WheelIndex,
    *,
    api_port: int | None = None,
    router_port: int | None = None,
    **settings: str,
) -> RunningPlatform:
    """A platform whose LangGraph builds use the local base image and the wheelhouse's index."""
    langgraph: dict[str, Any] = {
        "health_timeout_seconds": LANGGRAPH_HEALTH_TIMEOUT_SECONDS,
        "langgraph_base_image": ensure_python_pip_image(),
        "build_pip_index_url": index.url,
        "build_pip_trusted_host": index.trusted_host,
        # The network policy lets builds reach only the host ports it is given (the index).
        "network_policy_build_host_ports": str(urlsplit(index.url).port),
    }
    return start_platform(
        data_dir,
        github,
        api_port=api_port,
        router_port=router_port,
        **{**langgraph, **settings},
    )


DEPLOYMENT_LABEL = "dev.slipway.deployment"


def remove_docker_objects(deployment_ids: list[str]) -> None:
    """Containers, images and networks of these deployments; BuildKit's cache stays to keep the
    next run fast. A few docker calls whatever the number of deployments (a call per object
    kind and deployment took most of a minute at the end of the e2e tier on a loaded host)."""
    wanted = set(deployment_ids)
    if not wanted:
        return

    def docker(*args: str) -> list[str]:
        result = subprocess.run([DOCKER, *args], capture_output=True, text=True, check=False)
        return result.stdout.splitlines()

    def owned(lines: list[str]) -> list[str]:
        """IDs of `ID DEPLOYMENT` lines whose deployment is one of these."""
        pairs = [line.split(maxsplit=1) for line in lines]
        return [pair[0] for pair in pairs if len(pair) == 2 and pair[1].strip() in wanted]

    labelled = ("--filter", f"label={DEPLOYMENT_LABEL}")
    listed = f'{{{{.ID}}}} {{{{.Label "{DEPLOYMENT_LABEL}"}}}}'
    containers = owned(docker("ps", "-a", *labelled, "--format", listed))
    if containers:
        docker("rm", "-f", *containers)
    image_ids = sorted(set(docker("images", "-q", *labelled)))
    if image_ids:
        inspected = f'{{{{.Id}}}} {{{{index .Config.Labels "{DEPLOYMENT_LABEL}"}}}}'
        images = owned(docker("image", "inspect", "--format", inspected, *image_ids))
        if images:
            docker("rmi", "-f", *images)
    networks = owned(docker("network", "ls", *labelled, "--format", listed))
    if networks:
        # A replica's holder taken from the spare reserve carries the reserve's label, not its
        # deployment's: still attached, it kept the network (28-56 left by every e2e run). The
        # runtime's own teardown (`remove_labelled`) removes what is attached the same way.
        attached = "{{range $id, $c := .Containers}}{{$id}} {{end}}"
        holders = [
            container
            for line in docker("network", "inspect", "--format", attached, *networks)
            for container in line.split()
        ]
        if holders:
            docker("rm", "-f", *holders)
        docker("network", "rm", *networks)


def register_dashboard_client(platform: RunningPlatform, github: FakeGitHub) -> None:
    """The fake GitHub knows the platform's OAuth client and its dashboard callback URL, as
    the App's settings page on GitHub would (PUBLIC_URL unset: the API's own address)."""
    github.register_oauth_client(
        OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, [platform.api_url + OAUTH_CALLBACK_PATH]
    )


RepoFactory = Callable[[str, dict[str, str | bytes]], tuple[GitRepo, dict[str, Any]]]
"""(name, files) → a connected repository's git work tree and its repository object."""


def connect_repository(
    platform: RunningPlatform,
    github: FakeGitHub,
    path: Path,
    files: dict[str, str | bytes],
) -> tuple[GitRepo, dict[str, Any]]:
    """A git repository at `path` with a first commit, known to the fake GitHub and connected
    to the App on `platform` (named after the directory)."""
    repo = GitRepo(path)
    repo.commit(files, "first commit")
    repository = github.add_repository(INSTALLATION_ID, ACCOUNT, path.name, repo.path)
    response = platform.send(
        "installation",
        installation_payload(
            "created", INSTALLATION_ID, ACCOUNT, [repository], app_id=github.app_id
        ),
    )
    assert response.status_code == 202, response.text
    return repo, repository
