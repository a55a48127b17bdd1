"""Alembic environment: runs against the URL Slipway passes in, never an alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import app.kernel.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.kernel.db import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None

connectable = make_engine(url)
with connectable.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration copies a table and drops the old one; with foreign keys on, that
        # drop fails as soon as a row of another table points at it (replicas at revisions).
        # Off for the migration only (it must be set outside a transaction), then checked.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection, target_metadata=SQLModel.metadata, render_as_batch=sqlite
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
connectable.dispose()
