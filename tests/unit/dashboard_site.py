"""The dashboard over the unit tier's platform (fakes at every port, the fake GitHub), for the
handler tests (Litestar's TestClient) and the browser test (uvicorn and Chromium)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from litestar import Litestar
from litestar.di import Provide

from app.access.follows import LogFollows
from app.api.dashboard.pages import dashboard_router
from app.api.dashboard.render import Pages
from app.api.dashboard.viewer import Doorman
from app.bootstrap import browser_sessions
from app.github.oauth import GitHubOAuth, OAuthClient
from app.kernel.orders import RUN_REVISION
from app.kernel.ports import OutputLine
from app.kernel.settings import Settings
from app.replicas.server_logs import ServerLogArchive, ServerLogs
from app.setup.flow import OAUTH_CALLBACK_PATH
from tests.unit.world import SECRETS, Platform

PUBLIC = "http://testserver.local"
CLIENT = OAuthClient("Iv23li-dashboard", "dashboard-client-secret")


class HeldOutputs:
    """The runtime's side of server logs: lines a test says the replicas printed."""

    def __init__(self) -> None:
        self.lines: list[OutputLine] = []

    def of_deployment(
        self,
        deployment_id: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> list[OutputLine]:
        own = [
            line
            for line in list(self.lines)
            if line.deployment_id == deployment_id and (since_ns is None or line.at_ns >= since_ns)
        ]
        return own[-tail:] if tail else own

    def of_replica(self, name: str) -> list[OutputLine]:
        return [line for line in list(self.lines) if line.replica == name]

    def print(self, deployment_id: str, revision_id: str, text: str) -> None:
        self.lines.append(
            OutputLine(
                at_ns=time.time_ns(),
                deployment_id=deployment_id,
                revision_id=revision_id,
                replica="web-1",
                stream="stdout",
                text=text,
            )
        )


class RecordingQueue(ArqRedis):
    """The job queue: what the dashboard handed the workers (no Redis behind it). With a
    platform, a revision's job runs at once, as a worker would pick it up."""

    def __init__(self, platform: Platform | None = None) -> None:
        self.jobs: list[tuple[Any, ...]] = []
        self._platform = platform

    async def enqueue_job(self, *args: Any, **kwargs: Any) -> None:
        self.jobs.append(args)
        if self._platform is not None and args[0] == RUN_REVISION:
            await asyncio.to_thread(self._platform.pipeline.run, args[1])


def constant(value: Any) -> Provide:
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


def dashboard(
    platform: Platform,
    tmp_path: Path,
    *,
    public_url: str = PUBLIC,
    run_revisions: bool = False,
    outputs: HeldOutputs | None = None,
    **more_settings: Any,
) -> tuple[Litestar, RecordingQueue]:
    fake = platform.github
    fake.register_oauth_client(
        CLIENT.client_id, CLIENT.client_secret, [public_url + OAUTH_CALLBACK_PATH]
    )
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        public_url=public_url,
        github_url=fake.url,
        github_api_url=fake.url,
        **more_settings,
    )
    doorman = Doorman(
        browser_sessions=browser_sessions(settings, SECRETS, platform.clock),
        sessions=platform.sessions,
        github=GitHubOAuth(fake.url, fake.url),
        oauth_client=lambda: CLIENT,
        clock=platform.clock,
    )
    queue = RecordingQueue(platform if run_revisions else None)
    values: dict[str, Any] = {
        "sessions": platform.sessions,
        "settings": settings,
        "operations": platform.operations,
        "queue": queue,
        "pipeline_config": platform.config,
        "follows": LogFollows(2),
        "logs": ServerLogs(
            sessions=platform.sessions,
            secrets=SECRETS,
            archive=ServerLogArchive(tmp_path / "server-logs", 1 << 20),
            outputs=outputs or HeldOutputs(),
        ),
        "clock": platform.clock,
    }
    app = Litestar(
        route_handlers=[
            dashboard_router(doorman=doorman, pages=Pages(), link_signer=platform.links.signer)
        ],
        dependencies={name: constant(value) for name, value in values.items()},
    )
    return app, queue
