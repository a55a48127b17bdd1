"""Workers on several hosts share one control-plane Postgres: the route table has one writer at
a time, and each deployment one reconciler at a time, by advisory locks (a file lock would
only hold on one host)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.locks import DeploymentLocks
from app.replicas.routes import ROUTES_LOCK_KEY, RouteTable
from app.server.embedded import EmbeddedPostgres
from tests.support.platform import wait_for
from tests.unit.fakes import FakeRouter

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionFactory]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("locks") / "postgres", ["127.0.0.1"])
    admin_url = server.start()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE slipway_locks")
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url += "/slipway_locks"
    migrate(url, tmp_path_factory.mktemp("migrate-lock"))
    yield SessionFactory(make_engine(url))
    server.stop()


def waiting_for_the_routes_lock(sessions: SessionFactory) -> bool:
    with sessions() as session:
        waiting = session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = :key"
            ),
            {"key": ROUTES_LOCK_KEY},
        ).scalar()
    return bool(waiting)


def test_a_second_route_writer_waits_for_the_first(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    # Two route tables, as two workers on two hosts have: their lock files are not shared.
    first = RouteTable(sessions, FakeRouter(), str, tmp_path / "a" / "router.lock")
    second = RouteTable(sessions, FakeRouter(), str, tmp_path / "b" / "router.lock")
    acquired = threading.Event()

    def write() -> None:
        with second.locked():
            acquired.set()

    with first.locked():
        writer = threading.Thread(target=write)
        writer.start()
        wait_for(
            "the second writer to wait for the lock",
            lambda: waiting_for_the_routes_lock(sessions),
            30,
        )
        assert not acquired.is_set()
    writer.join(timeout=30)
    assert acquired.is_set()


def test_one_reconciler_per_deployment_across_hosts(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    host_a = DeploymentLocks(sessions, tmp_path / "a")
    host_b = DeploymentLocks(sessions, tmp_path / "b")

    with host_a.try_hold("dep_one") as held:
        assert held
        with host_b.try_hold("dep_one") as other:
            assert not other  # taken on the other host: left to it this tick
        with host_b.try_hold("dep_two") as two:
            assert two  # another deployment is free
    with host_b.try_hold("dep_one") as now:
        assert now
