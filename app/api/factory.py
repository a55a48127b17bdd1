"""The API as uvicorn imports it in each of its worker processes (`slipway api` with
API_WORKERS > 1): settings and logging are set up again in every process."""

from __future__ import annotations

import os

from litestar import Litestar

from app.api.application import create_app
from app.kernel.logs import configure_logging
from app.kernel.settings import load_settings


def make_app() -> Litestar:
    os.umask(0o077)
    configure_logging("api")
    return create_app(load_settings())
