"""Alembic environment: runs against the URL Slipway passes in, never an alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.db import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None

connectable = make_engine(url)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
