"""The control-plane database: engine, sessions and migrations applied at start."""

from __future__ import annotations

import ast
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, lock_dir: Path) -> None:
    """Bring the schema to head; a file lock keeps the API and worker from racing on it.

    A schema at head already (every start of `slipway up`'s API and worker: its prepare child
    migrated) is left alone without importing alembic, whose modules and Mako's would stay in
    the platform's long-lived processes for nothing (~12 MiB each)."""
    head = head_revision()
    if head is not None and current_revision(url) == head:
        return
    from alembic import command

    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / "migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(url), "head")


def head_revision(versions: Path = MIGRATIONS_DIR / "versions") -> str | None:
    """The one migration no other follows, read from the files' `revision` and
    `down_revision` (what alembic's ScriptDirectory reads); None when there is not exactly one."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in versions.glob("*.py"):
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and node.value is not None:
                        try:
                            names[target.id] = ast.literal_eval(node.value)
                        except ValueError:
                            continue
        revision, down = names.get("revision"), names.get("down_revision")
        if not isinstance(revision, str):
            continue
        revisions.add(revision)
        if isinstance(down, str):
            followed.add(down)
        elif isinstance(down, tuple | list):
            followed.update(str(d) for d in down)
    heads = revisions - followed
    return next(iter(heads)) if len(heads) == 1 else None


def current_revision(url: str) -> str | None:
    """The schema's revision as alembic recorded it; None if none (or not one) is."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:  # no such table yet: a new database
        return None
    finally:
        engine.dispose()
    return str(rows[0][0]) if len(rows) == 1 else None


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
