"""Building the Litestar app from settings; the queue connection opens at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.status_codes import HTTP_404_NOT_FOUND

from app.api.deployments import DeploymentController, RevisionController
from app.api.setup import SetupController
from app.api.webhooks import WebhookController
from app.bootstrap import app_setup, open_database, pipeline_config, secret_box
from app.errors import NotFoundError
from app.github.credentials import GitHubAppCredentials
from app.ports import Clock
from app.settings import Settings
from app.timestamps import utcnow
from jobs.worker import redis_settings

log = logging.getLogger(__name__)


@get("/healthz", media_type=MediaType.JSON)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _not_found(_: Request[Any, Any, Any], exc: NotFoundError) -> Response[dict[str, str]]:
    return Response({"detail": str(exc)}, status_code=HTTP_404_NOT_FOUND)


def create_app(settings: Settings, *, clock: Clock = utcnow) -> Litestar:
    sessions = open_database(settings)
    config = pipeline_config(settings)
    secrets = secret_box(settings)
    credentials = GitHubAppCredentials(settings, sessions, secrets)
    setup = app_setup(settings, sessions, secrets, credentials, clock)

    @asynccontextmanager
    async def queue_lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(redis_settings(settings))
        app.state.queue = pool
        try:
            yield
        finally:
            await pool.aclose()

    def queue(state: State) -> ArqRedis:
        pool = state.queue
        assert isinstance(pool, ArqRedis)
        return pool

    return Litestar(
        route_handlers=[
            healthz,
            WebhookController,
            DeploymentController,
            RevisionController,
            SetupController,
        ],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "sessions": Provide(lambda: sessions, use_cache=True, sync_to_thread=False),
            "pipeline_config": Provide(lambda: config, use_cache=True, sync_to_thread=False),
            "clock": Provide(lambda: clock, use_cache=True, sync_to_thread=False),
            "queue": Provide(queue, sync_to_thread=False),
            "app_credentials": Provide(lambda: credentials, use_cache=True, sync_to_thread=False),
            "app_setup": Provide(lambda: setup, use_cache=True, sync_to_thread=False),
        },
        exception_handlers={NotFoundError: _not_found},
        lifespan=[queue_lifespan],
        openapi_config=None,
    )
