"""GitHub's side of the manifest flow: trading the one-time code for the new App's credentials.

`POST /app-manifests/{code}/conversions` takes no authentication (the code is the credential)
and answers once: a second call with the same code, or one after the code's hour, is a 404.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed

from app.github.auth import REQUEST_TIMEOUT_SECONDS, USER_AGENT
from app.setup.flow import ConvertedApp, ManifestCodeRefused, ManifestConversionFailed

log = logging.getLogger(__name__)

AGAIN = "start again from the setup page"


class GitHubManifestConverter:
    """The `ManifestConverter` port on GitHub's REST API (githubkit, no authentication)."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    def convert(self, code: str) -> ConvertedApp:
        client: GitHub[Any] = GitHub(
            base_url=self.api_url + "/",
            user_agent=USER_AGENT,
            timeout=REQUEST_TIMEOUT_SECONDS,
            http_cache=False,
            auto_retry=False,  # the code works once: a retried POST would only be refused
        )
        try:
            with client:
                response = client.rest.apps.create_from_manifest(code)
        except RequestFailed as exc:
            status = exc.response.status_code
            if status in (404, 422):
                raise ManifestCodeRefused(
                    f"GitHub did not hand over the new App (HTTP {status}): the code it gave "
                    f"is good once and for one hour; {AGAIN}"
                ) from exc
            raise ManifestConversionFailed(
                f"GitHub refused to hand over the new App (HTTP {status}); {AGAIN}"
            ) from exc
        except (GitHubException, httpx.HTTPError) as exc:
            raise ManifestConversionFailed(
                f"cannot reach GitHub at {self.api_url} ({type(exc).__name__}); {AGAIN}"
            ) from exc
        # The raw JSON, not githubkit's strict model: a new or missing field Slipway does not use
        # must not lose an App GitHub already created.
        return converted_app(response.json())


def converted_app(body: Any) -> ConvertedApp:
    """The fields Slipway keeps from GitHub's 201 answer; the secrets are never logged."""
    try:
        owner = body["owner"]
        webhook_secret = body["webhook_secret"]
        if not webhook_secret:
            raise ManifestConversionFailed(
                "GitHub created the App without a webhook secret, so its deliveries could not "
                "be verified: delete the App on GitHub and start again from the setup page"
            )
        return ConvertedApp(
            id=int(body["id"]),
            slug=str(body["slug"]),
            name=str(body["name"]),
            owner_login=str(owner["login"]) if isinstance(owner, dict) else "",
            html_url=str(body["html_url"]),
            client_id=str(body["client_id"]),
            client_secret=str(body["client_secret"]),
            webhook_secret=str(webhook_secret),
            pem=str(body["pem"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.error("unexpected manifest conversion answer", extra={"missing": repr(exc)})
        raise ManifestConversionFailed(f"GitHub's answer lacks the App's {exc}: {AGAIN}") from exc
