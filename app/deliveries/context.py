"""What every event handler is given, and what more than one kind of event reads.

Handlers run inside one transaction (the caller commits it with the delivery's mark) and say
what the workers should do next in a WorkOrder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from app.deliveries.facts import NO_FACTS, CommitFacts
from app.kernel.crypto import SecretBox
from app.kernel.orders import WorkOrder


@dataclass(frozen=True)
class EventContext:
    session: Session
    secrets: SecretBox
    now: datetime
    delivery_id: str
    facts: CommitFacts = field(default_factory=lambda: NO_FACTS)


Handler = Callable[[EventContext, dict[str, object]], WorkOrder]
