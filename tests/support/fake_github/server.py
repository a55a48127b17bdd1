"""A local stand-in for the GitHub REST API that also checks what the app sends it.

:class:`FakeGitHub` serves the endpoints Slipway calls (App JWT and installation-token auth,
tarball downloads, file contents, commits, pull requests, collaborator permissions, check runs,
deployments and their statuses, issue comments) on ``http://127.0.0.1:<free port>``. It answers
the way GitHub does, including the error status codes, and records every contract violation it
sees in :attr:`FakeGitHub.errors`, so a test can end with ``fake.assert_no_errors()``.

Repositories are real git directories: refs resolve with ``git rev-parse`` and tarballs are made
with ``git archive``, so the app under test gets exactly the commit it asked for.

The endpoints live in one module per area, each a mixin of :class:`~.core.FakeCore`:

- ``http.py``: the HTTP server, GitHub-style errors, request body checks;
- ``auth.py``: App JWTs and installation tokens; ``apps.py``: the App and its installations;
- ``repos.py``: repositories, tarballs, contents, commits;
- ``pulls.py``: pull requests and collaborator permissions;
- ``checks.py``, ``deployments.py``, ``comments.py``, ``issues.py``;
- ``oauth.py``: people signing in with the App (the OAuth web flow, ``/user/...``).
"""

from __future__ import annotations

from .apps import AppsMixin
from .checks import CHECK_RUN_CONCLUSIONS, CHECK_RUN_STATUSES, CheckRun
from .comments import CommentsMixin
from .core import DEFAULT_PERMISSIONS
from .deployments import DEPLOYMENT_STATES, Deployment, DeploymentsMixin
from .http import HttpError
from .issues import IssuesMixin
from .oauth import OAuthMixin
from .pulls import COLLABORATOR_ROLES, LEGACY_PERMISSION

__all__ = [
    "CHECK_RUN_CONCLUSIONS",
    "CHECK_RUN_STATUSES",
    "COLLABORATOR_ROLES",
    "DEFAULT_PERMISSIONS",
    "DEPLOYMENT_STATES",
    "LEGACY_PERMISSION",
    "CheckRun",
    "Deployment",
    "FakeGitHub",
    "HttpError",
]


class FakeGitHub(DeploymentsMixin, CommentsMixin, IssuesMixin, OAuthMixin, AppsMixin):
    """A fake ``api.github.com`` for one GitHub App, on 127.0.0.1 and a free port.

    >>> with FakeGitHub(app_id=1234, app_slug="slipway-test") as fake:
    ...     fake.add_installation(1, "octo")
    ...     repo = fake.add_repository(1, "octo", "web", git_dir)
    ...     ...  # run the app against fake.url with fake.private_key_pem
    ...     fake.assert_no_errors()

    ``private_key_pem``: reuse an App key (PEM, RSA) instead of generating a new one (~50 ms
    each, which adds up over many short tests). ``latency_seconds``: hold every API answer back
    that long (see :attr:`latency_seconds`), e.g. 0.1-0.3 to behave like api.github.com.
    """

    def _init_areas(self) -> None:
        self._init_apps()
        self._init_repos()
        self._init_pulls()
        self._init_checks()
        self._init_deployments()
        self._init_comments()
        self._init_issues()
        self._init_oauth()
        # Order matters where patterns overlap: ``/commits/{ref}/check-runs`` (checks) before
        # ``/commits/{ref}`` (repos), since a ref may contain slashes.
        self._set_routes(
            [
                *self._apps_routes(),
                *self._checks_routes(),
                *self._repos_routes(),
                *self._pulls_routes(),
                *self._deployments_routes(),
                *self._comments_routes(),
                *self._issues_routes(),
                *self._oauth_routes(),
            ]
        )
