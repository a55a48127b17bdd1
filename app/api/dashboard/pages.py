"""The dashboard's pages and forms: thin over the services the REST API uses.

Reading needs no JavaScript; every change is a POSTed form carrying the session's CSRF token,
answered with a redirect back to the page (so a reload does not repeat it). What a page shows
comes from the same views and operations as /api (app/api/deployments.py): one truth.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from arq.connections import ArqRedis
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import File, Redirect
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_401_UNAUTHORIZED
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.access.browser_sessions import COOKIE, CSRF_FIELD, STATE_COOKIE, BrowserSession
from app.access.follows import LogFollows
from app.access.links import EXPIRES, SIGNATURE, LinkSigner
from app.api.auth import SIGNED_LINK
from app.api.dashboard.charts import Chart, chart, lines_chart, sparkline
from app.api.dashboard.render import STATIC, Pages
from app.api.dashboard.viewer import Doorman, Viewer
from app.api.deployments import build_log, carry_out, deployment_summaries, deployment_view
from app.api.logs import server_logs as api_server_logs
from app.api.schemas import DeploymentView
from app.deliveries.approvals import approve_revision
from app.deployments import revisions as revision_store
from app.deployments.environment import EnvChange, EnvScope
from app.deployments.operations import DeploymentOperations
from app.deployments.registry import get_deployment, list_deployments
from app.kernel.db import SessionFactory
from app.kernel.errors import (
    ConflictError,
    DatabaseError,
    InvalidRequest,
    NotFoundError,
    PermissionDenied,
)
from app.kernel.models import (
    PENDING_STATES,
    Deployment,
    MetricPoint,
    ReplicaMetricPoint,
    Repository,
    Revision,
)
from app.kernel.orders import WorkOrder
from app.kernel.ports import Clock
from app.kernel.settings import Settings
from app.kernel.timestamps import utcnow
from app.replicas.autoscaler import autoscale_defaults
from app.replicas.metrics import COARSE_STEP_SECONDS, replica_series, request_counts, series
from app.replicas.scaling import moment, scaling_report
from app.replicas.server_logs import LogQuery, ServerLogs, stamp_of
from app.rollout.pipeline import PipelineConfig
from app.setup.flow import OAUTH_CALLBACK_PATH
from builders.errors import EngineError
from manifests.errors import SlipwayError

BASE = "/dashboard"
REVISIONS_SHOWN = 50
"""The newest revisions on a deployment's page; the API lists them all."""
LOG_BYTES_SHOWN = 512 * 1024
"""A build log's last half megabyte on its page (the whole file: /api/revisions/<id>/logs)."""
DECISIONS_SHOWN = 10
"""The autoscaler's newest decisions on a deployment's page (all: GET .../scaling)."""
CHART_WINDOW = timedelta(hours=1)
"""What the charts and sparklines cover, at the 1-minute step."""
LOG_LINES_SHOWN = 200
"""Server-log lines a deployment's page starts with, rendered on the server so they read
without JavaScript (the API's `limit` goes further)."""
MIB = 1024 * 1024
STATIC_FILES = frozenset({"dashboard.css", "dashboard.js"})
HTML = "text/html; charset=utf-8"


# -- helpers the templates use ------------------------------------------------------------


def stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return f"{(end - start).total_seconds():.1f} s"


def _commit_link(settings: Settings, full_name: str) -> Callable[[str], str]:
    base = f"{str(settings.github_url).rstrip('/')}/{full_name}"
    return lambda sha: f"{base}/commit/{sha}"


# -- who is asking ------------------------------------------------------------------------


async def _viewer(request: Request[Any, Any, Any], doorman: Doorman) -> Viewer | None:
    return await asyncio.to_thread(doorman.viewer, request.cookies.get(COOKIE))


async def _signed_in(request: Request[Any, Any, Any], doorman: Doorman) -> Viewer:
    viewer = await _viewer(request, doorman)
    if viewer is None:
        raise NotAuthorizedException(detail="sign in to see the dashboard")
    return viewer


def _check_csrf(viewer: Viewer, data: dict[str, Any]) -> None:
    """Every form carries the session's token: a page of another site cannot post one."""
    sent = str(data.get(CSRF_FIELD) or "")
    if not sent or not hmac.compare_digest(sent, viewer.csrf):
        raise PermissionDeniedException(
            detail="the form's CSRF token is missing or stale: reload the page and try again"
        )


def _page(pages: Pages, name: str, *, status_code: int = 200, **context: Any) -> Response[str]:
    context.setdefault("notice", None)
    context.setdefault("stamp", stamp)
    context.setdefault("seconds", seconds)
    html = pages.render(name, **context)
    return Response(
        html,
        media_type=HTML,
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
        },
    )


def _back(path: str, notice: str | None = None) -> Redirect:
    query = f"?{urlencode({'notice': notice})}" if notice else ""
    return Redirect(path=f"{path}{query}", status_code=HTTP_303_SEE_OTHER)


def _session_cookie(value: str, max_age: int, secure: bool) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
        max_age=max_age,
    )


def _secure(settings: Settings) -> bool:
    return settings.api_url.startswith("https://")


# -- static files ---------------------------------------------------------------------------


@get("/static/{name:str}", include_in_schema=False)
async def static_file(name: FromPath[str]) -> File:
    """The dashboard's CSS and script, served by Slipway itself (no CDN)."""
    if name not in STATIC_FILES:
        raise HTTPException(status_code=404, detail="no such file")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return File(path=STATIC / name, media_type=media, headers={"Cache-Control": "max-age=3600"})


# -- signing in and out ---------------------------------------------------------------------


@get("/sign-in", include_in_schema=False)
async def sign_in_page(
    request: Request[Any, Any, Any],
    doorman: NamedDependency[Doorman],
    pages: NamedDependency[Pages],
    settings: NamedDependency[Settings],
    notice: FromQuery[str | None] = None,
) -> Response[str]:
    client = await asyncio.to_thread(doorman.oauth_client)
    csrf = secrets.token_urlsafe(24)
    response = _page(
        pages,
        "sign_in.mako",
        title="Sign in",
        viewer=None,
        github=client is not None,
        csrf=csrf,
        notice=notice,
    )
    response.set_cookie(_state_cookie(csrf, settings))
    return response


def _state_cookie(value: str, settings: Settings) -> Cookie:
    return Cookie(
        key=STATE_COOKIE,
        value=value,
        path=BASE,
        httponly=True,
        samesite="lax",
        secure=_secure(settings),
        max_age=600,
    )


@post("/sign-in/token", include_in_schema=False)
async def sign_in_with_token(
    request: Request[Any, Any, Any],
    doorman: NamedDependency[Doorman],
    settings: NamedDependency[Settings],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    expected = request.cookies.get(STATE_COOKIE) or ""
    sent = str(data.get(CSRF_FIELD) or "")
    if not expected or not hmac.compare_digest(expected, sent):
        raise PermissionDeniedException(detail="the sign-in form is stale: reload it")
    found = await asyncio.to_thread(doorman.sign_in_with_token, str(data.get("token") or ""))
    if found is None:
        return _back(f"{BASE}/sign-in", "That token is unknown or was revoked.")
    return _signed_in_response(found, doorman, settings)


def _signed_in_response(found: BrowserSession, doorman: Doorman, settings: Settings) -> Redirect:
    response = Redirect(path=f"{BASE}/", status_code=HTTP_303_SEE_OTHER)
    max_age = int(doorman.browser_sessions.lifetime.total_seconds())
    response.set_cookie(
        _session_cookie(doorman.browser_sessions.seal(found), max_age, _secure(settings))
    )
    response.delete_cookie(STATE_COOKIE, path=BASE)
    return response


@get("/sign-in/github", include_in_schema=False)
async def sign_in_with_github(
    doorman: NamedDependency[Doorman], settings: NamedDependency[Settings]
) -> Redirect:
    client = await asyncio.to_thread(doorman.oauth_client)
    if client is None:
        return _back(f"{BASE}/sign-in", "GitHub sign-in is not available here: use a token.")
    state = secrets.token_urlsafe(24)
    target = doorman.github.authorize_url(client, settings.api_url + OAUTH_CALLBACK_PATH, state)
    response = Redirect(path=target, status_code=HTTP_303_SEE_OTHER)
    response.set_cookie(_state_cookie(state, settings))
    return response


@get(OAUTH_CALLBACK_PATH.removeprefix(BASE), include_in_schema=False)
async def oauth_callback(
    request: Request[Any, Any, Any],
    doorman: NamedDependency[Doorman],
    settings: NamedDependency[Settings],
    code: FromQuery[str | None] = None,
    state_: Annotated[str | None, QueryParameter(name="state")] = None,
) -> Redirect:
    state = state_
    expected = request.cookies.get(STATE_COOKIE) or ""
    if not code or not state or not expected or not hmac.compare_digest(expected, state):
        return _back(f"{BASE}/sign-in", "The sign-in did not come back as it left: try again.")
    client = await asyncio.to_thread(doorman.oauth_client)
    if client is None:
        return _back(f"{BASE}/sign-in", "GitHub sign-in is not available here: use a token.")
    found = await asyncio.to_thread(
        doorman.sign_in_with_github, client, code, settings.api_url + OAUTH_CALLBACK_PATH
    )
    return _signed_in_response(found, doorman, settings)


@post("/sign-out", include_in_schema=False)
async def sign_out(
    request: Request[Any, Any, Any],
    doorman: NamedDependency[Doorman],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    viewer = await _signed_in(request, doorman)
    _check_csrf(viewer, data)
    response = _back(f"{BASE}/sign-in", "Signed out.")
    response.delete_cookie(COOKIE, path="/")
    return response


# -- the deployments ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    view: DeploymentView
    preview: bool
    live_number: int | None
    last_deploy: str | None
    spark: str
    """The request rate of the last hour, as inline SVG."""


def _rows(session: Session, viewer: Viewer, settings: Settings) -> list[list[Row]]:
    """The deployments the viewer may read, each production one followed by its previews."""
    shown = [d for d in list_deployments(session) if viewer.may_read(d.repository_id)]
    ids = [d.id for d in shown]
    last = dict(
        session.exec(
            select(Revision.deployment_id, func.max(Revision.created_at))
            .where(col(Revision.deployment_id).in_(ids))
            .group_by(col(Revision.deployment_id))
        ).all()
    )
    live_ids = [d.live_revision_id for d in shown if d.live_revision_id]
    live = dict(
        session.exec(
            select(Revision.id, Revision.number).where(col(Revision.id).in_(live_ids))
        ).all()
    )
    since = utcnow() - CHART_WINDOW
    requests = request_counts(session, ids, since, COARSE_STEP_SECONDS)
    rows = {
        d.id: Row(
            view=view,
            preview=d.pull_request_number is not None,
            live_number=live.get(d.live_revision_id or ""),
            last_deploy=stamp(last[d.id]) if d.id in last else None,
            spark=sparkline(
                [n / COARSE_STEP_SECONDS for n in requests.get(d.id, [])], "requests per second"
            ),
        )
        for d, view in zip(shown, deployment_summaries(session, shown, settings), strict=True)
    }
    groups: dict[str, list[Row]] = {}
    heads: dict[int, str] = {}
    for d in shown:
        if d.pull_request_number is None:
            groups[d.id] = [rows[d.id]]
            heads.setdefault(d.repository_id, d.id)
    for d in shown:
        if d.pull_request_number is not None:
            head = heads.get(d.repository_id)
            groups.setdefault(head or d.id, []).append(rows[d.id])
    return list(groups.values())


@get("/", include_in_schema=False)
async def deployments_page(
    request: Request[Any, Any, Any],
    doorman: NamedDependency[Doorman],
    pages: NamedDependency[Pages],
    sessions: NamedDependency[SessionFactory],
    settings: NamedDependency[Settings],
    notice: FromQuery[str | None] = None,
) -> Response[Any]:
    viewer = await _viewer(request, doorman)
    if viewer is None:
        return Redirect(path=f"{BASE}/sign-in", status_code=HTTP_303_SEE_OTHER)

    def groups() -> list[list[Row]]:
        with sessions() as session:
            return _rows(session, viewer, settings)

    found = await asyncio.to_thread(groups)
    return _page(
        pages, "deployments.mako", title="Deployments", viewer=viewer, groups=found, notice=notice
    )


@get("/deployments/{deployment_id:str}", include_in_schema=False)
async def deployment_page(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    pages: NamedDependency[Pages],
    sessions: NamedDependency[SessionFactory],
    settings: NamedDependency[Settings],
    operations: NamedDependency[DeploymentOperations],
    logs: NamedDependency[ServerLogs],
    notice: FromQuery[str | None] = None,
) -> Response[Any]:
    viewer = await _viewer(request, doorman)
    if viewer is None:
        return Redirect(path=f"{BASE}/sign-in", status_code=HTTP_303_SEE_OTHER)

    def gather() -> dict[str, Any]:
        with sessions() as session:
            deployment = get_deployment(session, deployment_id)
            viewer.require_read(deployment.repository_id)
            view = deployment_view(session, deployment, settings)
            rows = revision_store.list_revisions(session, deployment.id)
            scaling = scaling_report(session, deployment, autoscale_defaults(settings))
        env, previews_env = operations.env_with_overrides(deployment.id)
        since = utcnow() - CHART_WINDOW
        points = series(sessions, deployment.id, since, COARSE_STEP_SECONDS)
        usage = replica_series(sessions, deployment.id, since, COARSE_STEP_SECONDS)
        log_lines, follow_url = _server_log_tail(logs, deployment.id)
        return {
            "log_lines": log_lines,
            "log_limit": LOG_LINES_SHOWN,
            "log_follow_url": follow_url,
            "charts": _charts(points, usage, since),
            "scaling": scaling,
            "decisions": list(reversed(scaling.state.decisions[-DECISIONS_SHOWN:])),
            "moment": moment,
            "view": view,
            "revisions": rows[:REVISIONS_SHOWN],
            "more_revisions": max(len(rows) - REVISIONS_SHOWN, 0),
            "env": env,
            "previews_env": previews_env,
            "writable": viewer.may_write(deployment.repository_id),
            "repository_url": f"{str(settings.github_url).rstrip('/')}/{view.repository}",
            "commit_url": _commit_link(settings, view.repository),
        }

    context = await asyncio.to_thread(gather)
    return _page(
        pages,
        "deployment.mako",
        title=context["view"].slug,
        viewer=viewer,
        csrf=viewer.csrf,
        notice=notice,
        **context,
    )


@get("/revisions/{revision_id:str}", include_in_schema=False)
async def revision_page(
    request: Request[Any, Any, Any],
    revision_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    pages: NamedDependency[Pages],
    sessions: NamedDependency[SessionFactory],
    settings: NamedDependency[Settings],
    pipeline_config: NamedDependency[PipelineConfig],
    link_signer: NamedDependency[LinkSigner],
    clock: NamedDependency[Clock],
) -> Response[Any]:
    """A revision and its build log. A signed link (from a check run or a PR comment) opens
    it without signing in, read-only; otherwise the viewer must may read the repository."""
    params = request.query_params
    expires, signature = params.get(EXPIRES), params.get(SIGNATURE)
    signed = bool(expires and signature) and link_signer.verify(
        request.url.path, str(expires), str(signature), clock()
    )
    viewer = None if signed else await _viewer(request, doorman)
    if viewer is None and not signed:
        return Redirect(path=f"{BASE}/sign-in", status_code=HTTP_303_SEE_OTHER)
    follow_query = urlencode({"follow": "true", EXPIRES: expires, SIGNATURE: signature})

    def gather() -> dict[str, Any]:
        with sessions() as session:
            revision = revision_store.get_revision(session, revision_id)
            deployment = session.get(Deployment, revision.deployment_id)
            assert deployment is not None
            if viewer is not None:
                viewer.require_read(deployment.repository_id)
            repository = session.get(Repository, deployment.repository_id)
            full_name = repository.full_name if repository else ""
        text, clipped = _log_tail(pipeline_config, revision)
        return {
            "revision": revision,
            "deployment": deployment,
            "commit_url": _commit_link(settings, full_name)(revision.commit_sha),
            "log_text": text,
            "clipped": clipped,
            "follow_url": (
                f"{BASE}/revisions/{quote(revision.id, safe='')}/log?"
                + (follow_query if signed else "follow=true")
                if revision.state in PENDING_STATES
                else None
            ),
        }

    context = await asyncio.to_thread(gather)
    return _page(
        pages,
        "revision.mako",
        title=f"{context['deployment'].slug} #{context['revision'].number}",
        viewer=viewer,
        **context,
    )


def _charts(
    points: list[MetricPoint], usage: list[ReplicaMetricPoint], since: datetime
) -> list[Chart]:
    """The deployment's last hour: the series of GET /api/deployments/<id>/metrics, CPU and
    memory with a line per replica, and a LangGraph deployment's run queue."""
    step = COARSE_STEP_SECONDS
    charts = [
        chart([round(p.requests / step, 3) for p in points], "Requests per second", "/s"),
        chart(
            [round(100 * p.errors / p.requests, 2) if p.requests else 0.0 for p in points],
            "Errors (5xx)",
            " %",
        ),
        chart([p.p50_ms or 0.0 for p in points], "Latency p50", " ms"),
        chart([p.p95_ms or 0.0 for p in points], "Latency p95", " ms"),
        chart([p.p99_ms or 0.0 for p in points], "Latency p99", " ms"),
        chart([round(p.in_flight, 2) for p in points], "Requests in flight"),
        chart([float(p.replicas) for p in points], "Replicas"),
        chart([float(p.restarts) for p in points], "Restarts"),
        lines_chart(
            _per_replica(usage, since, lambda u: u.cpu_cores, 3), "CPU per replica", " cores"
        ),
        lines_chart(
            _per_replica(usage, since, lambda u: u.memory_bytes / MIB, 1),
            "Memory per replica",
            " MiB",
        ),
    ]
    if any(p.pending_runs is not None or p.running_runs is not None for p in points):
        # A LangGraph deployment on the pg runtime (the queue is read from its server).
        charts += [
            chart([float(p.pending_runs or 0) for p in points], "Runs pending"),
            chart([float(p.running_runs or 0) for p in points], "Runs active"),
        ]
    return charts


def _per_replica(
    usage: list[ReplicaMetricPoint],
    since: datetime,
    value: Callable[[ReplicaMetricPoint], float | None],
    digits: int,
) -> list[tuple[str, list[tuple[float, float]]]]:
    """Each replica's points as (place in the window from 0 to 1, value), oldest first; a
    point without a value (a replica's first CPU read) left out."""
    window = CHART_WINDOW.total_seconds()
    start = _aware(since)
    lines: dict[str, list[tuple[float, float]]] = {}
    for point in usage:
        found = value(point)
        if found is None:
            continue
        x = (_aware(point.at) - start).total_seconds() / window
        lines.setdefault(point.replica_id, []).append((x, round(found, digits)))
    return list(lines.items())


def _aware(at: datetime) -> datetime:
    """A time read back from SQLite comes without its zone: it was written in UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _server_log_tail(logs: ServerLogs, deployment_id: str) -> tuple[list[str] | None, str]:
    """The deployment's last LOG_LINES_SHOWN server-log lines for the page itself (read as the
    API reads them: archive and runtime, redacted), as the page's script shows each line; and
    the URL its script follows, from just after the newest line shown, so no line comes twice.
    None for the lines when the engine did not answer: the script then follows from the last
    lines it can read."""
    follow = f"{BASE}/deployments/{quote(deployment_id, safe='')}/logs?follow=true"
    try:
        lines = logs.read(deployment_id, LogQuery(limit=LOG_LINES_SHOWN))
    except EngineError:
        return None, follow
    shown = [f"{stamp_of(line.at_ns)[11:19]} {line.replica} {line.text}" for line in lines]
    if lines:
        follow += "&" + urlencode({"since": stamp_of(lines[-1].at_ns + 1)})
    return shown, follow


def _log_tail(config: PipelineConfig, revision: Revision) -> tuple[str, int]:
    path = config.log_path(revision)
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(size - LOG_BYTES_SHOWN, 0)
            handle.seek(start)
            return handle.read().decode("utf-8", "replace"), start
    except FileNotFoundError:
        return "", 0


@get("/revisions/{revision_id:str}/log", include_in_schema=False)
async def revision_log(
    request: Request[Any, Any, Any],
    revision_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    settings: NamedDependency[Settings],
    pipeline_config: NamedDependency[PipelineConfig],
    link_signer: NamedDependency[LinkSigner],
    follows: NamedDependency[LogFollows],
    clock: NamedDependency[Clock],
    follow: FromQuery[bool] = False,
) -> Response[Any]:
    """A revision's build log as the API gives it (GET /api/revisions/<id>/logs, the same
    handler and per-caller bound on follows), for whoever may open the revision's page: a
    viewer who may read its repository, or the page's signed link."""
    params = request.query_params
    expires, signature = params.get(EXPIRES), params.get(SIGNATURE)
    page = f"{BASE}/revisions/{revision_id}"
    signed = bool(expires and signature) and link_signer.verify(
        page, str(expires), str(signature), clock()
    )
    if signed:
        request.scope["user"] = SIGNED_LINK
    else:
        viewer = await _signed_in(request, doorman)

        def repository_id() -> int:
            with sessions() as session:
                revision = revision_store.get_revision(session, revision_id)
                deployment = session.get(Deployment, revision.deployment_id)
                assert deployment is not None
                return deployment.repository_id

        viewer.require_read(await asyncio.to_thread(repository_id))
        request.scope["user"] = viewer.caller
    return await build_log(
        request, revision_id, sessions, pipeline_config, settings, follows, follow=follow
    )


@get("/deployments/{deployment_id:str}/logs", include_in_schema=False)
async def deployment_logs(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    settings: NamedDependency[Settings],
    follows: NamedDependency[LogFollows],
    logs: NamedDependency[ServerLogs],
    clock: NamedDependency[Clock],
    follow: FromQuery[bool] = False,
    since: FromQuery[str | None] = None,
) -> Response[Any]:
    """The deployment's server logs for a signed-in viewer: the API's own handler (JSON lines,
    or Server-Sent Events with follow=true), counted against the viewer's share of follows."""
    viewer = await _signed_in(request, doorman)

    def repository_id() -> int:
        with sessions() as session:
            return get_deployment(session, deployment_id).repository_id

    viewer.require_read(await asyncio.to_thread(repository_id))
    request.scope["user"] = viewer.caller
    answer: Response[Any] = await api_server_logs.fn(
        request=request,
        deployment_id=deployment_id,
        sessions=sessions,
        settings=settings,
        follows=follows,
        logs=logs,
        clock=clock,
        since=since,
        until=None,
        revision=None,
        replica=None,
        q=None,
        limit=LOG_LINES_SHOWN,
        follow=follow,
    )
    if follow:
        return answer
    # Without JavaScript: the last lines as text, readable in any browser.
    lines = answer.content if isinstance(answer.content, list) else []
    text = "".join(f"{line['at'][:19]} {line['replica']} {line['text']}\n" for line in lines)
    return Response(text or "(no output yet)\n", media_type="text/plain; charset=utf-8")


# -- changes --------------------------------------------------------------------------------


async def _writer_of(
    request: Request[Any, Any, Any],
    doorman: Doorman,
    sessions: SessionFactory,
    deployment_id: str,
    data: dict[str, Any],
) -> Viewer:
    """The signed-in viewer, with a good CSRF token and write access to the deployment."""
    viewer = await _signed_in(request, doorman)
    _check_csrf(viewer, data)

    def repository_id() -> int:
        with sessions() as session:
            return get_deployment(session, deployment_id).repository_id

    viewer.require_write(await asyncio.to_thread(repository_id))
    return viewer


def _page_of(deployment_id: str) -> str:
    return f"{BASE}/deployments/{quote(deployment_id, safe='')}"


async def _change(
    request: Request[Any, Any, Any],
    doorman: Doorman,
    sessions: SessionFactory,
    queue: ArqRedis,
    deployment_id: str,
    data: dict[str, Any],
    change: Callable[[Viewer], WorkOrder],
    *,
    back_to: str | None = None,
) -> Redirect:
    """What every form that changes a deployment does around its own `change`.

    The viewer is checked first (signed in, the form's CSRF token, write access); the form's
    fields are read inside `change`, so one who may not write is refused as such whatever they
    sent. `change` runs in a thread (the services are synchronous), the work it ordered goes to
    the workers, and the browser goes back to `back_to` (the deployment's page) with the
    order's summary as the notice: a redirect, so a reload does not repeat the change."""
    viewer = await _writer_of(request, doorman, sessions, deployment_id, data)
    order = await asyncio.to_thread(change, viewer)
    await carry_out(queue, order)
    return _back(back_to or _page_of(deployment_id), order.summary)


@post("/deployments/{deployment_id:str}/deploy", include_in_schema=False)
async def deploy(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    operations: NamedDependency[DeploymentOperations],
    queue: NamedDependency[ArqRedis],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    def deployed(viewer: Viewer) -> WorkOrder:
        ref = str(data.get("ref") or "").strip() or None
        return operations.deploy(deployment_id, ref, viewer.caller).outcome

    return await _change(request, doorman, sessions, queue, deployment_id, data, deployed)


@post("/deployments/{deployment_id:str}/rollback", include_in_schema=False)
async def rollback(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    operations: NamedDependency[DeploymentOperations],
    queue: NamedDependency[ArqRedis],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    def rolled_back(viewer: Viewer) -> WorkOrder:
        try:
            number = int(str(data.get("revision") or ""))
        except ValueError:
            raise InvalidRequest(
                "revision: give the number of the revision to roll back to"
            ) from None
        return operations.rollback(deployment_id, number, viewer.caller).outcome

    return await _change(request, doorman, sessions, queue, deployment_id, data, rolled_back)


@post("/deployments/{deployment_id:str}/env", include_in_schema=False)
async def change_env(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    operations: NamedDependency[DeploymentOperations],
    queue: NamedDependency[ArqRedis],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    def changed(viewer: Viewer) -> WorkOrder:
        name = str(data.get("name") or "").strip()
        value = str(data.get("value") or "")
        scope_text = str(data.get("scope") or EnvScope.deployment.value)
        try:
            scope = EnvScope(scope_text)
        except ValueError:
            raise InvalidRequest("scope: give deployment or previews") from None
        if data.get("unset"):
            change = EnvChange(unset=[name])
        elif data.get("secret"):
            change = EnvChange(secrets={name: value})
        else:
            change = EnvChange(set={name: value})
        return operations.change_env(deployment_id, change, viewer.caller, scope).outcome

    return await _change(request, doorman, sessions, queue, deployment_id, data, changed)


@post(
    "/deployments/{deployment_id:str}/revisions/{revision_id:str}/approve",
    include_in_schema=False,
)
async def approve(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    revision_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    queue: NamedDependency[ArqRedis],
    clock: NamedDependency[Clock],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    """A fork's commit approved for building: the same rule and work as the check run's
    "Deploy preview" button (app/deliveries/approvals.py), the approver being the viewer."""

    def approved(viewer: Viewer) -> WorkOrder:
        with sessions() as session:
            revision = revision_store.get_revision(session, revision_id)
            if revision.deployment_id != deployment_id:
                raise NotFoundError(f"revision {revision_id} is not one of this deployment's")
            order = approve_revision(
                session,
                revision,
                viewer.caller.name,
                lambda repository: viewer.role(repository.id),
                clock(),
                f"Approve and build of #{revision.number} ({revision.commit_sha[:7]}) "
                f"by {viewer.caller.name}",
            )
            session.commit()
            return order

    return await _change(request, doorman, sessions, queue, deployment_id, data, approved)


@post("/deployments/{deployment_id:str}/delete", include_in_schema=False)
async def delete(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    doorman: NamedDependency[Doorman],
    sessions: NamedDependency[SessionFactory],
    operations: NamedDependency[DeploymentOperations],
    queue: NamedDependency[ArqRedis],
    data: URLEncodedBody[dict[str, Any]],
) -> Redirect:
    def deleted(viewer: Viewer) -> WorkOrder:
        confirm = str(data.get("confirm") or "")
        return operations.delete(deployment_id, confirm, viewer.caller).outcome

    return await _change(
        request, doorman, sessions, queue, deployment_id, data, deleted, back_to=f"{BASE}/"
    )


ROUTES = [
    static_file,
    sign_in_page,
    sign_in_with_token,
    sign_in_with_github,
    oauth_callback,
    sign_out,
    deployments_page,
    deployment_page,
    revision_page,
    revision_log,
    deployment_logs,
    deploy,
    rollback,
    change_env,
    approve,
    delete,
]


ERROR_STATUS: tuple[tuple[type[SlipwayError], int], ...] = (
    (NotFoundError, 404),
    (InvalidRequest, 422),
    (ConflictError, 409),
    (PermissionDenied, 403),
    (DatabaseError, 503),
)


def dashboard_router(*, doorman: Doorman, pages: Pages, link_signer: LinkSigner) -> Router:
    """The pages under /dashboard, with errors shown as pages instead of JSON."""

    def refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        else:
            status = next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), 400)
            message = str(exc)
        if status == HTTP_401_UNAUTHORIZED and request.method in ("GET", "HEAD"):
            return Redirect(path=f"{BASE}/sign-in", status_code=HTTP_303_SEE_OTHER)
        return _page(
            pages,
            "error.mako",
            status_code=status,
            title="Not allowed" if status in (401, 403) else "That did not work",
            message=message,
            viewer=None,
        )

    def constant(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    return Router(
        path=BASE,
        route_handlers=ROUTES,
        dependencies={
            "doorman": constant(doorman),
            "pages": constant(pages),
            "link_signer": constant(link_signer),
        },
        exception_handlers={SlipwayError: refused, HTTPException: refused},
        include_in_schema=False,
    )
