"""GET /setup and GET /setup/callback: the first-run pages that create the GitHub App.

Plain server-rendered HTML that works with JavaScript off: the manifest JSON is already in
the form's `manifest` field, and the form posts straight to GitHub. There is no user yet, so
the one-time setup token stands in for one: given as `?token=` (the link `slipway up` prints),
it is kept in a cookie scoped to /setup, which the browser brings back on GitHub's redirect to
the callback. Without it: 403, saying where the token is. Closed (404) once an App exists. The
pages never show a key or secret.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_502_BAD_GATEWAY,
)

from app.setup.flow import (
    AppAlreadyConfigured,
    AppSetup,
    CreatedApp,
    ManifestConversionFailed,
    SetupError,
    SetupForm,
    SetupTokenRefused,
)

TOKEN_COOKIE = "slipway_setup"  # noqa: S105 (a cookie's name, not a secret)
"""Holds the setup token between the page and GitHub's redirect back; only /setup sees it."""

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5}button,input{font-size:1rem;padding:.4rem .8rem}"
    ".error{border-left:4px solid #c62828;padding-left:1rem}"
)


def page(title: str, body: str, status_code: int = HTTP_200_OK) -> Response[str]:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return Response(
        html,
        status_code=status_code,
        media_type=MediaType.HTML,
        # The page holds a one-time state and its URL the token: never cached, never
        # framed, and the URL is not sent on as a Referer.
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        },
    )


def setup_page(form: SetupForm, token: str = "", *, secure: bool = False) -> Response[str]:
    where = (
        f"the organisation <strong>{escape(form.organization)}</strong>"
        if form.organization
        else "your own GitHub account"
    )
    body = (
        "<p>Slipway needs a GitHub App to receive pushes and report back. GitHub creates it "
        "from Slipway's manifest; you only confirm its name.</p>"
        f"<p>It will belong to {where}.</p>"
        f'<form id="create" action="{escape(form.action)}" method="post">'
        f'<input type="hidden" name="manifest" value="{escape(form.manifest)}">'
        '<button type="submit">Create the GitHub App on GitHub</button></form>'
        '<form id="organization" action="/setup" method="get"><p>'
        '<label for="org">Or create it under an organisation:</label> '
        f'<input id="org" name="organization" value="{escape(form.organization or "")}" '
        'placeholder="organisation name"> <button type="submit">Use it</button>'
        f'<input type="hidden" name="token" value="{escape(token)}"></p></form>'
    )
    response = page("Connect Slipway to GitHub", body)
    if token:
        response.cookies.append(
            Cookie(
                key=TOKEN_COOKIE,
                value=token,
                path="/setup",
                httponly=True,
                samesite="lax",  # sent on GitHub's top-level redirect back, not on a sub-request
                secure=secure,
            )
        )
    return response


def created_page(app: CreatedApp) -> Response[str]:
    body = (
        f"<p>GitHub created the App <strong>{escape(app.name)}</strong> "
        f"(id {app.id}, owned by {escape(app.owner_login)}). Slipway stored its key and "
        "secrets encrypted and accepts its webhooks from now on.</p>"
        f'<p><a id="install" href="{escape(app.install_url)}">Install {escape(app.name)}</a> '
        "on the repositories to deploy, then push to their default branch.</p>"
        f'<p>The App\'s settings: <a href="{escape(app.html_url)}">{escape(app.html_url)}</a></p>'
    )
    return page("GitHub App created", body)


def error_page(exc: SetupError) -> Response[str]:
    if isinstance(exc, AppAlreadyConfigured):
        return page("Not found", f"<p>{escape(str(exc))}</p>", HTTP_404_NOT_FOUND)
    if isinstance(exc, SetupTokenRefused):
        return page(
            "Setup token needed", f'<p class="error">{escape(str(exc))}</p>', HTTP_403_FORBIDDEN
        )
    failed = isinstance(exc, ManifestConversionFailed)
    status = HTTP_502_BAD_GATEWAY if failed else HTTP_400_BAD_REQUEST
    body = f'<p class="error">{escape(str(exc))}</p><p><a href="/setup">Start again</a></p>'
    return page("Setup did not finish", body, status)


def _setup_error(_: Request[Any, Any, Any], exc: SetupError) -> Response[str]:
    return error_page(exc)


class SetupController(Controller):
    path = "/setup"
    exception_handlers = {SetupError: _setup_error}

    @get("/", media_type=MediaType.HTML, sync_to_thread=True)
    def show(
        self,
        request: Request[Any, Any, Any],
        app_setup: NamedDependency[AppSetup],
        organization: FromQuery[str | None] = None,
        token: FromQuery[str | None] = None,
    ) -> Response[str]:
        offered = token or request.cookies.get(TOKEN_COOKIE)
        form = app_setup.start(organization, offered)
        assert offered is not None  # start() refused a missing one
        return setup_page(form, offered, secure=app_setup.https)

    @get("/callback", media_type=MediaType.HTML, sync_to_thread=True)
    def callback(
        self,
        request: Request[Any, Any, Any],
        app_setup: NamedDependency[AppSetup],
        code: FromQuery[str | None] = None,
        # `state` is a name Litestar reserves for the app's state: read the query key by alias.
        one_time_state: Annotated[str | None, QueryParameter(name="state")] = None,
        token: FromQuery[str | None] = None,
    ) -> Response[str]:
        offered = token or request.cookies.get(TOKEN_COOKIE)
        return created_page(app_setup.complete(code, one_time_state, offered))
