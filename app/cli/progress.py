"""What an operation started, and (`--wait`) following its revision until it is live or not.

Ctrl-C while waiting stops the waiting only: the revision goes on, and the command exits 130
(app.cli.root) after saying how to look at it again.
"""

from __future__ import annotations

import time
from typing import Any

from app.cli.addresses import address_of
from app.cli.client import ClientError, SlipwayClient
from app.cli.output import Output

WAIT_POLL_SECONDS = 0.5
WAIT_MAX_SECONDS = 3 * 3600
PHASES = ("queued", "building", "deploying", "live")
PHASE_STARTED = {
    "queued": "created_at",
    "building": "build_started_at",
    "deploying": "deploy_started_at",
    "live": "live_at",
}
ENDED = frozenset({"failed", "cancelled", "superseded"})


def report(client: SlipwayClient, accepted: dict[str, Any], output: Output, *, wait: bool) -> int:
    """Say what the API accepted; with `wait`, follow the revision it made."""
    revision = accepted.get("revision")
    if output.json and not wait:
        output.data(accepted)
        return 0
    if revision is None:
        output.say(accepted["message"])
        return 0
    address = address_of(accepted["deployment"]["slug"], revision)
    output.say(f"revision {address} ({revision['id']}): {accepted['message']}")
    if not wait:
        return 0
    try:
        return wait_for_revision(client, revision["id"], output)
    except KeyboardInterrupt:
        output.note(
            f"\nstopped waiting; {address} goes on (`slipway revisions view {address}` shows it)"
        )
        raise


def wait_for_revision(client: SlipwayClient, revision_id: str, output: Output) -> int:
    """Show each phase the revision reached (also one passed between two looks), with the
    log's last line; 1 when it does not go live."""
    shown = 0
    deadline = time.monotonic() + WAIT_MAX_SECONDS
    while time.monotonic() < deadline:
        revision = client.revision(revision_id)
        reached = [p for p in PHASES if revision.get(PHASE_STARTED[p])]
        for phase in reached[shown:]:
            output.state(phase, _last_line(client, revision_id) if phase != "queued" else "")
        shown = max(shown, len(reached))
        state = revision["state"]
        if state == "live":
            if output.json:
                output.data(revision)
            return 0
        if state in ENDED:
            output.state(state)
            output.error(f"revision #{revision['number']} {state}: {revision['error']}")
            if output.json:
                output.data(revision)
            return 1
        time.sleep(WAIT_POLL_SECONDS)
    output.error(f"gave up waiting for {revision_id}")
    return 1


def _last_line(client: SlipwayClient, revision_id: str) -> str:
    try:
        lines = [line for line in client.log(revision_id).splitlines() if line.strip()]
    except ClientError:
        return ""
    return lines[-1][:160] if lines else ""
