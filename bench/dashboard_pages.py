"""Dashboard render time: the pages with 100 deployments and 1,000 revisions (issue 24's goal:
no page over 200 ms).

Run with `.venv/bin/python -m bench.dashboard_pages [--requests 50] [--deployments 100]
[--revisions-each 10]`.

A control plane (SQLite, migrated, in a temporary directory) is seeded with 50 repositories,
each with a production deployment and a preview (100 deployments), each deployment with 10
revisions (1,000), a live one and a ready replica each, an env of five variables and a secret,
an hour of 1-minute metric points (the deployment's and its replica's), and 5,000 archived
server-log lines for the deployment opened. The dashboard (the same router the API mounts) is
served by Litestar's test client, signed in with an API token, which sees every deployment; a GitHub
sign-in adds GitHub's answer, cached for a minute, on the first page only. Each page is asked
`--requests` times after one warm-up request (which compiles the templates): the deployments
list, one deployment's page, one revision's page with a 200 KB build log. Prints the median, p99
and maximum per page, from just before the request to the last byte of the answer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.testing import TestClient

from app.access.browser_sessions import BrowserSessions
from app.access.follows import LogFollows
from app.access.tokens import create_token
from app.api.dashboard.pages import dashboard_router
from app.api.dashboard.render import Pages
from app.api.dashboard.viewer import Doorman
from app.bootstrap import (
    link_signer,
    notifications,
    open_database,
    pipeline_config,
    secret_box,
    server_logs,
)
from app.deployments.operations import DeploymentOperations
from app.github.oauth import GitHubOAuth
from app.kernel.models import (
    Deployment,
    Installation,
    MetricPoint,
    Replica,
    ReplicaMetricPoint,
    ReplicaState,
    Repository,
    Revision,
    RevisionState,
)
from app.kernel.ports import OutputLine
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from manifests.containers import DeploymentType

GOAL_MS = 200.0
LOG_BYTES = 200 * 1024
METRIC_POINTS = 60
"""A full hour of 1-minute points per deployment (and per replica): the sparklines' and
charts' window."""
SERVER_LOG_LINES = 5000
"""Archived server-log lines of the deployment opened (its page shows the last 200)."""


def seed(settings: Settings, deployments: int, revisions_each: int) -> tuple[str, str]:
    """The control plane's rows; returns a deployment id and a revision id to open."""
    sessions = open_database(settings)
    secrets = secret_box(settings)
    config = pipeline_config(settings)
    env = secrets.encrypt_env({f"VAR_{i}": f"value {i}" for i in range(5)} | {"API_KEY": "sk"})
    now = utcnow()
    some: tuple[str, str] = ("", "")
    with sessions() as session:
        session.add(Installation(id=1, account_login="octo"))
        session.commit()
        for r in range(deployments // 2):
            session.add(Repository(id=1000 + r, installation_id=1, full_name=f"octo/app-{r}"))
        session.commit()
        for d in range(deployments):
            repository = 1000 + d // 2
            preview = d % 2 == 1
            deployment = Deployment(
                repository_id=repository,
                slug=f"app-{d // 2}" + (f"-pr-{d}" if preview else ""),
                branch=f"feature-{d}" if preview else "main",
                type=DeploymentType.development if preview else DeploymentType.production,
                pull_request_number=d if preview else None,
                env_encrypted=env,
                secret_names='["API_KEY"]',  # noqa: S106 (a name, not a secret)
            )
            session.add(deployment)
            session.flush()
            rows = []
            for n in range(1, revisions_each + 1):
                live = n == revisions_each
                revision = Revision(
                    deployment_id=deployment.id,
                    number=n,
                    commit_sha=f"{d:020d}{n:020d}",
                    commit_message=f"Change {n} of app {d}\n\nwith a body",
                    env_hash=str(n),
                    env_encrypted=env,
                    state=RevisionState.live if live else RevisionState.superseded,
                    image=f"slipway/app-{d}:{n}",
                    requested_by="push",
                    build_started_at=now - timedelta(minutes=n, seconds=30),
                    build_finished_at=now - timedelta(minutes=n, seconds=10),
                    deploy_started_at=now - timedelta(minutes=n, seconds=10),
                    live_at=now - timedelta(minutes=n),
                )
                session.add(revision)
                rows.append(revision)
            session.flush()
            deployment.live_revision_id = rows[-1].id
            session.add(
                Replica(
                    revision_id=rows[-1].id,
                    container_name=f"slipway-app-{d}-1",
                    container_port=8080,
                    endpoint=f"127.0.0.1:{20000 + d}",
                    state=ReplicaState.ready,
                    ready_at=now,
                )
            )
            for m in range(METRIC_POINTS):
                session.add(
                    MetricPoint(
                        deployment_id=deployment.id,
                        at=now - timedelta(minutes=METRIC_POINTS - m),
                        step_seconds=60,
                        requests=100 + (m * 7 + d) % 50,
                        errors=m % 3,
                        p50_ms=5.0,
                        p95_ms=20.0 + m % 10,
                        p99_ms=40.0,
                        in_flight=1.0,
                        replicas=1,
                    )
                )
                session.add(
                    ReplicaMetricPoint(
                        deployment_id=deployment.id,
                        replica_id=f"app-{d}-1",
                        at=now - timedelta(minutes=METRIC_POINTS - m),
                        step_seconds=60,
                        cpu_cores=0.05 + (m % 5) / 100,
                        memory_bytes=(60 + m % 7) * 1024 * 1024,
                    )
                )
            if d == 0:
                some = (deployment.id, rows[-1].id)
        session.commit()
        revision = session.get(Revision, some[1])
        assert revision is not None
        path = config.log_path(revision)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#12 [build 3/7] RUN pip install -r requirements.txt\n" * (LOG_BYTES // 52))
    return some


def site(settings: Settings) -> Litestar:
    sessions = open_database(settings)
    secrets = secret_box(settings)
    doorman = Doorman(
        browser_sessions=BrowserSessions(
            secrets.derive_key("dashboard-session"), timedelta(hours=12), utcnow
        ),
        sessions=sessions,
        github=GitHubOAuth(str(settings.github_url), str(settings.github_api_url)),
        oauth_client=lambda: None,
        clock=utcnow,
    )
    operations = DeploymentOperations(
        sessions=sessions,
        secrets=secrets,
        commits=None,  # type: ignore[arg-type]  # no page resolves a ref
        clock=utcnow,
        notifications=notifications(settings, sessions, secrets),
    )
    values: dict[str, Any] = {
        "sessions": sessions,
        "settings": settings,
        "operations": operations,
        "pipeline_config": pipeline_config(settings),
        "follows": LogFollows(4),
        "clock": utcnow,
        # The deployment's page reads its server logs: the archive seeded below, no engine.
        "logs": server_logs(settings, sessions, secrets, NoRunningReplicas()),
        # Not used by the pages timed here (the forms).
        "queue": None,
    }
    return Litestar(
        route_handlers=[
            dashboard_router(
                doorman=doorman, pages=Pages(), link_signer=link_signer(settings, secrets)
            )
        ],
        dependencies={
            name: Provide(_constant(value), use_cache=True, sync_to_thread=False)
            for name, value in values.items()
        },
    )


class NoRunningReplicas:
    """The runtime's side of server logs with nothing running: only the archive is read."""

    def of_deployment(
        self,
        deployment_id: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> list[OutputLine]:
        return []

    def of_replica(self, name: str) -> list[OutputLine]:
        return []


def seed_server_logs(settings: Settings, deployment_id: str, revision_id: str) -> None:
    """SERVER_LOG_LINES archived lines of two replicas for the deployment the bench opens."""
    sessions = open_database(settings)
    logs = server_logs(settings, sessions, secret_box(settings), NoRunningReplicas())
    start = time.time_ns() - SERVER_LOG_LINES * 1_000_000
    logs.keep(
        [
            OutputLine(
                at_ns=start + i * 1_000_000,
                deployment_id=deployment_id,
                revision_id=revision_id,
                replica=f"app-0-{1 + i % 2}",
                stream="stdout",
                text=f'127.0.0.1 - - "GET /items/{i} HTTP/1.1" 200 {i % 9000} "-" "hey/0.0.1"',
            )
            for i in range(SERVER_LOG_LINES)
        ]
    )


def _constant(value: Any) -> Any:
    def provide() -> Any:
        return value

    return provide


def timed(client: TestClient[Any], path: str, requests: int) -> list[float]:
    answer = client.get(path)  # warm-up: the templates compile here
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    took = []
    for _ in range(requests):
        start = time.perf_counter()
        answer = client.get(path)
        took.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200
    return took


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--revisions-each", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slipway-bench-dashboard-") as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), public_url="http://bench.local")
        deployment_id, revision_id = seed(settings, args.deployments, args.revisions_each)
        seed_server_logs(settings, deployment_id, revision_id)
        with open_database(settings)() as session:
            _, token = create_token(session, "bench", utcnow(), read_only=False)
        with TestClient(app=site(settings), base_url="http://bench.local") as client:
            form = client.get("/dashboard/sign-in")
            csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed = client.post(
                "/dashboard/sign-in/token", data={"csrf_token": csrf, "token": token}
            )
            assert "Signed in as" in signed.text
            pages = {
                f"deployments list ({args.deployments})": "/dashboard/",
                f"a deployment ({args.revisions_each} revisions, "
                f"{SERVER_LOG_LINES} server-log lines)": (
                    f"/dashboard/deployments/{deployment_id}"
                ),
                "a revision (200 KB build log)": f"/dashboard/revisions/{revision_id}",
            }
            rows = [(name, timed(client, path, args.requests)) for name, path in pages.items()]
    total = args.deployments * args.revisions_each
    print(
        f"dashboard pages, {args.deployments} deployments, {total} revisions, "
        f"{args.requests} requests each (ms)"
    )
    print(f"| page | median | p99 | max | under {GOAL_MS:.0f} ms |")
    print("|---|---:|---:|---:|---|")
    ok = True
    for name, took in rows:
        under = max(took) <= GOAL_MS
        ok &= under
        print(
            f"| {name} | {statistics.median(took):.1f} | {p99(took):.1f} | {max(took):.1f} | "
            f"{'yes' if under else 'NO'} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
