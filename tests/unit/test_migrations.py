"""Upgrading keeps what users stored: a control plane made by 0001 migrates to head intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text
from sqlmodel import Session

from app.kernel.db import alembic_config, current_revision, head_revision, make_engine, migrate
from app.kernel.models import Deployment, Replica, ReplicaState, Revision, RevisionState

T = "2026-11-20 10:00:00.000000"


def test_data_of_the_first_schema_survives_the_upgrade_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control-plane.db'}"
    command.upgrade(alembic_config(url), "0001")
    rows = [
        "INSERT INTO installations (id, account_login, account_type, created_at, updated_at) "
        "VALUES (41, 'octo', 'User', :t, :t)",
        "INSERT INTO repositories (id, installation_id, full_name, default_branch, connected, "
        "created_at, updated_at) VALUES (7, 41, 'octo/web', 'main', 1, :t, :t)",
        "INSERT INTO deployments (id, repository_id, slug, environment, branch, type, "
        "live_revision_id, created_at, updated_at) VALUES ('dep_1', 7, 'web', 'production', "
        "'main', 'production', 'rev_1', :t, :t)",
        "INSERT INTO revisions (id, deployment_id, number, commit_sha, commit_message, env_hash, "
        "state, image, created_at) VALUES ('rev_1', 'dep_1', 1, :sha, 'first', 'h', 'live', "
        "'slipway/dep_1:rev_1', :t)",
        "INSERT INTO replicas (id, revision_id, container_name, container_id, container_port, "
        "host_port, started_at) VALUES ('rep_1', 'rev_1', 'slipway-web-r1', 'c1', 8000, 41234, :t)",
        "INSERT INTO replicas (id, revision_id, container_name, container_port, host_port, "
        "started_at, stopped_at) VALUES ('rep_0', 'rev_1', 'slipway-web-r0', 8000, 41000, :t, :t)",
    ]
    with create_engine(url).begin() as db:
        for row in rows:
            db.execute(text(row), {"t": T, "sha": "a" * 40})

    migrate(url, tmp_path / "locks")

    with Session(make_engine(url)) as session:
        deployment = session.get(Deployment, "dep_1")
        revision = session.get(Revision, "rev_1")
        assert deployment is not None and revision is not None
        assert deployment.live_revision_id == "rev_1"
        assert deployment.pull_request_number is None and deployment.removed_at is None
        assert revision.state is RevisionState.live
        assert revision.image == "slipway/dep_1:rev_1"
        assert revision.attempt == 1
        assert revision.approval_required is False
        assert deployment.deploy_on_push is True and deployment.deleted_at is None
        assert deployment.secret_names is None and revision.rollback_of is None
        # The running replica keeps serving where it was published, and nothing scales yet.
        running, stopped = session.get(Replica, "rep_1"), session.get(Replica, "rep_0")
        assert running is not None and stopped is not None
        assert (running.state, running.endpoint) == (ReplicaState.ready, "127.0.0.1:41234")
        assert stopped.state is ReplicaState.stopped
        assert deployment.desired_replicas == 1 and revision.run_config is None


def test_the_migrations_build_the_schema_the_models_describe(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    url = f"sqlite:///{tmp_path / 'control-plane.db'}"
    migrate(url, tmp_path / "locks")
    with make_engine(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_the_head_read_from_the_files_is_alembics(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'control-plane.db'}"
    assert head_revision() == ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_two_heads_or_none_leave_the_decision_to_alembic(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text('revision = "b"\ndown_revision = "a"\n')
    assert head_revision(tmp_path) == "b"
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')
    assert head_revision(tmp_path) is None


def test_a_schema_at_head_is_left_without_loading_alembic(tmp_path: Path) -> None:
    """The API and the worker start on a schema `slipway up`'s prepare child migrated: they
    must not keep alembic and Mako in memory for it."""
    url = f"sqlite:///{tmp_path / 'control-plane.db'}"
    migrate(url, tmp_path / "locks")  # a new database: alembic migrates it
    assert current_revision(url) == head_revision()
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.kernel.db import migrate\n"
        f"migrate({url!r}, Path({str(tmp_path / 'locks')!r}))\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('alembic', 'mako')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_dropping_requests_seen_keeps_the_deployments_and_what_points_at_them(
    tmp_path: Path,
) -> None:
    """0016 copies deployments on SQLite (a batch): its rows, and the revisions pointing at
    them, come through; a downgrade gives the column back, empty."""
    url = f"sqlite:///{tmp_path / 'control-plane.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0015")
    rows = [
        "INSERT INTO installations (id, account_login, account_type, created_at, updated_at) "
        "VALUES (41, 'octo', 'User', :t, :t)",
        "INSERT INTO repositories (id, installation_id, full_name, default_branch, connected, "
        "created_at, updated_at) VALUES (7, 41, 'octo/web', 'main', 1, :t, :t)",
        "INSERT INTO deployments (id, repository_id, slug, environment, branch, type, "
        "requests_seen, created_at, updated_at) VALUES ('dep_1', 7, 'web', 'production', "
        "'main', 'production', 1234, :t, :t)",
        "INSERT INTO revisions (id, deployment_id, number, commit_sha, commit_message, env_hash, "
        "state, created_at) VALUES ('rev_1', 'dep_1', 1, :sha, 'first', 'h', 'live', :t)",
    ]
    engine = create_engine(url)
    with engine.begin() as db:
        for row in rows:
            db.execute(text(row), {"t": T, "sha": "a" * 40})

    command.upgrade(config, "0016")
    with engine.connect() as db:
        columns = {row[1] for row in db.execute(text("PRAGMA table_info(deployments)"))}
        kept = db.execute(text("SELECT slug FROM deployments WHERE id = 'dep_1'")).scalar()
        revisions = db.execute(text("SELECT count(*) FROM revisions")).scalar()
    assert "requests_seen" not in columns and kept == "web" and revisions == 1

    command.downgrade(config, "0015")
    with engine.connect() as db:
        back = db.execute(text("SELECT requests_seen FROM deployments WHERE id = 'dep_1'"))
        assert back.scalar() is None
    engine.dispose()
