"""`GET /api/deployments/{id}/logs`: a deployment's server logs, read or followed.

Thin over app/replicas/server_logs.py. A follow is Server-Sent Events: one `data:` event per
line (the JSON of a line), a comment every FOLLOW_KEEPALIVE_SECONDS so a client (and the
handler) notices a connection that went away; it counts against the caller's share of follows
(the build logs' too) and ends after SLIPWAY_LOG_FOLLOW_MAX_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Response, Stream
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS, HTTP_503_SERVICE_UNAVAILABLE
from pydantic import BaseModel
from sqlmodel import select

from app.access.follows import LogFollows
from app.api.deployments import FOLLOW_RETRY_AFTER_SECONDS, _follower, _given_back
from app.deployments.registry import get_deployment
from app.kernel.db import SessionFactory
from app.kernel.models import Revision
from app.kernel.ports import Clock, OutputLine
from app.kernel.settings import Settings
from app.replicas.server_logs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    LogCursor,
    LogQuery,
    ServerLogs,
    moment_ns,
    stamp_of,
)
from builders.errors import EngineError

FOLLOW_POLL_SECONDS = 1.0
"""How often a follow asks the runtime for new lines: only while someone follows."""
FOLLOW_KEEPALIVE_SECONDS = 15.0
ENGINE_DOWN = (
    "the Docker engine did not answer, so running replicas' output cannot be read; "
    "try again once it is back"
)


class ServerLogLine(BaseModel):
    at: str
    """RFC 3339, UTC, to the nanosecond (the engine's stamp)."""
    revision_id: str
    revision: int | None
    """The revision's number (`web#3`)."""
    replica: str
    stream: str
    text: str


@get("/deployments/{deployment_id:str}/logs")
async def server_logs(
    request: Request[Any, Any, Any],
    deployment_id: FromPath[str],
    sessions: NamedDependency[SessionFactory],
    settings: NamedDependency[Settings],
    follows: NamedDependency[LogFollows],
    logs: NamedDependency[ServerLogs],
    clock: NamedDependency[Clock],
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    revision: FromQuery[str | None] = None,
    replica: FromQuery[str | None] = None,
    q: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=0, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    follow: FromQuery[bool] = False,
) -> Response[Any]:
    """What the deployment's replicas wrote (stdout and stderr), oldest first: the newest
    `limit` lines matching every filter given. `since`/`until`: a time ago (`10m`) or an ISO
    8601 time; `revision`: its number or id; `replica`: its name; `q`: a substring. With
    `follow=true`, Server-Sent Events: those lines, then each new one as it is written."""

    def query_of() -> tuple[str, LogQuery, dict[str, int]]:
        with sessions() as session:
            deployment = get_deployment(session, deployment_id)
            numbers = {
                revision_id: number
                for revision_id, number in session.exec(
                    select(Revision.id, Revision.number).where(
                        Revision.deployment_id == deployment.id
                    )
                ).all()
            }
        now = clock()
        query = LogQuery(
            since_ns=moment_ns(since, now) if since else None,
            until_ns=moment_ns(until, now) if until else None,
            revision_id=logs.revision_id(deployment.id, revision) if revision else None,
            replica=replica or None,
            text=q or None,
            limit=limit,
        )
        return deployment.id, query, numbers

    deployment_id, query, numbers = await asyncio.to_thread(query_of)
    if not follow:
        found = await _read(logs, deployment_id, query)
        # A Response, not the list: one handler answers JSON or a stream, and Litestar would
        # serialise a returned Stream as JSON under a union annotation.
        return Response([_view(line, numbers).model_dump() for line in found])
    follower = _follower(request)
    if not follows.take(follower):
        raise HTTPException(
            status_code=HTTP_429_TOO_MANY_REQUESTS,
            detail=f"this caller already follows {settings.log_follows_per_caller} logs; "
            "close one, or read the log without follow=true",
            headers={"Retry-After": str(FOLLOW_RETRY_AFTER_SECONDS)},
        )
    cursor = LogCursor()
    try:
        first = await _read(logs, deployment_id, query, cursor)
    except BaseException:
        follows.give_back(follower)
        raise
    events = _follow(
        logs,
        deployment_id,
        query,
        first,
        cursor,
        numbers,
        sessions,
        settings.log_follow_max_seconds,
    )
    return Stream(
        _given_back(events, lambda: follows.give_back(follower)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _read(
    logs: ServerLogs, deployment_id: str, query: LogQuery, cursor: LogCursor | None = None
) -> list[OutputLine]:
    try:
        return await asyncio.to_thread(logs.read, deployment_id, query, cursor)
    except EngineError:
        raise HTTPException(status_code=HTTP_503_SERVICE_UNAVAILABLE, detail=ENGINE_DOWN) from None


async def _follow(
    logs: ServerLogs,
    deployment_id: str,
    query: LogQuery,
    first: list[OutputLine],
    cursor: LogCursor,
    numbers: dict[str, int],
    sessions: SessionFactory,
    max_seconds: float,
) -> AsyncIterator[bytes]:
    """The lines read already, then every newer one, until `max_seconds` pass or the
    deployment goes. `cursor` (moved by the first read) keeps where the reads got to, so each
    poll reads only what is new and a line is sent once however the reads overlap."""
    deadline = time.monotonic() + max_seconds
    last_sent = time.monotonic()
    for line in first:
        yield _event(line, numbers)
    newer = replace(query, limit=MAX_LIMIT)
    while time.monotonic() < deadline:
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
        if query.until_ns is not None and cursor.at_ns > query.until_ns:
            return
        try:
            new = await asyncio.to_thread(logs.read, deployment_id, newer, cursor)
        except EngineError:
            continue  # the engine is back in a moment, or the follow ends at its deadline
        if any(line.revision_id not in numbers for line in new):
            numbers = await asyncio.to_thread(_numbers, sessions, deployment_id)
        for line in new:
            yield _event(line, numbers)
            last_sent = time.monotonic()
        if time.monotonic() - last_sent >= FOLLOW_KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()


def _numbers(sessions: SessionFactory, deployment_id: str) -> dict[str, int]:
    with sessions() as session:
        return dict(
            session.exec(
                select(Revision.id, Revision.number).where(Revision.deployment_id == deployment_id)
            ).all()
        )


def _view(line: OutputLine, numbers: dict[str, int]) -> ServerLogLine:
    return ServerLogLine(
        at=stamp_of(line.at_ns),
        revision_id=line.revision_id,
        revision=numbers.get(line.revision_id),
        replica=line.replica,
        stream=line.stream,
        text=line.text,
    )


def _event(line: OutputLine, numbers: dict[str, int]) -> bytes:
    return f"data: {json.dumps(_view(line, numbers).model_dump())}\n\n".encode()
