"""The control-plane database: engine, sessions and migrations applied at start."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"
HOT_PATH_AUTOCHECKPOINT_PAGES = 10_000
"""WAL pages (4 KiB) after which a hot-path connection's commit checkpoints, against SQLite's
1000 for the others. A checkpoint fsyncs the WAL and the database (0.1 to over 1 s on a busy
disk) in the thread that committed: on the receiver that stalls every delivery in flight. The
worker, which writes after each delivery it applies, checkpoints instead; the receiver only
does if the WAL reaches ~40 MB, i.e. when nothing else keeps it short."""


def make_engine(url: str | URL, *, autocommit: bool = False) -> Engine:
    """SQLite gets WAL and a busy timeout: the API and workers are separate processes.

    `autocommit`: every statement is its own transaction, on connections set up so once (an
    engine's AUTOCOMMIT execution option instead sets and resets it at every checkout, which
    on SQLite is one more statement each time). These are for writes on a hot path, so on
    SQLite they also leave checkpoints to other connections (HOT_PATH_AUTOCHECKPOINT_PAGES).
    """
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **options
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if autocommit:
                cursor.execute(f"PRAGMA wal_autocheckpoint={HOT_PATH_AUTOCHECKPOINT_PAGES}")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, lock_dir: Path) -> None:
    """Bring the schema to head; a file lock keeps the API and worker from racing on it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / "migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(url), "head")


class SessionFactory:
    """Hands out sessions on one engine; passed to services instead of a global."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Connects only once used; same database, its own pool of autocommit connections.
        self._autocommit = make_engine(engine.url, autocommit=True)

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which every statement is its own transaction, committed by the
        database as the statement ends: for single-statement writes on a hot path."""
        with self._autocommit.connect() as connection:
            yield connection
