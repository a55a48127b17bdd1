"""A fake GitHub for tests: a local REST API server that checks its callers, and webhook payloads.

See :class:`FakeGitHub` (``server.py``) and the payload factories (``payloads.py``).
"""

from .payloads import (
    DEFAULT_APP_ID,
    DEFAULT_APP_SLUG,
    DEFAULT_HOOK_ID,
    ZERO_SHA,
    account_id,
    headers,
    installation_payload,
    installation_repositories_payload,
    ping_payload,
    push_payload,
    sign,
    user_object,
)
from .server import (
    CHECK_RUN_CONCLUSIONS,
    CHECK_RUN_STATUSES,
    DEFAULT_PERMISSIONS,
    DEPLOYMENT_STATES,
    CheckRun,
    Deployment,
    FakeGitHub,
)

__all__ = [
    "CHECK_RUN_CONCLUSIONS",
    "CHECK_RUN_STATUSES",
    "DEFAULT_APP_ID",
    "DEFAULT_APP_SLUG",
    "DEFAULT_HOOK_ID",
    "DEFAULT_PERMISSIONS",
    "DEPLOYMENT_STATES",
    "ZERO_SHA",
    "CheckRun",
    "Deployment",
    "FakeGitHub",
    "account_id",
    "headers",
    "installation_payload",
    "installation_repositories_payload",
    "ping_payload",
    "push_payload",
    "sign",
    "user_object",
]
