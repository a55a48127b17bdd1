"""A fake GitHub for tests: a local REST API server that checks its callers, and webhook payloads.

See :class:`FakeGitHub` (``server.py``, which lists the modules of its areas) and the payload
factories (``payloads.py``).
"""

from .payloads import (
    CHECK_RUN_ACTIONS,
    CHECK_SUITE_ACTIONS,
    DEFAULT_APP_ID,
    DEFAULT_APP_SLUG,
    DEFAULT_HOOK_ID,
    PULL_REQUEST_ACTIONS,
    ZERO_SHA,
    account_id,
    app_object,
    check_run_payload,
    check_suite_payload,
    headers,
    installation_payload,
    installation_repositories_payload,
    ping_payload,
    pull_request_payload,
    push_payload,
    sign,
    user_object,
)
from .server import (
    CHECK_RUN_CONCLUSIONS,
    CHECK_RUN_STATUSES,
    COLLABORATOR_ROLES,
    DEFAULT_PERMISSIONS,
    DEPLOYMENT_STATES,
    LEGACY_PERMISSION,
    CheckRun,
    Deployment,
    FakeGitHub,
)

__all__ = [
    "CHECK_RUN_ACTIONS",
    "CHECK_RUN_CONCLUSIONS",
    "CHECK_RUN_STATUSES",
    "CHECK_SUITE_ACTIONS",
    "COLLABORATOR_ROLES",
    "DEFAULT_APP_ID",
    "DEFAULT_APP_SLUG",
    "DEFAULT_HOOK_ID",
    "DEFAULT_PERMISSIONS",
    "DEPLOYMENT_STATES",
    "LEGACY_PERMISSION",
    "PULL_REQUEST_ACTIONS",
    "ZERO_SHA",
    "CheckRun",
    "Deployment",
    "FakeGitHub",
    "account_id",
    "app_object",
    "check_run_payload",
    "check_suite_payload",
    "headers",
    "installation_payload",
    "installation_repositories_payload",
    "ping_payload",
    "pull_request_payload",
    "push_payload",
    "sign",
    "user_object",
]
