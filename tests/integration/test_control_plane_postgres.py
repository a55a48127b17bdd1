"""The control plane on Postgres (SLIPWAY_DATABASE_URL) instead of the default SQLite.

Same migrations, same services: a delivery makes a revision, a newer push supersedes it, the
state moves only by compare-and-set, and GitHub's 64-bit ids fit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import inspect

from app.deliveries.inbox import (
    Arrival,
    Recorded,
    apply_delivery,
    record_deliveries,
    record_delivery,
)
from app.deployments.revisions import transition
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.models import PENDING_STATES, Revision, RevisionState
from app.server.embedded import EmbeddedPostgres
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import push_payload
from tests.support.git_repos import GitRepo

pytestmark = pytest.mark.timeout(120)

SECRETS = SecretBox("p" * 32)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
INSTALLATION = 3_000_000_001  # GitHub ids outgrow 32 bits


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("control") / "postgres", ["127.0.0.1"])
    admin_url = server.start()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE slipway_control")
    yield admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + (
        "/slipway_control"
    )
    server.stop()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A repository as GitHub describes it in payloads (no server is needed for the test)."""
    repo = GitRepo(tmp_path_factory.mktemp("git") / "api")
    repo.commit({"Dockerfile": "FROM scratch\n"})
    fake = FakeGitHub()
    fake.add_installation(INSTALLATION, "octo")
    return fake.add_repository(INSTALLATION, "octo", "api", repo.path)


@pytest.fixture(scope="module")
def sessions(control_plane: str, tmp_path_factory: pytest.TempPathFactory) -> SessionFactory:
    lock_dir: Path = tmp_path_factory.mktemp("lock")
    migrate(control_plane, lock_dir)
    migrate(control_plane, lock_dir)  # a second start finds the schema at head
    return SessionFactory(make_engine(control_plane))


def _push(
    sessions: SessionFactory, repository: dict[str, Any], before: str, after: str
) -> list[str]:
    delivery_id = str(uuid.uuid4())
    payload = push_payload(repository, INSTALLATION, "refs/heads/main", before, after)
    with sessions() as session:
        record_delivery(session, delivery_id, "push", json.dumps(payload).encode(), payload, NOW)
        outcome = apply_delivery(session, delivery_id, SECRETS, NOW)
    assert outcome is not None
    return outcome.start_revisions


def test_deliveries_make_revisions_on_a_postgres_control_plane(
    sessions: SessionFactory, repository: dict[str, Any]
) -> None:
    tables = set(inspect(sessions.engine).get_table_names())
    assert {"installations", "repositories", "deployments", "revisions", "replicas"} <= tables

    [first] = _push(sessions, repository, "0" * 40, "a" * 40)
    [second] = _push(sessions, repository, "a" * 40, "b" * 40)
    assert (
        _push(sessions, repository, "a" * 40, "b" * 40) == []
    )  # the same commit again: nothing new

    with sessions() as session:
        older = session.get(Revision, first)
        newer = session.get(Revision, second)
        assert older is not None and newer is not None
        assert older.state is RevisionState.cancelled
        assert (older.number, newer.number) == (1, 2)
        newer.check_run_id = 9_876_543_210_123
        session.commit()

    with sessions() as session:
        assert transition(session, second, PENDING_STATES, RevisionState.building)
        assert not transition(session, first, PENDING_STATES, RevisionState.building)
    with sessions() as session:
        stored = session.get(Revision, second)
        assert stored is not None
        assert stored.state is RevisionState.building
        assert stored.check_run_id == 9_876_543_210_123
        assert stored.created_at.tzinfo is not None


def test_deliveries_recorded_together_on_postgres_tell_redeliveries_apart(
    sessions: SessionFactory,
) -> None:
    def ping(delivery_id: str, at: datetime) -> Arrival:
        return Arrival(delivery_id, "ping", b'{"zen": "pg"}', {"zen": "pg"}, at)

    applied, waiting, fresh = (str(uuid.uuid4()) for _ in range(3))
    with sessions.autocommit() as connection:
        record_deliveries(connection, [ping(applied, NOW), ping(waiting, NOW)])
    with sessions() as session:
        assert apply_delivery(session, applied, SECRETS, NOW) is not None
    later = NOW + timedelta(minutes=1)
    with sessions.autocommit() as connection:
        results = record_deliveries(
            connection, [ping(fresh, later), ping(applied, later), ping(waiting, later)]
        )

    assert results == [
        Recorded(new=True, applied=False),
        Recorded(new=False, applied=True),
        Recorded(new=False, applied=False),
    ]
    with sessions() as session:
        assert apply_delivery(session, applied, SECRETS, NOW) is None
        assert apply_delivery(session, waiting, SECRETS, NOW) is not None
