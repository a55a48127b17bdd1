"""Webhook deliveries as GitHub sends them to a GitHub App, built for tests.

The shapes follow GitHub's webhook payloads for the events Slipway handles (ping, installation,
installation_repositories, push, pull_request, check_run, check_suite) but keep only fields a
receiver plausibly reads. Repository objects come from
:meth:`tests.support.fake_github.FakeGitHub.add_repository`, pull requests from ``add_pull_request``
and check runs from ``check_run_json``, so the ids, names and API URLs in a delivery match what the
fake GitHub serves.

Account ids are derived from the login (:func:`account_id`), so the same login always gets the
same id in payloads and in the fake server's answers.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

DEFAULT_APP_ID = 1234
DEFAULT_APP_SLUG = "slipway-test"
DEFAULT_HOOK_ID = 424242
GITHUB_API = "https://api.github.com"
GITHUB_WEB = "https://github.com"
ZERO_SHA = "0" * 40
"""The `before` of a push that creates a ref and the `after` of one that deletes it."""

APP_EVENTS = ("check_run", "check_suite", "pull_request", "push")
"""Webhook events the test App subscribes to."""

INSTALLATION_ACTIONS = ("created", "deleted", "suspend", "unsuspend")
INSTALLATION_REPOSITORIES_ACTIONS = ("added", "removed")
PULL_REQUEST_ACTIONS = (
    "assigned",
    "auto_merge_disabled",
    "auto_merge_enabled",
    "closed",
    "converted_to_draft",
    "demilestoned",
    "dequeued",
    "edited",
    "enqueued",
    "labeled",
    "locked",
    "milestoned",
    "opened",
    "ready_for_review",
    "reopened",
    "review_request_removed",
    "review_requested",
    "synchronize",
    "unassigned",
    "unlabeled",
    "unlocked",
)
CHECK_RUN_ACTIONS = ("created", "completed", "rerequested", "requested_action")
CHECK_SUITE_ACTIONS = ("completed", "requested", "rerequested")
_OPEN_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review", "converted_to_draft")

__all__ = [
    "APP_EVENTS",
    "CHECK_RUN_ACTIONS",
    "CHECK_SUITE_ACTIONS",
    "DEFAULT_APP_ID",
    "DEFAULT_APP_SLUG",
    "DEFAULT_HOOK_ID",
    "PULL_REQUEST_ACTIONS",
    "ZERO_SHA",
    "account_id",
    "app_object",
    "check_run_payload",
    "check_suite_payload",
    "headers",
    "installation_object",
    "installation_payload",
    "installation_repositories_payload",
    "iso_time",
    "node_id",
    "ping_payload",
    "pull_request_payload",
    "push_payload",
    "sign",
    "user_object",
]


def iso_time(moment: datetime | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, GitHub's timestamp format (now when no moment is given)."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def account_id(login: str) -> int:
    """A stable numeric id for a user, organization or bot login (case-insensitive, like GitHub)."""
    return 10_000_000 + zlib.crc32(login.lower().encode()) % 90_000_000


def node_id(kind: str, number: int) -> str:
    """A GraphQL node id in GitHub's legacy format: ``node_id("User", 1) == "MDQ6VXNlcjE="``."""
    return base64.b64encode(f"{len(kind):02d}:{kind}{number}".encode()).decode()


def user_object(login: str, *, user_type: str = "User", api_url: str = GITHUB_API) -> JSON:
    """A ``simple-user`` object (webhook ``sender``, repository ``owner``, comment ``user``...).

    ``user_type`` is ``User``, ``Organization`` or ``Bot``; a bot's login ends in ``[bot]`` and
    its ``html_url`` is the App's page.
    """
    if user_type not in ("User", "Organization", "Bot"):
        raise ValueError(f"user_type must be User, Organization or Bot, not {user_type!r}")
    number = account_id(login)
    api = api_url.rstrip("/")
    users = f"{api}/users/{login}"
    html = (
        f"{GITHUB_WEB}/apps/{login.removesuffix('[bot]')}"
        if user_type == "Bot"
        else f"{GITHUB_WEB}/{login}"
    )
    return {
        "login": login,
        "id": number,
        "node_id": node_id(user_type, number),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
        "gravatar_id": "",
        "url": users,
        "html_url": html,
        "followers_url": f"{users}/followers",
        "following_url": f"{users}/following{{/other_user}}",
        "gists_url": f"{users}/gists{{/gist_id}}",
        "starred_url": f"{users}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{users}/subscriptions",
        "organizations_url": f"{users}/orgs",
        "repos_url": f"{users}/repos",
        "events_url": f"{users}/events{{/privacy}}",
        "received_events_url": f"{users}/received_events",
        "type": user_type,
        "site_admin": False,
    }


def installation_object(
    installation_id: int,
    account: Mapping[str, Any],
    *,
    app_id: int = DEFAULT_APP_ID,
    app_slug: str = DEFAULT_APP_SLUG,
    permissions: Mapping[str, str] | None = None,
    repository_selection: str = "selected",
    suspended_by: Mapping[str, Any] | None = None,
    suspended_at: str | None = None,
    created_at: str | None = None,
    api_url: str = GITHUB_API,
) -> JSON:
    """The full ``installation`` object (installation webhooks, ``GET /app/installations``)."""
    api = api_url.rstrip("/")
    created = created_at or iso_time()
    is_org = account.get("type") == "Organization"
    return {
        "id": installation_id,
        "account": dict(account),
        "repository_selection": repository_selection,
        "access_tokens_url": f"{api}/app/installations/{installation_id}/access_tokens",
        "repositories_url": f"{api}/installation/repositories",
        "html_url": (
            f"{GITHUB_WEB}/organizations/{account['login']}/settings/installations/{installation_id}"
            if is_org
            else f"{GITHUB_WEB}/settings/installations/{installation_id}"
        ),
        "app_id": app_id,
        "app_slug": app_slug,
        "target_id": account["id"],
        "target_type": "Organization" if is_org else "User",
        "permissions": dict(permissions or _default_permissions()),
        "events": list(APP_EVENTS),
        "created_at": created,
        "updated_at": created,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": dict(suspended_by) if suspended_by is not None else None,
        "suspended_at": suspended_at,
    }


def _default_permissions() -> dict[str, str]:
    return {
        "checks": "write",
        "contents": "read",
        "deployments": "write",
        "issues": "write",
        "metadata": "read",
        "pull_requests": "write",
        "statuses": "write",
    }


def _repository_lite(repository: Mapping[str, Any]) -> JSON:
    """The short repository form installation events use."""
    return {key: repository[key] for key in ("id", "node_id", "name", "full_name", "private")}


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value for a delivery body: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers(
    event: str,
    delivery_id: str,
    body: bytes,
    secret: str,
    *,
    hook_id: int = DEFAULT_HOOK_ID,
    app_id: int = DEFAULT_APP_ID,
) -> dict[str, str]:
    """The HTTP headers GitHub sends with an App webhook delivery of ``body``."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(app_id),
        "X-Hub-Signature-256": sign(body, secret),
    }


def ping_payload(
    app_id: int = DEFAULT_APP_ID,
    hook_id: int = DEFAULT_HOOK_ID,
    *,
    url: str = "https://slipway.example.com/webhooks/github",
    owner_login: str = "slipway-owner",
) -> JSON:
    """The ``ping`` GitHub sends to an App's webhook URL when the App is registered."""
    now = iso_time()
    return {
        "zen": "Design for failure.",
        "hook_id": hook_id,
        "hook": {
            "type": "App",
            "id": hook_id,
            "name": "web",
            "active": True,
            "app_id": app_id,
            "events": list(APP_EVENTS),
            "config": {"content_type": "json", "url": url, "insecure_ssl": "0"},
            "updated_at": now,
            "created_at": now,
            "url": f"{GITHUB_API}/app/hook/config",
            "ping_url": f"{GITHUB_API}/app/hook/pings",
            "deliveries_url": f"{GITHUB_API}/app/hook/deliveries",
        },
        "sender": user_object(owner_login),
    }


def installation_payload(
    action: str,
    installation_id: int,
    account_login: str,
    repositories: Sequence[Mapping[str, Any]],
    *,
    account_type: str = "User",
    app_id: int = DEFAULT_APP_ID,
    app_slug: str = DEFAULT_APP_SLUG,
    sender_login: str | None = None,
) -> JSON:
    """An ``installation`` delivery: ``action`` is created, deleted, suspend or unsuspend.

    ``repositories`` are repository objects (as returned by ``FakeGitHub.add_repository``);
    the delivery carries their short form (id, node_id, name, full_name, private).
    """
    if action not in INSTALLATION_ACTIONS:
        raise ValueError(
            f"installation action must be one of {INSTALLATION_ACTIONS}, not {action!r}"
        )
    account = user_object(account_login, user_type=account_type)
    sender = user_object(sender_login or account_login)
    suspended = action == "suspend"
    payload: JSON = {
        "action": action,
        "installation": installation_object(
            installation_id,
            account,
            app_id=app_id,
            app_slug=app_slug,
            suspended_by=sender if suspended else None,
            suspended_at=iso_time() if suspended else None,
        ),
        "repositories": [_repository_lite(repo) for repo in repositories],
        "sender": sender,
    }
    if action != "created":
        payload["requester"] = None
    return payload


def installation_repositories_payload(
    action: str,
    installation_id: int,
    account_login: str,
    added: Sequence[Mapping[str, Any]],
    removed: Sequence[Mapping[str, Any]],
    *,
    account_type: str = "User",
    app_id: int = DEFAULT_APP_ID,
    app_slug: str = DEFAULT_APP_SLUG,
    sender_login: str | None = None,
) -> JSON:
    """An ``installation_repositories`` delivery (``action`` added or removed)."""
    if action not in INSTALLATION_REPOSITORIES_ACTIONS:
        raise ValueError(
            "installation_repositories action must be one of "
            f"{INSTALLATION_REPOSITORIES_ACTIONS}, not {action!r}"
        )
    account = user_object(account_login, user_type=account_type)
    sender = user_object(sender_login or account_login)
    return {
        "action": action,
        "installation": installation_object(
            installation_id, account, app_id=app_id, app_slug=app_slug
        ),
        "repository_selection": "selected",
        "repositories_added": [_repository_lite(repo) for repo in added],
        "repositories_removed": [_repository_lite(repo) for repo in removed],
        "requester": None,
        "sender": sender,
    }


def _epoch(value: Any) -> Any:
    """Push deliveries give a repository's created_at/pushed_at as Unix seconds."""
    if isinstance(value, str):
        return int(datetime.fromisoformat(value).timestamp())
    return value


def _organization_object(owner: Mapping[str, Any]) -> JSON:
    login = owner["login"]
    api = str(owner["url"]).rsplit("/users/", 1)[0]
    org = f"{api}/orgs/{login}"
    return {
        "login": login,
        "id": owner["id"],
        "node_id": owner["node_id"],
        "url": org,
        "repos_url": f"{org}/repos",
        "events_url": f"{org}/events",
        "hooks_url": f"{org}/hooks",
        "issues_url": f"{org}/issues",
        "members_url": f"{org}/members{{/member}}",
        "public_members_url": f"{org}/public_members{{/member}}",
        "avatar_url": owner["avatar_url"],
        "description": None,
    }


def push_payload(
    repository: Mapping[str, Any],
    installation_id: int,
    ref: str,
    before: str,
    after: str,
    *,
    created: bool = False,
    deleted: bool = False,
    forced: bool = False,
    message: str = "Update the app",
    pusher: str = "octocat",
    base_ref: str | None = None,
    tree_id: str | None = None,
    added: Iterable[str] = (),
    removed: Iterable[str] = (),
    modified: Iterable[str] = (),
    timestamp: str | None = None,
) -> JSON:
    """A ``push`` delivery for one pushed commit (``after``) on ``ref`` (e.g. ``refs/heads/main``).

    For a created ref pass ``created=True`` (``before`` is then usually :data:`ZERO_SHA`); for a
    deleted ref pass ``deleted=True`` and ``after=ZERO_SHA``: such a delivery has no commits and
    ``head_commit`` is ``None``.
    """
    if not ref.startswith("refs/"):
        raise ValueError(f"push ref must be a full ref such as refs/heads/main, not {ref!r}")
    if deleted and after != ZERO_SHA:
        raise ValueError("a push that deletes a ref has after == ZERO_SHA")
    if created and deleted:
        raise ValueError("a push cannot both create and delete a ref")
    html = str(repository["html_url"])
    repo = copy.deepcopy(dict(repository))
    repo["created_at"] = _epoch(repo.get("created_at"))
    repo["pushed_at"] = int(datetime.now(UTC).timestamp())
    repo.setdefault("stargazers", repo.get("stargazers_count", 0))
    repo.setdefault("master_branch", repo.get("default_branch", "main"))
    author = {
        "name": pusher,
        "email": f"{pusher}@users.noreply.github.com",
        "username": pusher,
    }
    head_commit: JSON | None = None
    if not deleted:
        head_commit = {
            "id": after,
            "tree_id": tree_id or hashlib.sha1(f"tree:{after}".encode()).hexdigest(),  # noqa: S324
            "distinct": True,
            "message": message,
            "timestamp": timestamp or iso_time(),
            "url": f"{html}/commit/{after}",
            "author": dict(author),
            "committer": dict(author),
            "added": list(added),
            "removed": list(removed),
            "modified": list(modified),
        }
    if created:
        compare = f"{html}/commit/{after}"
    else:
        compare = f"{html}/compare/{before[:12]}...{after[:12]}"
    payload: JSON = {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": repo,
        "pusher": {"name": pusher, "email": f"{pusher}@users.noreply.github.com"},
        "sender": user_object(pusher),
        "installation": _installation_lite(installation_id),
        "created": created,
        "deleted": deleted,
        "forced": forced,
        "base_ref": base_ref,
        "compare": compare,
        "commits": [] if head_commit is None else [copy.deepcopy(head_commit)],
        "head_commit": head_commit,
    }
    return _with_organization(payload, repository)


def _installation_lite(installation_id: int) -> JSON:
    return {"id": installation_id, "node_id": node_id("IntegrationInstallation", installation_id)}


def _with_organization(payload: JSON, repository: Mapping[str, Any]) -> JSON:
    """Deliveries for an organization's repository also carry the ``organization``."""
    owner = repository.get("owner")
    if isinstance(owner, Mapping) and owner.get("type") == "Organization":
        payload["organization"] = _organization_object(owner)
    return payload


def _check_action(kind: str, action: str, allowed: Sequence[str]) -> None:
    if action not in allowed:
        raise ValueError(f"{kind} action must be one of {tuple(allowed)}, not {action!r}")


def app_object(
    app_id: int = DEFAULT_APP_ID,
    app_slug: str = DEFAULT_APP_SLUG,
    *,
    name: str = "Slipway Test",
    owner_login: str = "slipway-owner",
    created_at: str = "2024-01-01T00:00:00Z",
    permissions: Mapping[str, str] | None = None,
    api_url: str = GITHUB_API,
) -> JSON:
    """The ``app`` object of check suite and check run deliveries."""
    return {
        "id": app_id,
        "slug": app_slug,
        "node_id": node_id("Integration", app_id),
        "owner": user_object(owner_login, user_type="Organization", api_url=api_url),
        "name": name,
        "description": "Push-to-deploy (test App)",
        "external_url": "https://slipway.example.com",
        "html_url": f"{GITHUB_WEB}/apps/{app_slug}",
        "created_at": created_at,
        "updated_at": created_at,
        "permissions": dict(permissions or _default_permissions()),
        "events": list(APP_EVENTS),
    }


def pull_request_payload(
    action: str,
    repository: Mapping[str, Any],
    installation_id: int,
    pull_request: Mapping[str, Any],
    *,
    sender: str = "octo-dev",
    before: str | None = None,
    changes: Mapping[str, Any] | None = None,
    label: Mapping[str, Any] | None = None,
) -> JSON:
    """A ``pull_request`` delivery; ``pull_request`` is what ``FakeGitHub.add_pull_request``,
    ``update_pull_request`` or ``pull_request`` returned, after the change the action reports.

    ``synchronize`` (new commits on the head branch) needs ``before``, the head SHA before the
    push; ``after`` is the pull request's head SHA. ``edited`` carries ``changes``
    (e.g. ``{"title": {"from": "old"}}``). The pull request's state must fit the action:
    ``closed`` needs it closed (``merged`` tells a merge from a close), ``opened``,
    ``reopened``, ``synchronize``, ``ready_for_review`` and ``converted_to_draft`` need it open,
    and the last two need ``draft`` false and true. ``labeled`` and ``unlabeled`` carry
    ``label``, the object ``FakeGitHub.label_pull_request`` or ``unlabel_pull_request``
    returned (the pull request carries it after ``labeled``, not after ``unlabeled``).
    """
    _check_action("pull_request", action, PULL_REQUEST_ACTIONS)
    state, draft = pull_request.get("state"), pull_request.get("draft")
    if action == "closed" and state != "closed":
        raise ValueError("a closed delivery carries the closed pull request (update it first)")
    if action in _OPEN_ACTIONS and state != "open":
        raise ValueError(f"a {action} delivery carries an open pull request, not a {state} one")
    if action == "ready_for_review" and draft:
        raise ValueError("a ready_for_review delivery carries a pull request that is not a draft")
    if action == "converted_to_draft" and not draft:
        raise ValueError("a converted_to_draft delivery carries a draft pull request")
    if pull_request["base"]["repo"]["id"] != repository["id"]:
        raise ValueError("the pull request's base repository is not the delivery's repository")
    if (before is not None) != (action == "synchronize"):
        raise ValueError("before (the old head SHA) goes with synchronize deliveries, and only")
    after = str(pull_request["head"]["sha"])
    if before is not None and (len(before) != 40 or before == after):
        raise ValueError(
            f"before must be the 40-character head SHA before the push, not {before!r}"
        )
    if (label is not None) != (action in ("labeled", "unlabeled")):
        raise ValueError("label (the label put on or taken off) goes with labeled/unlabeled only")
    if label is not None:
        carried = any(found["name"] == label["name"] for found in pull_request["labels"])
        if carried != (action == "labeled"):
            raise ValueError(
                f"a {action} delivery carries the pull request "
                + ("with" if action == "labeled" else "without")
                + f" {label['name']!r} (update it first)"
            )
    payload: JSON = {
        "action": action,
        "number": pull_request["number"],
        "pull_request": copy.deepcopy(dict(pull_request)),
    }
    if label is not None:
        payload["label"] = copy.deepcopy(dict(label))
    if action == "synchronize":
        payload.update({"before": before, "after": after})
    if action == "edited":
        payload["changes"] = copy.deepcopy(dict(changes or {}))
    elif changes is not None:
        raise ValueError("changes go with edited deliveries only")
    payload["repository"] = copy.deepcopy(dict(repository))
    _with_organization(payload, repository)
    payload["installation"] = _installation_lite(installation_id)
    payload["sender"] = user_object(sender)
    return payload


def check_run_payload(
    action: str,
    repository: Mapping[str, Any],
    installation_id: int,
    check_run_json: Mapping[str, Any],
    *,
    sender: str = "octo-dev",
    requested_action_identifier: str | None = None,
) -> JSON:
    """A ``check_run`` delivery for one of the App's check runs, as
    ``FakeGitHub.check_run_json(full_name, check_run_id)`` gives it.

    ``rerequested``: someone clicked "Re-run" (GitHub offers it on completed runs only).
    ``requested_action``: someone clicked one of the run's action buttons; pass its
    ``requested_action_identifier``.
    """
    _check_action("check_run", action, CHECK_RUN_ACTIONS)
    suite = check_run_json.get("check_suite")
    if not isinstance(suite, Mapping) or "head_sha" not in suite:
        raise ValueError(
            "check_run_json needs the whole check_suite: use FakeGitHub.check_run_json(), "
            "not the REST answer"
        )
    if action in ("rerequested", "completed") and check_run_json.get("status") != "completed":
        raise ValueError(f"a {action} delivery carries a completed check run")
    if (requested_action_identifier is not None) != (action == "requested_action"):
        raise ValueError("requested_action_identifier goes with requested_action, and only")
    payload: JSON = {"action": action, "check_run": copy.deepcopy(dict(check_run_json))}
    if requested_action_identifier is not None:
        if not requested_action_identifier or len(requested_action_identifier) > 20:
            raise ValueError("an action identifier has 1 to 20 characters")
        payload["requested_action"] = {"identifier": requested_action_identifier}
    payload["repository"] = copy.deepcopy(dict(repository))
    _with_organization(payload, repository)
    payload["sender"] = user_object(sender)
    payload["installation"] = _installation_lite(installation_id)
    return payload


def _minimal_pull_request(pull_request: Mapping[str, Any]) -> JSON:
    """The short form check suites and check runs list pull requests in."""
    if "head" not in pull_request or "base" not in pull_request:
        raise ValueError("pull_requests are pull request objects (FakeGitHub.pull_request())")

    def side(name: str) -> JSON:
        branch = pull_request[name]
        repo = branch["repo"]
        return {
            "ref": branch["ref"],
            "sha": branch["sha"],
            "repo": {"id": repo["id"], "url": repo["url"], "name": repo["name"]},
        }

    head, base = side("head"), side("base")
    if head["repo"]["id"] != base["repo"]["id"]:
        raise ValueError(
            "GitHub leaves pull requests from forks out of check suites (and their suites have "
            "head_branch null)"
        )
    return {
        "url": pull_request["url"],
        "id": pull_request["id"],
        "number": pull_request["number"],
        "head": head,
        "base": base,
    }


def check_suite_payload(
    action: str,
    repository: Mapping[str, Any],
    installation_id: int,
    *,
    head_sha: str,
    head_branch: str | None,
    sender: str = "octo-dev",
    pull_requests: Sequence[Mapping[str, Any]] = (),
    check_suite_id: int | None = None,
    before: str | None = None,
    status: str | None = None,
    conclusion: str | None = None,
    message: str = "Update the app",
    app_id: int = DEFAULT_APP_ID,
    app_slug: str = DEFAULT_APP_SLUG,
    latest_check_runs_count: int = 1,
) -> JSON:
    """A ``check_suite`` delivery (``rerequested``: someone clicked "Re-run all checks").

    ``head_branch`` is None for a suite whose commit came from a fork; ``pull_requests`` are
    pull request objects (``FakeGitHub.pull_request()``), shortened as GitHub lists them, and
    must not be from forks. ``check_suite_id`` defaults to a number derived from ``head_sha``;
    the fake's own id is ``fake.check_run_json(...)["check_suite"]["id"]``. ``status`` and
    ``conclusion`` default to queued/None for ``requested`` and completed/success otherwise.
    """
    _check_action("check_suite", action, CHECK_SUITE_ACTIONS)
    if len(head_sha) != 40:
        raise ValueError(f"head_sha must be a 40-character commit SHA, not {head_sha!r}")
    if status is None:
        status = "queued" if action == "requested" else "completed"
    if conclusion is None and status == "completed":
        conclusion = "success"
    suite_id = check_suite_id or 30_000_000_000 + zlib.crc32(head_sha.encode())
    now = iso_time()
    author = {"name": sender, "email": f"{sender}@users.noreply.github.com"}
    repo_url = str(repository["url"])
    api_url = repo_url.rsplit("/repos/", 1)[0]
    suite: JSON = {
        "id": suite_id,
        "node_id": node_id("CheckSuite", suite_id),
        "head_branch": head_branch,
        "head_sha": head_sha,
        "status": status,
        "conclusion": conclusion,
        "url": f"{repo_url}/check-suites/{suite_id}",
        "before": before,
        "after": head_sha,
        "pull_requests": [_minimal_pull_request(pull) for pull in pull_requests],
        "app": app_object(app_id, app_slug, api_url=api_url),
        "created_at": now,
        "updated_at": now,
        "latest_check_runs_count": latest_check_runs_count,
        "check_runs_url": f"{repo_url}/check-suites/{suite_id}/check-runs",
        "head_commit": {
            "id": head_sha,
            "tree_id": hashlib.sha1(f"tree:{head_sha}".encode()).hexdigest(),  # noqa: S324
            "message": message,
            "timestamp": now,
            "author": dict(author),
            "committer": dict(author),
        },
    }
    payload: JSON = {
        "action": action,
        "check_suite": suite,
        "repository": copy.deepcopy(dict(repository)),
    }
    _with_organization(payload, repository)
    payload["sender"] = user_object(sender)
    payload["installation"] = _installation_lite(installation_id)
    return payload
