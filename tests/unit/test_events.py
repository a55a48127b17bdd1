"""Webhook deliveries applied to the control plane: what each event creates, and what it refuses.

Deliveries go through record_delivery + apply_delivery exactly as the worker applies them, on a
migrated SQLite control plane; payloads come from the fake GitHub's factories.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from app.deliveries.handlers import process_delivery
from app.deliveries.inbox import apply_delivery, record_delivery
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import (
    Delivery,
    Deployment,
    Installation,
    Repository,
    Revision,
    RevisionState,
)
from app.kernel.orders import WorkOrder
from tests.support.fake_github import (
    ZERO_SHA,
    FakeGitHub,
    installation_payload,
    installation_repositories_payload,
    push_payload,
)

SECRETS = SecretBox("k" * 32)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
INSTALLATION = 41
OWNER = "octo"
SHA_1 = "1" * 40
SHA_2 = "2" * 40

JSON = dict[str, Any]


class Deliveries:
    """Sends deliveries the way GitHub and the worker do, and reads back what they left."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    def send(self, event: str, payload: object, delivery_id: str | None = None) -> str:
        delivery_id = delivery_id or str(uuid.uuid4())
        body = json.dumps(payload).encode()
        with self.sessions() as session:
            record_delivery(session, delivery_id, event, body, payload, NOW)
        return delivery_id

    def apply(self, delivery_id: str) -> WorkOrder | None:
        with self.sessions() as session:
            return apply_delivery(session, delivery_id, SECRETS, NOW)

    def deliver(self, event: str, payload: object) -> WorkOrder:
        outcome = self.apply(self.send(event, payload))
        assert outcome is not None
        return outcome

    def recorded_outcome(self, delivery_id: str) -> str:
        with self.sessions() as session:
            delivery = session.get(Delivery, delivery_id)
            assert delivery is not None and delivery.outcome is not None
            return str(json.loads(delivery.outcome)["summary"])

    def revisions(self) -> list[Revision]:
        with self.sessions() as session:
            return list(session.exec(select(Revision).order_by(col(Revision.number))).all())

    def deployments(self) -> list[Deployment]:
        with self.sessions() as session:
            return list(session.exec(select(Deployment).order_by(col(Deployment.slug))).all())

    def repository(self, repository_id: int) -> Repository | None:
        with self.sessions() as session:
            return session.get(Repository, repository_id)


@pytest.fixture
def deliveries(sessions: SessionFactory) -> Deliveries:
    return Deliveries(sessions)


RepoFactory = Callable[..., JSON]


@pytest.fixture
def make_repository(fake_github: FakeGitHub, app_git_dir: Path) -> RepoFactory:
    """Repository objects as GitHub puts them in payloads, one installation per owner."""
    installations: dict[str, int] = {}

    def make(name: str, owner: str = OWNER, installation_id: int | None = None) -> JSON:
        if owner not in installations:
            installations[owner] = installation_id or INSTALLATION + len(installations)
            fake_github.add_installation(installations[owner], owner)
        return fake_github.add_repository(installations[owner], owner, name, app_git_dir)

    return make


def push(repo: JSON, after: str, ref: str = "refs/heads/main", **kwargs: Any) -> JSON:
    return push_payload(repo, INSTALLATION, ref, ZERO_SHA, after, **kwargs)


def test_an_installation_records_the_account_and_its_repositories(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web, api = make_repository("web"), make_repository("api")

    outcome = deliveries.deliver(
        "installation", installation_payload("created", INSTALLATION, OWNER, [web, api])
    )

    assert "installation 41 created with 2 repositories" in outcome.summary
    with deliveries.sessions() as session:
        installation = session.get(Installation, INSTALLATION)
        assert installation is not None
        assert (installation.account_login, installation.active) == (OWNER, True)
        repositories = session.exec(select(Repository).order_by(col(Repository.full_name))).all()
        assert [(r.full_name, r.connected) for r in repositories] == [
            ("octo/api", True),
            ("octo/web", True),
        ]
        assert all(r.installation_id == INSTALLATION for r in repositories)


def test_a_push_to_the_default_branch_creates_the_production_deployment_and_revision_1(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("Web_Shop")
    deliveries.deliver("installation", installation_payload("created", INSTALLATION, OWNER, [web]))

    outcome = deliveries.deliver("push", push(web, SHA_1, message="First page\n\nbody text"))

    [deployment] = deliveries.deployments()
    assert (deployment.slug, deployment.environment, deployment.branch) == (
        "web-shop",
        "production",
        "main",
    )
    [revision] = deliveries.revisions()
    assert (revision.number, revision.state, revision.commit_sha) == (
        1,
        RevisionState.queued,
        SHA_1,
    )
    assert revision.commit_message == "First page"
    assert revision.deployment_id == deployment.id
    assert outcome.start_revisions == [revision.id]
    assert f"revision #1 ({revision.id}) of web-shop for 1111111" in outcome.summary


def test_a_push_from_an_installation_seen_for_the_first_time_is_deployed(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")

    outcome = deliveries.deliver("push", push(web, SHA_1))

    assert len(outcome.start_revisions) == 1
    with deliveries.sessions() as session:
        installation = session.get(Installation, INSTALLATION)
        assert installation is not None and installation.active


def test_the_same_delivery_applied_twice_does_nothing_the_second_time(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    payload = push(web, SHA_1)
    delivery_id = deliveries.send("push", payload)

    first = deliveries.apply(delivery_id)
    second = deliveries.apply(delivery_id)
    deliveries.send("push", payload, delivery_id)  # GitHub's "Redeliver" button
    third = deliveries.apply(delivery_id)

    assert first is not None and len(first.start_revisions) == 1
    assert second is None and third is None
    assert len(deliveries.revisions()) == 1


def test_of_two_workers_applying_one_delivery_at_once_only_one_commits(
    deliveries: Deliveries, make_repository: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue delivers at least once: a second worker may read the delivery as unapplied
    while the first is still applying it."""
    delivery_id = deliveries.send("push", push(make_repository("web"), SHA_1))
    apply_event = process_delivery
    others: list[WorkOrder | None] = []

    def other_worker_first(*args: Any) -> WorkOrder:
        if not others:  # this worker has read the delivery; the other one applies it now
            others.append(None)
            others[0] = deliveries.apply(delivery_id)
        return apply_event(*args)

    monkeypatch.setattr("app.deliveries.inbox.process_delivery", other_worker_first)
    late = deliveries.apply(delivery_id)

    assert others[0] is not None and len(others[0].start_revisions) == 1
    assert late is None
    assert len(deliveries.revisions()) == 1
    assert deliveries.recorded_outcome(delivery_id) == others[0].summary


def test_a_redelivery_of_an_applied_delivery_needs_no_processing(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    payload = push(make_repository("web"), SHA_1)
    body = json.dumps(payload).encode()
    delivery_id = deliveries.send("push", payload)
    deliveries.apply(delivery_id)

    with deliveries.sessions() as session:
        again = record_delivery(session, delivery_id, "push", body, payload, NOW)

    assert not again.new
    assert not again.needs_processing


def test_a_delivery_records_its_event_action_and_installation(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    delivery_id = deliveries.send(
        "installation", installation_payload("created", INSTALLATION, OWNER, [web])
    )

    with deliveries.sessions() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert (delivery.event, delivery.action, delivery.installation_id) == (
            "installation",
            "created",
            INSTALLATION,
        )
        assert delivery.processed_at is None


def test_the_same_commit_pushed_again_makes_no_second_revision(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    deliveries.deliver("push", push(web, SHA_1))

    again = deliveries.deliver("push", push(web, SHA_1))

    [revision] = deliveries.revisions()
    assert again.start_revisions == []
    assert f"already revision #1 ({revision.id})" in again.summary


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"ref": "refs/tags/v1"}, "refs/tags/v1 is not a branch"),
        ({"deleted": True, "after": ZERO_SHA}, "refs/heads/main was deleted"),
        ({"ref": "refs/heads/feature/login"}, "no deployment follows feature/login"),
    ],
    ids=["tag", "branch-deleted", "other-branch"],
)
def test_pushes_that_deploy_nothing_say_why(
    deliveries: Deliveries, make_repository: RepoFactory, change: JSON, why: str
) -> None:
    web = make_repository("web")
    options: JSON = {"ref": "refs/heads/main", "after": SHA_1, **change}
    payload = push_payload(
        web,
        INSTALLATION,
        options.pop("ref"),
        SHA_2,
        options.pop("after"),
        **options,
    )

    delivery_id = deliveries.send("push", payload)
    outcome = deliveries.apply(delivery_id)

    assert outcome is not None and outcome.start_revisions == []
    assert why in outcome.summary
    assert why in deliveries.recorded_outcome(delivery_id)
    assert deliveries.deployments() == []
    assert deliveries.revisions() == []


def test_a_push_while_revision_1_is_queued_makes_2_and_cancels_1(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    deliveries.deliver("push", push(web, SHA_1))

    outcome = deliveries.deliver("push", push(web, SHA_2))

    first, second = deliveries.revisions()
    assert (second.number, second.state, second.commit_sha) == (2, RevisionState.queued, SHA_2)
    assert first.state is RevisionState.cancelled
    assert first.error is not None and "superseded" in first.error
    assert first.finished_at == NOW
    assert outcome.start_revisions == [second.id]
    assert outcome.cancelled_revisions == [first.id]


def test_a_push_while_revision_1_is_live_keeps_1_serving(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    deliveries.deliver("push", push(web, SHA_1))
    with deliveries.sessions() as session:
        [first] = session.exec(select(Revision)).all()
        first.state = RevisionState.live
        session.commit()

    outcome = deliveries.deliver("push", push(web, SHA_2))

    first, second = deliveries.revisions()
    assert first.state is RevisionState.live
    assert second.state is RevisionState.queued
    assert outcome.cancelled_revisions == []


def test_a_push_to_a_repository_removed_from_the_installation_makes_nothing(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web, api = make_repository("web"), make_repository("api")
    deliveries.deliver(
        "installation", installation_payload("created", INSTALLATION, OWNER, [web, api])
    )
    removed = deliveries.deliver(
        "installation_repositories",
        installation_repositories_payload("removed", INSTALLATION, OWNER, [], [web]),
    )

    outcome = deliveries.deliver("push", push(web, SHA_1))

    assert "0 repositories connected, 1 disconnected" in removed.summary
    assert "octo/web is no longer connected" in outcome.summary
    assert deliveries.revisions() == []
    repository = deliveries.repository(int(web["id"]))
    assert repository is not None and not repository.connected


def test_a_repository_added_back_deploys_again(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    deliveries.deliver("installation", installation_payload("created", INSTALLATION, OWNER, [web]))
    for action, added, removed in [("removed", [], [web]), ("added", [web], [])]:
        deliveries.deliver(
            "installation_repositories",
            installation_repositories_payload(action, INSTALLATION, OWNER, added, removed),
        )

    outcome = deliveries.deliver("push", push(web, SHA_1))

    assert len(outcome.start_revisions) == 1


@pytest.mark.parametrize("action", ["suspend", "deleted"])
def test_a_push_for_a_suspended_or_deleted_installation_makes_nothing(
    deliveries: Deliveries, make_repository: RepoFactory, action: str
) -> None:
    web = make_repository("web")
    deliveries.deliver("installation", installation_payload("created", INSTALLATION, OWNER, [web]))
    deliveries.deliver("installation", installation_payload(action, INSTALLATION, OWNER, [web]))

    outcome = deliveries.deliver("push", push(web, SHA_1))

    assert f"installation {INSTALLATION} is suspended or deleted" in outcome.summary
    assert deliveries.deployments() == []
    assert deliveries.revisions() == []


def test_an_unsuspended_installation_deploys_again(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    web = make_repository("web")
    for action in ["created", "suspend", "unsuspend"]:
        deliveries.deliver("installation", installation_payload(action, INSTALLATION, OWNER, [web]))

    outcome = deliveries.deliver("push", push(web, SHA_1))

    assert len(outcome.start_revisions) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("after"),
        lambda p: p.pop("repository"),
        lambda p: p["repository"].pop("full_name"),
        lambda p: p.update(installation={"id": "not-a-number"}),
    ],
    ids=["no-after", "no-repository", "no-full-name", "bad-installation-id"],
)
def test_a_push_payload_missing_required_fields_is_recorded_as_unreadable(
    deliveries: Deliveries, make_repository: RepoFactory, damage: Callable[[JSON], object]
) -> None:
    payload = push(make_repository("web"), SHA_1)
    damage(payload)
    delivery_id = deliveries.send("push", payload)

    outcome = deliveries.apply(delivery_id)

    assert outcome is not None and outcome.start_revisions == []
    assert "payload could not be read" in outcome.summary
    assert "payload could not be read" in deliveries.recorded_outcome(delivery_id)
    assert deliveries.deployments() == []
    with deliveries.sessions() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None and delivery.processed_at == NOW


def test_events_slipway_does_not_handle_are_recorded_and_ignored(deliveries: Deliveries) -> None:
    delivery_id = deliveries.send("star", {"action": "created", "starred_at": None})

    outcome = deliveries.apply(delivery_id)

    assert outcome is not None
    assert "star events are recorded and ignored" in deliveries.recorded_outcome(delivery_id)


def test_repositories_with_the_same_name_under_different_owners_get_different_slugs(
    deliveries: Deliveries, make_repository: RepoFactory
) -> None:
    ours = make_repository("web", owner=OWNER, installation_id=INSTALLATION)
    theirs = make_repository("web", owner="Other-Org", installation_id=77)

    deliveries.deliver("push", push(ours, SHA_1))
    deliveries.deliver("push", push_payload(theirs, 77, "refs/heads/main", ZERO_SHA, SHA_2))

    slugs = {d.repository_id: d.slug for d in deliveries.deployments()}
    assert slugs == {int(ours["id"]): "web", int(theirs["id"]): "web-other-org"}
