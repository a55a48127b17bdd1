"""Control-plane rows written straight into a migrated database, for tests of what reads them
(metrics, the Prometheus exposition, server logs, the run-queue autoscaler) that need a
deployment but not the pipeline that would make one.

Each helper commits, so the next level's foreign key finds its parent. Ids are fixed, so a test
names what it seeded (`"dep_web"`, `"rev_1"`) without passing it around.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from app.kernel.models import Deployment, Installation, Repository, Revision

INSTALLATION_ID = 1
REPOSITORY_ID = 2
FULL_NAME = "octo/web"
NO_COMMIT = "0" * 40


def add_repository(session: Session) -> int:
    """The installation `octo` and its repository `octo/web`; returns the repository's id."""
    session.add(Installation(id=INSTALLATION_ID, account_login="octo"))
    session.commit()
    session.add(Repository(id=REPOSITORY_ID, installation_id=INSTALLATION_ID, full_name=FULL_NAME))
    session.commit()
    return REPOSITORY_ID


def add_deployment(
    session: Session, deployment_id: str = "dep_web", *, slug: str = "web", branch: str = "main"
) -> str:
    """A deployment of `octo/web` (add_repository first), with no revision yet."""
    session.add(Deployment(id=deployment_id, repository_id=REPOSITORY_ID, slug=slug, branch=branch))
    session.commit()
    return deployment_id


def add_revision(
    session: Session,
    revision_id: str = "rev_1",
    *,
    deployment_id: str = "dep_web",
    number: int = 1,
    commit_sha: str = NO_COMMIT,
    env_hash: str = "e",
    **fields: Any,
) -> str:
    """A revision of the deployment, queued unless `fields` say otherwise (state, run_config,
    env_encrypted ...)."""
    session.add(
        Revision(
            id=revision_id,
            deployment_id=deployment_id,
            number=number,
            commit_sha=commit_sha,
            env_hash=env_hash,
            **fields,
        )
    )
    session.commit()
    return revision_id


def add_web_revision(session: Session) -> str:
    """`octo/web`'s deployment `web` (id dep_web) with one revision, rev_1: what a test of a
    deployment's replicas or numbers hangs its own rows on. Returns the deployment's id."""
    add_repository(session)
    deployment_id = add_deployment(session)
    add_revision(session, deployment_id=deployment_id)
    return deployment_id
