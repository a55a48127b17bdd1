"""Names as another tenant would try to take them: a reserved address (`www`, `admin`, ...),
or the address of a deployment another repository just deleted."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.access.tokens import Caller
from app.deployments.operations import DeploymentOperations, NewDeployment, check_slug
from app.deployments.previews import preview_deployment
from app.deployments.registry import (
    DEFAULT_SLUG_HOLD,
    RESERVED_SLUGS,
    production_deployment,
)
from app.kernel.errors import ConflictError, InvalidRequest
from app.kernel.models import Installation, PullRequest, Repository, RevisionState
from tests.unit.world import INSTALLATION, SECRETS, Platform

ALICE = Caller(name="alice", read_only=False)
DNS_LABELS = sorted(s for s in RESERVED_SLUGS if not s.startswith("_"))


def connect(platform: Platform, full_name: str, repository_id: int) -> Repository:
    """Another repository of the installation, connected (a tenant of its own)."""
    with platform.sessions() as session:
        if session.get(Installation, INSTALLATION) is None:
            session.add(Installation(id=INSTALLATION, account_login="octo"))
            session.flush()
        repository = Repository(id=repository_id, installation_id=INSTALLATION, full_name=full_name)
        session.add(repository)
        session.commit()
        session.refresh(repository)
        return repository


def slug_of_first_push(platform: Platform, repository: Repository, now: datetime) -> str:
    with platform.sessions() as session:
        deployment = production_deployment(session, repository, now)
        session.commit()
        return deployment.slug


def delete_web(platform: Platform) -> datetime:
    """octo/web's production deployment (slug `web`) goes live, then its owner deletes it."""
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    deployment = platform.deployment()
    assert deployment.slug == "web"
    platform.carry_out(platform.operations.delete(deployment.id, "web", ALICE).outcome)
    return platform.clock.now


# -- reserved names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["www", "api", "admin", "setup", "slipway", "mail", "webhooks"])
def test_a_reserved_name_asked_for_is_refused_as_a_bad_request(
    platform: Platform, name: str
) -> None:
    with pytest.raises(InvalidRequest, match="reserved"):
        platform.operations.create(
            NewDeployment(repository="octo/web", branch="main", name=name, deploy_on_push=False),
            ALICE,
        )


def test_every_reserved_name_is_refused_by_the_name_check() -> None:
    for name in DNS_LABELS:
        with pytest.raises(InvalidRequest, match="reserved"):
            check_slug(name)
    assert {"www", "api", "admin", "setup", "slipway", "app", "_acme-challenge"} <= RESERVED_SLUGS


@pytest.mark.parametrize("name", ["www", "admin", "api", "app"])
def test_a_repository_named_like_a_reserved_name_gets_the_next_variant(
    platform: Platform, name: str
) -> None:
    repository = connect(platform, f"mallory/{name}", 5001)

    slug = slug_of_first_push(platform, repository, platform.clock())

    assert slug == f"{name}-mallory"


def test_a_preview_never_gets_a_reserved_name(platform: Platform) -> None:
    repository = connect(platform, "mallory/www", 5002)
    now = platform.clock()
    with platform.sessions() as session:
        pull_request = PullRequest(
            repository_id=repository.id,
            number=1,
            head_ref="feature",
            head_sha="a" * 40,
            head_full_name=repository.full_name,
        )
        session.add(pull_request)
        session.flush()
        preview, _ = preview_deployment(session, repository, pull_request, now)
        session.commit()
        assert preview.slug == "pr-1--www-mallory" and preview.slug not in RESERVED_SLUGS


# -- a deleted deployment's name --------------------------------------------------------------
def test_a_deleted_slug_is_held_from_another_repository_for_the_grace_period(
    platform: Platform,
) -> None:
    deleted_at = delete_web(platform)
    mallory = connect(platform, "mallory/web", 5003)

    # An automatic slug moves on; a name asked for is refused, saying until when.
    assert slug_of_first_push(platform, mallory, platform.clock()) == "web-mallory"
    with pytest.raises(ConflictError, match="stays its repository's until"):
        platform.operations.create(
            NewDeployment(repository="mallory/web", branch="dev", name="web", deploy_on_push=False),
            ALICE,
        )

    # Once the hold is over, the name is anyone's.
    platform.clock.now = deleted_at + DEFAULT_SLUG_HOLD + timedelta(minutes=1)
    taken = platform.operations.create(
        NewDeployment(repository="mallory/web", branch="dev", name="web", deploy_on_push=False),
        ALICE,
    )
    assert taken.deployment.slug == "web"


def test_the_repository_that_had_the_slug_can_take_it_back(platform: Platform) -> None:
    first_deletion = delete_web(platform)

    again = platform.operations.create(
        NewDeployment(repository="octo/web", branch="main", name="web", deploy_on_push=False),
        ALICE,
    )
    assert again.deployment.slug == "web"

    # Deleted again days later: the hold starts over from the new deletion.
    platform.clock.now = first_deletion + DEFAULT_SLUG_HOLD - timedelta(hours=1)
    platform.operations.delete(again.deployment.id, "web", ALICE)
    platform.clock.now = first_deletion + DEFAULT_SLUG_HOLD + timedelta(hours=1)
    connect(platform, "mallory/web", 5005)
    with pytest.raises(ConflictError, match="stays its repository's"):
        platform.operations.create(
            NewDeployment(repository="mallory/web", branch="dev", name="web", deploy_on_push=False),
            ALICE,
        )


def test_the_grace_period_is_a_setting(platform: Platform) -> None:
    platform.operations = DeploymentOperations(
        sessions=platform.sessions,
        secrets=SECRETS,
        commits=platform.client,
        clock=platform.clock,
        slug_hold=timedelta(0),
    )
    delete_web(platform)
    connect(platform, "mallory/web", 5004)

    taken = platform.operations.create(
        NewDeployment(repository="mallory/web", branch="dev", name="web", deploy_on_push=False),
        ALICE,
    )

    assert taken.deployment.slug == "web"
