"""Server logs: what a deployment's replicas write to stdout and stderr, kept per deployment.

Two places hold them. The runtime keeps each replica's output while the replica exists (the
engine's own json-file logs, rotated within `CONTAINER_LOG_MAX_SIZE` x
`CONTAINER_LOG_MAX_FILES`), read on demand (`app.adapters.docker_output` says why not a
follower per replica). Just before a replica is removed (drained, dead, torn down), the
runtime hands its output here, and it goes to the **archive**: one file per replica under
`DATA_DIR/server-logs/<deployment>/`, the deployment's files bounded together by
`SERVER_LOG_MAX_BYTES`, the oldest dropped first. So a crashed app's last lines are read after
its container is gone, and nothing is written while apps run.

A read costs what it returns, not what is kept (a full 20 MiB archive decoded whole took ~1.2 s
of CPU, on every read and on every 1 s poll of a follow: docs/benchmarks/server-logs.md). Each
archive file's name carries the stamps of its first and last lines, so a file wholly outside
`since`/`until` is not opened; files are read newest first and each from its end, stopping
where nothing older can be among the newest `limit`; and a follow keeps a `LogCursor`, so each
poll reads only the files written since and asks the runtime only for lines after the last one
it read.

Every line shown, and every line archived, is redacted first with the deployment's secrets
(every revision's env values, its database and Redis passwords), as build logs are.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlmodel import col, select

from app.feedback.reports import Redactor
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.errors import InvalidRequest, NotFoundError
from app.kernel.models import Database, Revision
from app.kernel.ports import OutputLine, ReplicaOutputs
from app.replicas.replica_set import redis_password

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
"""Lines one read returns unless asked for fewer (the newest of those that match)."""
MAX_LIMIT = 10_000
"""Most lines one read returns: a larger answer is asked for in windows (since/until)."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Deployment ids and replica names as they may appear in a path: the platform makes both, but
a path is built from nothing that has not been checked."""
_FILE_NAME = re.compile(r"(\d{20})-(?:(\d{20})-)?(.+)\.jsonl")
"""`<first line's ns>-<last line's ns>-<replica>.jsonl`; a file written before the last stamp
was recorded (`<first>-<replica>.jsonl`) has no known end and is always opened."""
_BLOCK = 64 * 1024
"""How much of a file is read at a time, from its end."""


@dataclass(frozen=True)
class LogQuery:
    """Which lines a reader wants: every filter optional, all of them applied together."""

    since_ns: int | None = None
    until_ns: int | None = None
    revision_id: str | None = None
    replica: str | None = None
    text: str | None = None
    """A substring the line must contain (after redaction: a secret cannot be searched for)."""
    limit: int = DEFAULT_LIMIT

    def admits(self, line: OutputLine) -> bool:
        return (
            (self.since_ns is None or line.at_ns >= self.since_ns)
            and (self.until_ns is None or line.at_ns <= self.until_ns)
            and (self.revision_id is None or line.revision_id == self.revision_id)
            and (self.replica is None or line.replica == self.replica)
        )


Key = tuple[str, str, int, str]


def _key(line: OutputLine) -> Key:
    return (line.replica, line.stream, line.at_ns, line.text)


@dataclass
class LogCursor:
    """How far a follow has read, so that each poll reads only what is new: every line stamped
    before `at_ns` was read, and of those stamped exactly `at_ns` the ones in `read_at` (the
    engine stamps to the nanosecond, yet two replicas may share one); the archive files named in
    `archived` were read whole (a file is written once, whole, under a name that says what it
    holds, and never changes)."""

    at_ns: int = 0
    read_at: set[Key] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)
    started: bool = False
    """A first read was made: later reads ask only for what is newer."""

    def take(self, lines: list[OutputLine]) -> list[OutputLine]:
        """The lines not read before (each once), oldest first; the cursor moves past them."""
        fresh = []
        for line in sorted(lines, key=lambda line: (line.at_ns, line.replica, line.stream)):
            key = _key(line)
            if line.at_ns < self.at_ns or (line.at_ns == self.at_ns and key in self.read_at):
                continue
            if line.at_ns > self.at_ns:
                self.at_ns, self.read_at = line.at_ns, set()
            self.read_at.add(key)
            fresh.append(line)
        self.started = True
        return fresh


def newest(lines: Iterable[OutputLine], limit: int) -> list[OutputLine]:
    """The newest `limit` lines, oldest first; a line seen twice (archived while the runtime
    still listed its replica) once."""
    unique = {(line.replica, line.stream, line.at_ns, line.text): line for line in lines}
    ordered = sorted(unique.values(), key=lambda line: (line.at_ns, line.replica, line.stream))
    return ordered[-limit:] if limit > 0 else []


class ServerLogArchive:
    """Removed replicas' output, one JSON-lines file per replica, bounded per deployment."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self._root = root
        self._max_bytes = max_bytes

    def folder(self, deployment_id: str) -> Path:
        if not _SAFE_NAME.fullmatch(deployment_id):
            raise ValueError(f"not a deployment id: {deployment_id!r}")
        return self._root / deployment_id

    def keep(self, lines: list[OutputLine]) -> None:
        """One replica's lines (already redacted), written whole or not at all; keeping the
        same replica again (a removal retried) replaces its file."""
        by_replica: dict[tuple[str, str], list[OutputLine]] = {}
        for line in lines:
            by_replica.setdefault((line.deployment_id, line.replica), []).append(line)
        for (deployment_id, replica), own in by_replica.items():
            self._write(deployment_id, replica, sorted(own, key=lambda line: line.at_ns))

    def _write(self, deployment_id: str, replica: str, lines: list[OutputLine]) -> None:
        folder = self.folder(deployment_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = replica if _SAFE_NAME.fullmatch(replica) else "replica"
        encoded = [_encode(line) for line in lines]
        # The newest lines that fit the bound alone: oldest dropped first, within a file too.
        size, start = 0, len(encoded)
        while start > 0 and size + len(encoded[start - 1]) <= self._max_bytes:
            start -= 1
            size += len(encoded[start])
        if start == len(encoded):
            return
        # The name says which stamps the file holds (a read skips it whole outside them), and is
        # written with the file by one rename: a crash leaves the whole file or none of it.
        path = folder / f"{lines[start].at_ns:020d}-{lines[-1].at_ns:020d}-{name}.jsonl"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(b"".join(encoded[start:]))
        os.replace(temporary, path)
        self._bound(folder)

    def _bound(self, folder: Path) -> None:
        files = sorted(folder.glob("*.jsonl"))
        total = sum(path.stat().st_size for path in files)
        for path in files:
            if total <= self._max_bytes:
                return
            total -= path.stat().st_size
            path.unlink(missing_ok=True)

    def read(
        self,
        deployment_id: str,
        query: LogQuery,
        *,
        shown: Callable[[OutputLine], OutputLine | None] | None = None,
        cursor: LogCursor | None = None,
        needles: list[bytes] | None = None,
    ) -> list[OutputLine]:
        """The lines `query` admits, as `shown` makes them (None: not shown), oldest first: at
        least the newest `query.limit` of them, each once; older ones may be left out. Files
        wholly outside since/until, and with a cursor those it read already, are not opened;
        the others are read newest first, each from its end, until nothing older can be among
        the newest `limit` (or is older than `since`). Each file read is added to `cursor`.
        With `needles`, a stored line holding none of them (as stored: JSON) is not decoded."""
        folder = self.folder(deployment_id)
        if query.limit <= 0 or not folder.is_dir():
            return []
        stored = [file for file in map(_stored, folder.glob("*.jsonl")) if file is not None]
        stored.sort(key=lambda file: (file.last_ns, file.first_ns), reverse=True)
        kept: dict[Key, OutputLine] = {}
        stamps: list[int] = []  # the stamps of the newest `limit` kept, the oldest on top
        for file in stored:
            full = len(stamps) >= query.limit
            if full and file.last_ns < stamps[0]:
                break  # this file and every one after it end before the newest `limit`
            if cursor is not None and file.path.name in cursor.archived:
                continue
            if (query.until_ns is not None and file.first_ns > query.until_ns) or (
                query.since_ns is not None and file.last_ns < query.since_ns
            ):
                continue
            try:
                handle = file.path.open("rb")
            except FileNotFoundError:
                continue  # dropped by a bound meanwhile
            with handle:
                for row in _rows_from_end(handle):
                    if needles is not None and not any(needle in row for needle in needles):
                        continue
                    line = _decode(row, deployment_id)
                    if line is None:
                        continue
                    if (query.since_ns is not None and line.at_ns < query.since_ns) or (
                        len(stamps) >= query.limit and line.at_ns < stamps[0]
                    ):
                        break  # a file is in order: the rest of it is older still
                    if not query.admits(line):
                        continue
                    found = shown(line) if shown is not None else line
                    if found is None or _key(found) in kept:
                        continue
                    kept[_key(found)] = found
                    heapq.heappush(stamps, found.at_ns)
                    if len(stamps) > query.limit:
                        heapq.heappop(stamps)
            if cursor is not None:
                cursor.archived.add(file.path.name)
        return sorted(kept.values(), key=lambda line: (line.at_ns, line.replica, line.stream))

    def forget(self, deployment_id: str) -> None:
        shutil.rmtree(self.folder(deployment_id), ignore_errors=True)


@dataclass(frozen=True)
class _Stored:
    path: Path
    first_ns: int
    last_ns: int
    """The last line's stamp; for a file named without it, later than any stamp."""


_UNKNOWN_END = 10**20


def _stored(path: Path) -> _Stored | None:
    named = _FILE_NAME.fullmatch(path.name)
    if named is None:
        return None  # not one of the archive's files
    last = named.group(2)
    return _Stored(path, int(named.group(1)), int(last) if last else _UNKNOWN_END)


def _rows_from_end(handle: BinaryIO) -> Iterator[bytes]:
    """A file's lines, the last first, read a block at a time from its end."""
    end = handle.seek(0, os.SEEK_END)
    rest = b""
    while end > 0:
        start = max(0, end - _BLOCK)
        handle.seek(start)
        rows = (handle.read(end - start) + rest).split(b"\n")
        end = start
        rest = rows[0]  # perhaps the end of a line begun in the block before
        for row in reversed(rows[1:]):
            if row:
                yield row
    if rest:
        yield rest


def _encode(line: OutputLine) -> bytes:
    record = {
        "t": line.at_ns,
        "revision": line.revision_id,
        "replica": line.replica,
        "stream": line.stream,
        "text": line.text,
    }
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


def _stored_as(text: str) -> bytes:
    """Text as `_encode` writes it inside a JSON string (escaped character by character, so a
    text that holds `text` holds this when stored)."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def _decode(row: bytes, deployment_id: str) -> OutputLine | None:
    try:
        record = json.loads(row)
        return OutputLine(
            at_ns=int(record["t"]),
            deployment_id=deployment_id,
            revision_id=str(record["revision"]),
            replica=str(record["replica"]),
            stream=str(record["stream"]),
            text=str(record["text"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a line cut by a full disk: the others stand


class ServerLogs:
    """Reading a deployment's server logs (archive and runtime together), and keeping a
    removed replica's output; both redacted."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        secrets: SecretBox,
        archive: ServerLogArchive,
        outputs: ReplicaOutputs,
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._archive = archive
        self._outputs = outputs

    def keep(self, lines: list[OutputLine]) -> None:
        """The runtime's `keep_output`: a replica's output, redacted, into the archive."""
        by_deployment: dict[str, list[OutputLine]] = {}
        for line in lines:
            by_deployment.setdefault(line.deployment_id, []).append(line)
        for deployment_id, own in by_deployment.items():
            redact = self.redactor(deployment_id)
            self._archive.keep([_redacted(line, redact) for line in own])

    def read(
        self, deployment_id: str, query: LogQuery, cursor: LogCursor | None = None
    ) -> list[OutputLine]:
        """The newest `query.limit` lines that match, oldest first (EngineError when the
        runtime cannot be reached: the archive alone would silently miss running replicas).

        With a `cursor` (a follow's), only lines it has not read: its first read is as any
        other, and moves it past every line read; later ones ask the archive only for files
        not read yet and the runtime only for lines from the cursor on."""
        redact = self.redactor(deployment_id)

        def shown(line: OutputLine) -> OutputLine | None:
            line = _redacted(line, redact)
            return line if not query.text or query.text in line.text else None

        if cursor is not None and cursor.started:
            since = max(query.since_ns or 0, cursor.at_ns) or None
            asked = replace(query, since_ns=since)
            tail = None  # all that is newer (the runtime asks for little first)
        else:
            asked = query
            # Each replica's newest `limit` hold the newest `limit` of all, unless lines are
            # dropped after the engine's tail (by text, or by an end before the newest).
            tail = query.limit if query.text is None and query.until_ns is None else None
        # A text is looked for in every stored line, but decoded only where it, or a value
        # that redaction would replace (and so perhaps make it match), is found as stored.
        needles = [_stored_as(query.text), *map(_stored_as, redact.hidden)] if query.text else None
        archived = self._archive.read(
            deployment_id, asked, shown=shown, cursor=cursor, needles=needles
        )
        held = [
            _redacted(line, redact)
            for line in self._outputs.of_deployment(
                deployment_id, asked.since_ns, asked.until_ns, tail
            )
        ]
        # A cursor moves past every line the runtime gave, shown or not, so none is read again.
        found = archived + held if cursor is None else cursor.take(archived + held)
        return newest(
            (
                line
                for line in found
                if query.admits(line) and (not query.text or query.text in line.text)
            ),
            query.limit,
        )

    def forget(self, deployment_id: str) -> None:
        self._archive.forget(deployment_id)

    def revision_id(self, deployment_id: str, revision: str) -> str:
        """A revision of this deployment named by its number or its id."""
        with self._sessions() as session:
            if revision.isdigit():
                found = session.exec(
                    select(Revision.id).where(
                        Revision.deployment_id == deployment_id, Revision.number == int(revision)
                    )
                ).first()
            else:
                found = session.exec(
                    select(Revision.id).where(
                        Revision.deployment_id == deployment_id, Revision.id == revision
                    )
                ).first()
        if found is None:
            raise NotFoundError(f"deployment {deployment_id} has no revision {revision}")
        return found

    def redactor(self, deployment_id: str) -> Redactor:
        """Every value the deployment's replicas were given that a log must not show."""
        hidden: list[str] = []
        with self._sessions() as session:
            envs = session.exec(
                select(Revision.env_encrypted).where(
                    Revision.deployment_id == deployment_id,
                    col(Revision.env_encrypted).is_not(None),
                )
            ).all()
            database = session.get(Database, deployment_id)
            password_encrypted = database.password_encrypted if database else None
        for token in set(envs):
            hidden += self._secrets.decrypt_env(token).values()
        if password_encrypted:
            password = self._secrets.decrypt(password_encrypted)
            hidden += [password, redis_password(password)]
        return Redactor(hidden)


def _redacted(line: OutputLine, redact: Redactor) -> OutputLine:
    text = redact(line.text)
    if text == line.text:
        return line
    return OutputLine(
        at_ns=line.at_ns,
        deployment_id=line.deployment_id,
        revision_id=line.revision_id,
        replica=line.replica,
        stream=line.stream,
        text=text,
    )


_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment_ns(text: str, now: datetime) -> int:
    """`since`/`until` as a reader writes them: a time ago (`90s`, `10m`, `2h`, `7d`) or an
    RFC 3339 / ISO 8601 time (`2026-12-07T10:00:00Z`, a zone assumed UTC when none is given)."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago is not None:
        then = now - timedelta(seconds=float(ago.group(1)) * _UNIT_SECONDS[ago.group(2)])
        return _ns(then)
    fraction = re.search(r"\.(\d+)", text)
    try:
        # Python reads at most microseconds: nanoseconds are put back afterwards.
        parsed = datetime.fromisoformat(re.sub(r"\.\d+", "", text, count=1).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"not a time: {text!r} (give a time ago, such as 10m or 2h, or an ISO 8601 time, "
            "such as 2026-12-07T10:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    nanoseconds = int(fraction.group(1)[:9].ljust(9, "0")) if fraction else 0
    return _ns(parsed.replace(microsecond=0)) + nanoseconds


def stamp_of(at_ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 in UTC, to the nanosecond (as the engine)."""
    seconds, nanoseconds = divmod(at_ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanoseconds:09d}Z"


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
