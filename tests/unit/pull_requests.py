"""A minimal pull_request delivery for the unit tier, whose pull requests GitHub is not told of.

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


def check_run_payload(
    action: str,
    repository: dict[str, Any],
    installation_id: int,
    *,
    check_run_id: int,
    head_sha: str,
    external_id: str,
    sender: str,
    identifier: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": action,
        "check_run": {
            "id": check_run_id,
            "head_sha": head_sha,
            "external_id": external_id,
            "name": "Slipway",
            "check_suite": {"id": 1, "head_sha": head_sha, "head_branch": "feature"},
        },
        "repository": repository,
        "installation": {"id": installation_id},
        "sender": {"login": sender, "type": "User"},
    }
    if identifier is not None:
        payload["requested_action"] = {"identifier": identifier}
    return payload


def check_suite_payload(
    repository: dict[str, Any], installation_id: int, *, head_sha: str, sender: str
) -> dict[str, Any]:
    return {
        "action": "rerequested",
        "check_suite": {"id": 1, "head_sha": head_sha, "head_branch": "main"},
        "repository": repository,
        "installation": {"id": installation_id},
        "sender": {"login": sender, "type": "User"},
    }
