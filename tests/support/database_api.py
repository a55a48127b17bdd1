"""The part of Slipway's API over deployments and their databases (`/api/deployments`, its
`/backups` and `/database`), on a control plane and a DatabaseBackups a test made: what the
API and the CLI show of backups, without a queue or a whole platform."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from app.access.links import LinkSigner
from app.access.tokens import create_token
from app.api.application import STATUS_OF, _domain_error
from app.api.auth import BearerTokens, writers_only
from app.api.backups import DatabaseController
from app.api.deployments import DeploymentController
from app.backups.service import DatabaseBackups
from app.kernel.db import SessionFactory
from app.kernel.ports import Clock
from app.kernel.settings import Settings

ELSEWHERE = ("follows", "notices", "operations", "pipeline_config", "queue", "secrets")
"""What the deployments' other handlers need: not served here (asking for it is a 500)."""


def _not_here(name: str) -> Provide:
    def provide() -> None:
        raise AssertionError(f"{name}: this test's API serves deployments and their databases")

    return Provide(provide, sync_to_thread=False)


def database_api(
    settings: Settings, sessions: SessionFactory, backups: DatabaseBackups, clock: Clock
) -> tuple[Litestar, str]:
    """The app, and a token that may change things (as the platform's admin token may)."""
    with sessions() as session:
        _, token = create_token(session, "admin", clock())
    api = Router(
        path="/api",
        route_handlers=[DeploymentController, DatabaseController],
        guards=[writers_only],
    )
    app = Litestar(
        route_handlers=[api],
        middleware=[
            DefineMiddleware(
                BearerTokens,
                sessions=sessions,
                signer=LinkSigner(b"k" * 32, timedelta(days=1), clock),
                clock=clock,
            )
        ],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "sessions": Provide(lambda: sessions, use_cache=True, sync_to_thread=False),
            "backups": Provide(lambda: backups, use_cache=True, sync_to_thread=False),
        }
        | {name: _not_here(name) for name in ELSEWHERE},
        exception_handlers={cls: _domain_error for cls in STATUS_OF},
    )
    return app, token
