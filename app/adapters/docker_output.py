"""Replicas' output as the Docker engine keeps it: its json-file logs, read on demand.

Why on demand, not a follower per replica: a follower is one open `logs?follow=1` stream per
replica, held by some worker for the replica's whole life (a thread, a socket, and in the
engine a goroutine and a file watcher each), restarted after every worker restart, and taken
by one worker only when several run. The engine already keeps every replica's output on disk,
stamped and rotated within `CONTAINER_LOG_MAX_SIZE` x `CONTAINER_LOG_MAX_FILES`; reading it
when someone asks costs nothing while no one does, which is nearly always (issue 22: a
hundred idle deployments must stay light). Measured with 20 idle replicas
(`bench/server_logs.py`, docs/benchmarks/server-logs.md): 20 followers held 20 more threads and
~1.4 MiB more in the process holding them, and 5-6 MiB more in dockerd; read on demand, nothing
at all. The price is paid at a read (10,000 lines of one replica: ~0.25-0.4 s, mostly the
engine decoding its file; the newest `limit` lines only, via the engine's `tail`, when nothing
needs the whole file) and at a removal (the same read, then a file written).

A read of what is new (a follow's poll: `since` the last line it read, exactly, and no `tail`)
asks the engine for a few of each replica's newest lines first, and for more only when they
were all newer: the engine reads a `tail` from the end of its file, then drops what is older
than `since`; for `since` alone it decodes the file from its start. A poll that asked for each
replica's newest 10,000 lines (with `q`, for all) cost ~70-85 ms of dockerd's CPU with one
replica of 10,000 lines, every second of every follow.

What the engine drops with a replica is copied out just before it is removed
(`DockerRuntime.remove`), so a crashed app's last lines outlive its container.

Both streams come in one read, as the engine's multiplexed frames, parsed here: the SDK's
`logs` drops which stream a frame is, and a read per stream made the engine scan the file
twice (10,000 lines: 380 ms as two reads, ~250 ms as one, most of it the engine's).
"""

from __future__ import annotations

import calendar
import re
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker

from app.kernel.ports import OutputLine
from builders.engine_errors import ENGINE_API_FAILURES, NoSuchContainer, engine_api_error, typed_api
from manifests.containers import DEPLOYMENT_LABEL, REVISION_LABEL

ENGINE_TIMEOUT_SECONDS = 30
"""Per read: a log of the default bound (30 MB) is read in well under that."""
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)")
FRAME_HEADER = struct.Struct(">BxxxL")
NEWER_STEPS = (256, 8192)
"""How many of a replica's newest lines a read of what is new asks for, in turn, before it asks
for all: most polls find fewer than the first."""
STREAMS = {1: "stdout", 2: "stderr"}


def stamp_ns(stamp: str, _seconds: dict[str, int] | None = None) -> int | None:
    """The engine's RFC 3339 stamp (UTC, up to nanoseconds) as nanoseconds since the epoch.
    `_seconds` memoises the whole-second part: a log's lines share most of their seconds."""
    if len(stamp) < 20 or stamp[-1] != "Z" or stamp[19] not in ".Z":
        return None
    whole, fraction = stamp[:19], stamp[20:-1]
    seconds = _seconds.get(whole) if _seconds is not None else None
    if seconds is None:
        found = _STAMP.fullmatch(whole)
        if found is None:
            return None
        seconds = calendar.timegm((*map(int, found.groups()), 0, 0, 0))
        if _seconds is not None:
            _seconds[whole] = seconds
    if not fraction.isdigit() and fraction:
        return None
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)


def frames(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """The engine's multiplexed answer as (stream, payload): each frame is a header (the
    stream's number, three zero bytes, the payload's length as a big-endian uint32), then the
    payload, one line of the log with its stamp."""
    offset, end = 0, len(raw)
    while offset + FRAME_HEADER.size <= end:
        kind, size = FRAME_HEADER.unpack_from(raw, offset)
        offset += FRAME_HEADER.size
        yield STREAMS.get(kind, "stdout"), raw[offset : offset + size]
        offset += size


def parse_frames(
    raw: bytes, *, deployment_id: str, revision_id: str, replica: str
) -> list[OutputLine]:
    """`logs?timestamps=1` frames as lines; a payload without a stamp is skipped (the engine
    stamps every line it stores)."""
    lines = []
    seconds: dict[str, int] = {}
    for stream, payload in frames(raw):
        stamp, _, text = payload.decode("utf-8", errors="replace").partition(" ")
        at_ns = stamp_ns(stamp, seconds)
        if at_ns is None:
            continue
        lines.append(
            OutputLine(
                at_ns=at_ns,
                deployment_id=deployment_id,
                revision_id=revision_id,
                replica=replica,
                stream=stream,
                text=text.removesuffix("\n"),
            )
        )
    return lines


class DockerOutputs:
    """`ReplicaOutputs` on one Docker engine; the client is made at the first read, so a
    process that never reads logs never connects."""

    def __init__(self, engine: Callable[[], docker.DockerClient] | None = None) -> None:
        self._engine = engine or (lambda: docker.from_env(timeout=ENGINE_TIMEOUT_SECONDS))
        self._api: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    self._api = typed_api(self._engine().api)
                except ENGINE_API_FAILURES as exc:
                    raise engine_api_error(exc) from exc
            return self._api

    def ping(self) -> None:
        """Raises EngineError unless the engine answers (`/readyz`)."""
        self._client().ping()

    def of_deployment(
        self,
        deployment_id: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> list[OutputLine]:
        api = self._client()
        containers = api.containers(
            all=True, filters={"label": [f"{DEPLOYMENT_LABEL}={deployment_id}", REVISION_LABEL]}
        )
        lines: list[OutputLine] = []
        for container in containers:
            try:
                lines += self._read(api, container, since_ns, until_ns, tail)
            except NoSuchContainer:
                continue  # removed meanwhile: its output was copied out first
        lines.sort(key=lambda line: line.at_ns)
        return lines

    def of_replica(self, name: str) -> list[OutputLine]:
        api = self._client()
        try:
            inspected = api.inspect_container(name)
        except NoSuchContainer:
            return []
        container = {
            "Id": inspected["Id"],
            "Names": [inspected.get("Name") or name],
            "Labels": (inspected.get("Config") or {}).get("Labels") or {},
        }
        lines = self._read(api, container, None, None, None)
        lines.sort(key=lambda line: line.at_ns)
        return lines

    def _read(
        self,
        api: Any,
        container: dict[str, Any],
        since_ns: int | None,
        until_ns: int | None,
        tail: int | None,
    ) -> list[OutputLine]:
        """`tail`: the engine reads a json-file log backwards for it, so the newest lines of a
        large log cost what they are, not the whole file."""
        labels = container.get("Labels") or {}
        deployment_id, revision_id = labels.get(DEPLOYMENT_LABEL), labels.get(REVISION_LABEL)
        if not deployment_id or not revision_id:
            return []
        replica = str((container.get("Names") or [""])[0]).lstrip("/")
        window: dict[str, int | str] = {}
        if since_ns is not None and since_ns > 0:
            seconds, nanoseconds = divmod(since_ns, 1_000_000_000)
            window["since"] = f"{seconds}.{nanoseconds:09d}"  # the engine reads it exactly
        if until_ns is not None:
            window["until"] = until_ns // 1_000_000_000 + 1
        # Only what is new: a few of the newest lines first, more while they were all new (the
        # engine cuts its tail at `since`: fewer than asked means nothing older is missing).
        steps: list[int | str] = [tail if tail is not None else "all"]
        if tail is None and "since" in window and until_ns is None:
            steps = [*NEWER_STEPS, "all"]
        for step in steps:
            # The SDK's `logs` drops which stream a frame is: its own request, read whole.
            response = api._get(
                api._url("/containers/{0}/logs", container["Id"]),
                params={"stdout": 1, "stderr": 1, "timestamps": 1, "tail": step, **window},
                stream=False,
            )
            api._raise_for_status(response)
            lines = parse_frames(
                response.content,
                deployment_id=str(deployment_id),
                revision_id=str(revision_id),
                replica=replica,
            )
            if step == "all" or len(lines) < int(step):
                break
        return [
            line
            for line in lines
            if (since_ns is None or line.at_ns >= since_ns)
            and (until_ns is None or line.at_ns <= until_ns)
        ]
