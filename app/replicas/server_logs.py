"""Server logs: what a deployment's replicas write to stdout and stderr, kept per deployment.

Two places hold them. The runtime keeps each replica's output while the replica exists (the
engine's own json-file logs, rotated within `CONTAINER_LOG_MAX_SIZE` x
`CONTAINER_LOG_MAX_FILES`), read on demand (`app.adapters.docker_output` says why not a
follower per replica). Just before a replica is removed (drained, dead, torn down), the
runtime hands its output here, and it goes to the **archive**: one file per replica under
`DATA_DIR/server-logs/<deployment>/`, the deployment's files bounded together by
`SERVER_LOG_MAX_BYTES`, the oldest dropped first. So a crashed app's last lines are read after
its container is gone, and nothing is written while apps run.

Every line shown, and every line archived, is redacted first with the deployment's secrets
(every revision's env values, its database and Redis passwords), as build logs are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
        path = folder / f"{lines[start].at_ns:020d}-{name}.jsonl"
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

    def read(self, deployment_id: str, query: LogQuery) -> list[OutputLine]:
        """The lines `query` admits. Without a text filter (applied later, to the redacted
        text) only each file's newest `query.limit` admitted lines are needed, and only those
        are decoded, from the file's end: a page showing the last lines costs as much with a
        full archive (20 MB by default) as with a small one."""
        folder = self.folder(deployment_id)
        lines: list[OutputLine] = []
        newest_only = query.text is None
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            first_ns = int(path.name.split("-", 1)[0])
            if query.until_ns is not None and first_ns > query.until_ns:
                continue
            try:
                if newest_only:
                    lines += self._newest(path, deployment_id, query)
                    continue
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # dropped by a bound meanwhile
            for row in raw.splitlines():
                line = _decode(row, deployment_id)
                if line is not None and query.admits(line):
                    lines.append(line)
        return lines

    @staticmethod
    def _newest(path: Path, deployment_id: str, query: LogQuery) -> list[OutputLine]:
        """A file's newest `query.limit` admitted lines (a file's lines are in time order)."""
        found: list[OutputLine] = []
        if query.limit <= 0:
            return found
        for row in _rows_from_the_end(path):
            line = _decode(row, deployment_id)
            if line is None:
                continue
            if query.since_ns is not None and line.at_ns < query.since_ns:
                break
            if query.admits(line):
                found.append(line)
                if len(found) >= query.limit:
                    break
        found.reverse()
        return found

    def forget(self, deployment_id: str) -> None:
        shutil.rmtree(self.folder(deployment_id), ignore_errors=True)


TAIL_BLOCK = 64 * 1024
"""What an archive file is read in from its end."""


def _rows_from_the_end(path: Path) -> Iterator[bytes]:
    """A file's rows, last first, read a block at a time from its end."""
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            size = min(TAIL_BLOCK, position)
            position -= size
            handle.seek(position)
            rows = (handle.read(size) + rest).split(b"\n")
            rest = rows.pop(0)  # the start of a row the block before holds the rest of
            yield from (row for row in reversed(rows) if row)
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

    def read(self, deployment_id: str, query: LogQuery) -> list[OutputLine]:
        """The newest `query.limit` lines that match, oldest first (EngineError when the
        runtime cannot be reached: the archive alone would silently miss running replicas)."""
        # Each replica's newest `limit` hold the newest `limit` of all, unless lines are
        # dropped after the engine's tail (by text, or by an end before the newest).
        tail = query.limit if query.text is None and query.until_ns is None else None
        held = self._outputs.of_deployment(deployment_id, query.since_ns, query.until_ns, tail)
        found = self._archive.read(deployment_id, query) + [
            line for line in held if query.admits(line)
        ]
        redact = self.redactor(deployment_id)
        shown = (_redacted(line, redact) for line in found)
        if query.text:
            shown = (line for line in shown if query.text in line.text)
        return newest(shown, query.limit)

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
