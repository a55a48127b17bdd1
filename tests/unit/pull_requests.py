"""A minimal pull_request delivery for the unit tier, where commits exist only in RecordingGitHub.

The e2e tier uses the fake GitHub's full payloads; this one carries what Slipway reads.
"""

from __future__ import annotations

from typing import Any


def pull_request_payload(
    action: str,
    repository: dict[str, Any],
    installation_id: int,
    pull_request: dict[str, Any],
    *,
    sender: str,
) -> dict[str, Any]:
    return {
        "action": action,
        "number": pull_request["number"],
        "pull_request": pull_request,
        "repository": repository,
        "installation": {"id": installation_id},
        "sender": {"login": sender, "type": "User"},
    }
