"""What each kind of webhook delivery does to the control plane, chosen from a table.

Handlers run inside one transaction and say what they did in an EventOutcome; the caller
commits, records the outcome on the Delivery and starts the revisions it names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError
from sqlmodel import Session

from app import installations
from app.crypto import SecretBox
from app.deployments import production_deployment
from app.github.webhooks import (
    NULL_SHA,
    InstallationEvent,
    InstallationRepositoriesEvent,
    PushEvent,
)
from app.models import Delivery, Installation, Repository
from app.revisions import create_revision

log = logging.getLogger(__name__)


@dataclass
class EventOutcome:
    summary: str
    start_revisions: list[str] = field(default_factory=list)
    cancelled_revisions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EventContext:
    session: Session
    secrets: SecretBox
    now: datetime
    delivery_id: str


Handler = Callable[[EventContext, dict[str, object]], EventOutcome]


def handle_ping(ctx: EventContext, payload: dict[str, object]) -> EventOutcome:
    return EventOutcome("pong: the webhook reaches Slipway")


def handle_installation(ctx: EventContext, payload: dict[str, object]) -> EventOutcome:
    event = InstallationEvent.model_validate(payload)
    match event.action:
        case "created":
            summary = installations.installation_created(
                ctx.session, event.installation, event.repositories or [], ctx.now
            )
        case "deleted":
            summary = installations.installation_deleted(ctx.session, event.installation, ctx.now)
        case "suspend" | "unsuspend":
            summary = installations.installation_suspended(
                ctx.session, event.installation, ctx.now, suspended=event.action == "suspend"
            )
        case other:
            summary = f"installation action {other!r} needs nothing"
    return EventOutcome(summary)


def handle_installation_repositories(ctx: EventContext, payload: dict[str, object]) -> EventOutcome:
    event = InstallationRepositoriesEvent.model_validate(payload)
    return EventOutcome(
        installations.repositories_changed(
            ctx.session,
            event.installation,
            event.repositories_added,
            event.repositories_removed,
            ctx.now,
        )
    )


def handle_push(ctx: EventContext, payload: dict[str, object]) -> EventOutcome:
    event = PushEvent.model_validate(payload)
    if event.deleted or event.after == NULL_SHA:
        return EventOutcome(f"{event.ref} was deleted: nothing to deploy")
    if event.branch is None:
        return EventOutcome(f"{event.ref} is not a branch: nothing to deploy")
    if event.installation is None:
        return EventOutcome("push without an installation: the App is not installed there")
    default_branch = event.repository.branch
    if event.branch != default_branch:
        return EventOutcome(
            f"push to {event.branch}, not the default branch {default_branch}: nothing to deploy"
        )
    installation = ctx.session.get(Installation, event.installation.id)
    if installation is None:
        # The App was installed before this platform saw it; the push itself proves access.
        installation = installations.upsert_installation(ctx.session, event.installation, ctx.now)
    if not installation.active:
        return EventOutcome(f"installation {installation.id} is suspended or deleted")
    repository = ctx.session.get(Repository, event.repository.id)
    if repository is not None and not repository.connected:
        return EventOutcome(f"{event.repository.full_name} is no longer connected to the App")
    repository = installations.connect_repository(
        ctx.session,
        installation.id,
        event.repository.id,
        event.repository.full_name,
        ctx.now,
        default_branch=default_branch,
    )
    ctx.session.flush()
    deployment = production_deployment(ctx.session, repository, ctx.now)
    message = event.head_commit.message if event.head_commit else ""
    result = create_revision(
        ctx.session,
        deployment,
        event.after,
        message,
        ctx.secrets,
        ctx.now,
        delivery_id=ctx.delivery_id,
    )
    revision = result.revision
    if not result.created:
        return EventOutcome(
            f"{event.after[:7]} is already revision #{revision.number} ({revision.id})"
        )
    return EventOutcome(
        f"revision #{revision.number} ({revision.id}) of {deployment.slug} for {event.after[:7]}",
        start_revisions=[revision.id],
        cancelled_revisions=[r.id for r in result.cancelled],
    )


HANDLERS: dict[str, Handler] = {
    "ping": handle_ping,
    "installation": handle_installation,
    "installation_repositories": handle_installation_repositories,
    "push": handle_push,
}


def process_delivery(
    session: Session, delivery: Delivery, secrets: SecretBox, now: datetime
) -> EventOutcome:
    """Apply one delivery; unknown events and unreadable payloads are recorded, not raised."""
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return EventOutcome(f"{delivery.event} events are recorded and ignored")
    payload = json.loads(delivery.payload)
    ctx = EventContext(session=session, secrets=secrets, now=now, delivery_id=delivery.id)
    try:
        return handler(ctx, payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        log.warning(
            "delivery payload unreadable",
            extra={"delivery_id": delivery.id, "event": delivery.event, "problems": problems},
        )
        session.rollback()
        return EventOutcome(f"payload could not be read ({problems}); nothing done")
