"""Server logs: the archive of removed replicas' output stays within its bound (the oldest
lines go first), every filter of a read narrows what is shown, and no secret is shown or
kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.access.follows import LogFollows
from app.access.tokens import Caller
from app.adapters.docker_output import FRAME_HEADER, DockerOutputs, parse_frames
from app.api import logs as logs_api
from app.kernel.db import SessionFactory
from app.kernel.errors import InvalidRequest
from app.kernel.models import Database
from app.kernel.ports import OutputLine
from app.kernel.settings import Settings
from app.replicas import server_logs
from app.replicas.replica_set import redis_password
from app.replicas.server_logs import (
    _BLOCK,
    LogQuery,
    ServerLogArchive,
    ServerLogs,
    _encode,
    moment_ns,
    newest,
    stamp_of,
)
from manifests.containers import DEPLOYMENT_LABEL, REVISION_LABEL
from tests.support.rows import add_deployment, add_repository, add_revision
from tests.unit.world import SECRETS

S = 1_000_000_000
SECRET = "sk-live-0123456789abcdef"
DB_PASSWORD = "db-password-of-the-deployment"


def line(
    at_s: float,
    text: str,
    *,
    replica: str = "web-1-a",
    revision: str = "rev_1",
    stream: str = "stdout",
    deployment: str = "dep_web",
) -> OutputLine:
    return OutputLine(
        at_ns=int(at_s * S),
        deployment_id=deployment,
        revision_id=revision,
        replica=replica,
        stream=stream,
        text=text,
    )


class HeldOutputs:
    """The runtime's side: what running (or stopped, not yet removed) replicas hold."""

    def __init__(self) -> None:
        self.lines: list[OutputLine] = []

    def of_deployment(
        self,
        deployment_id: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> list[OutputLine]:
        own = [line for line in self.lines if line.deployment_id == deployment_id]
        by_replica: dict[str, list[OutputLine]] = {}
        for line in own:
            by_replica.setdefault(line.replica, []).append(line)
        return [x for lines in by_replica.values() for x in (lines[-tail:] if tail else lines)]

    def of_replica(self, name: str) -> list[OutputLine]:
        return [line for line in self.lines if line.replica == name]


@pytest.fixture
def deployment(sessions: SessionFactory) -> str:
    with sessions() as session:
        add_repository(session)
        add_deployment(session)
        for number, env in ((1, {"MODE": "demo"}), (2, {"API_KEY": SECRET})):
            add_revision(
                session,
                f"rev_{number}",
                number=number,
                commit_sha=f"{number:040d}",
                env_hash=str(number),
                env_encrypted=SECRETS.encrypt_env(env),
            )
        session.add(
            Database(
                deployment_id="dep_web",
                name="d",
                role="d",
                password_encrypted=SECRETS.encrypt(DB_PASSWORD),
            )
        )
        session.commit()
    return "dep_web"


def logs_of(sessions: SessionFactory, root: Path, held: HeldOutputs, bound: int) -> ServerLogs:
    return ServerLogs(
        sessions=sessions,
        secrets=SECRETS,
        archive=ServerLogArchive(root, bound),
        outputs=held,
    )


def test_the_archive_drops_the_oldest_replicas_output_first_and_keeps_within_its_bound(
    tmp_path: Path,
) -> None:
    archive = ServerLogArchive(tmp_path, max_bytes=4096)
    for number in range(6):  # six replicas of ~1 KB each, one after the other
        archive.keep(
            [
                line(
                    number * 100 + i, f"replica {number} line {i} " + "x" * 60, replica=f"r{number}"
                )
                for i in range(12)
            ]
        )

    folder = tmp_path / "dep_web"
    assert sum(path.stat().st_size for path in folder.iterdir()) <= 4096
    kept = archive.read("dep_web", LogQuery())
    replicas = {shown.replica for shown in kept}
    assert "r5" in replicas and "r4" in replicas  # the newest stay whole
    assert "r0" not in replicas and "r1" not in replicas  # the oldest went first
    assert [shown.text for shown in kept if shown.replica == "r5"][-1].startswith(
        "replica 5 line 11"
    )


def test_one_replica_over_the_bound_alone_keeps_its_newest_lines(tmp_path: Path) -> None:
    archive = ServerLogArchive(tmp_path, max_bytes=2048)
    archive.keep([line(i, f"line {i:04d} " + "y" * 80) for i in range(100)])

    kept = archive.read("dep_web", LogQuery())
    assert kept and kept[-1].text.startswith("line 0099")
    assert kept[0].text > "line 0050"  # the head was dropped, not the tail
    assert sum(p.stat().st_size for p in (tmp_path / "dep_web").iterdir()) <= 2048


def test_keeping_a_replica_again_replaces_its_file(tmp_path: Path) -> None:
    archive = ServerLogArchive(tmp_path, max_bytes=1 << 20)
    lines = [line(1, "a"), line(2, "b")]
    archive.keep(lines)
    archive.keep(lines)  # a removal retried copies the same output again

    assert [shown.text for shown in archive.read("dep_web", LogQuery())] == ["a", "b"]


def test_every_filter_narrows_the_lines_read(
    sessions: SessionFactory, deployment: str, tmp_path: Path
) -> None:
    held = HeldOutputs()
    logs = logs_of(sessions, tmp_path, held, 1 << 20)
    logs.keep(  # a replica of revision 1 that is gone
        [
            line(10, "booting", replica="web-1-a"),
            line(11, "crashed: KeyError", replica="web-1-a", stream="stderr"),
        ]
    )
    held.lines = [  # the running replicas of revision 2
        line(20, "GET / 200", replica="web-2-a", revision="rev_2"),
        line(21, "GET /x 500", replica="web-2-b", revision="rev_2"),
        line(22, "GET / 200", replica="web-2-a", revision="rev_2"),
    ]

    def texts(**asked: object) -> list[str]:
        return [shown.text for shown in logs.read(deployment, LogQuery(**asked))]  # type: ignore[arg-type]

    assert texts() == ["booting", "crashed: KeyError", "GET / 200", "GET /x 500", "GET / 200"]
    assert texts(since_ns=11 * S) == ["crashed: KeyError", "GET / 200", "GET /x 500", "GET / 200"]
    assert texts(until_ns=20 * S) == ["booting", "crashed: KeyError", "GET / 200"]
    assert texts(revision_id="rev_1") == ["booting", "crashed: KeyError"]
    assert texts(replica="web-2-b") == ["GET /x 500"]
    assert texts(text="500") == ["GET /x 500"]
    assert texts(limit=2) == ["GET /x 500", "GET / 200"]  # the newest, oldest first
    assert texts(text="GET", revision_id="rev_2", since_ns=21 * S) == ["GET /x 500", "GET / 200"]
    assert [shown.stream for shown in logs.read(deployment, LogQuery(revision_id="rev_1"))] == [
        "stdout",
        "stderr",
    ]


def test_the_newest_lines_are_read_from_the_files_end_and_match_a_whole_read(
    tmp_path: Path,
) -> None:
    archive = ServerLogArchive(tmp_path, 16 << 20)
    kept = [  # two replicas, each file many read blocks long, a row across every block's edge
        line(i + 0.5 * (i % 2), f"GET /{i} " + "x" * (i % 700), replica=f"web-{i % 2}")
        for i in range(3000)
    ]
    kept.append(line(4000, "stopped", replica="web-9", revision="rev_2"))
    archive.keep(kept)
    sizes = [path.stat().st_size for path in tmp_path.glob("dep_web/*-web-[01].jsonl")]
    assert len(sizes) == 2 and min(sizes) > 4 * _BLOCK

    def whole(query: LogQuery) -> list[OutputLine]:
        """What decoding every row gives (a text filter reads them all)."""
        return newest([x for x in kept if query.admits(x)], query.limit)

    for asked in (
        LogQuery(limit=200),
        LogQuery(limit=1),
        LogQuery(limit=0),
        LogQuery(limit=10_000),
        LogQuery(limit=50, replica="web-1"),
        LogQuery(limit=50, revision_id="rev_1"),
        LogQuery(limit=100, since_ns=2990 * S),
        LogQuery(limit=100, until_ns=1500 * S),
    ):
        assert newest(archive.read("dep_web", asked), asked.limit) == whole(asked), asked
    assert len(archive.read("dep_web", LogQuery(limit=10_000, text="GET"))) == 3001


def test_a_line_seen_in_the_archive_and_the_runtime_at_once_is_shown_once(
    sessions: SessionFactory, deployment: str, tmp_path: Path
) -> None:
    held = HeldOutputs()
    logs = logs_of(sessions, tmp_path, held, 1 << 20)
    held.lines = [line(1, "last words")]
    logs.keep(held.lines)  # copied out, the container not removed yet

    assert [shown.text for shown in logs.read(deployment, LogQuery())] == ["last words"]


def test_secrets_are_redacted_when_shown_and_when_kept(
    sessions: SessionFactory, deployment: str, tmp_path: Path
) -> None:
    held = HeldOutputs()
    logs = logs_of(sessions, tmp_path, held, 1 << 20)
    logs.keep([line(1, f"key={SECRET}")])
    held.lines = [
        line(2, f"postgres://u:{DB_PASSWORD}@db/x", revision="rev_2"),
        line(3, f"redis://:{redis_password(DB_PASSWORD)}@redis", revision="rev_2"),
    ]

    shown = [shown.text for shown in logs.read(deployment, LogQuery())]
    assert shown == ["key=[redacted]", "postgres://u:[redacted]@db/x", "redis://:[redacted]@redis"]
    on_disk = b"".join(path.read_bytes() for path in (tmp_path / deployment).iterdir())
    assert SECRET.encode() not in on_disk and b"[redacted]" in on_disk
    assert not logs.read(deployment, LogQuery(text=SECRET))  # a secret cannot be searched for


def test_the_archive_takes_no_path_from_a_name_it_did_not_check(tmp_path: Path) -> None:
    archive = ServerLogArchive(tmp_path / "logs", max_bytes=1 << 20)
    archive.keep([line(1, "x", replica="../../escape")])
    with pytest.raises(ValueError):
        archive.keep([line(1, "x", deployment="../elsewhere")])

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.parent for p in written] == [tmp_path / "logs" / "dep_web"]
    assert json.loads(written[0].read_text())["replica"] == "../../escape"  # kept as data


def test_times_are_read_as_a_time_ago_or_an_iso_time_to_the_nanosecond() -> None:
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    ten_ago = moment_ns("10m", now)
    assert stamp_of(ten_ago) == "2026-12-07T09:50:00.000000000Z"
    exact = moment_ns("2026-12-07T09:00:01.123456789Z", now)
    assert stamp_of(exact) == "2026-12-07T09:00:01.123456789Z"
    assert moment_ns("2026-12-07T09:00:01", now) == moment_ns("2026-12-07T09:00:01+00:00", now)
    with pytest.raises(InvalidRequest, match="10m"):
        moment_ns("yesterday", now)


def test_the_engines_frames_are_read_with_their_stream_and_stamp_to_the_nanosecond() -> None:
    def frame(kind: int, payload: bytes) -> bytes:
        return FRAME_HEADER.pack(kind, len(payload)) + payload

    raw = (
        frame(1, b"2026-12-07T10:00:00.000000001Z GET / 200\n")
        + frame(2, b"2026-12-07T10:00:00.5Z Traceback (most recent call last):\n")
        + frame(1, b"2026-12-07T10:00:01Z no fraction\n")
        + frame(1, b"not a stamp\n")
    )

    lines = parse_frames(raw, deployment_id="dep_web", revision_id="rev_1", replica="web-1-a")

    assert [(stamp_of(x.at_ns), x.stream, x.text) for x in lines] == [
        ("2026-12-07T10:00:00.000000001Z", "stdout", "GET / 200"),
        ("2026-12-07T10:00:00.500000000Z", "stderr", "Traceback (most recent call last):"),
        ("2026-12-07T10:00:01.000000000Z", "stdout", "no fraction"),
    ]


class DecodeCounter:
    """How many archived lines were decoded: what a read of the archive costs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        decode = server_logs._decode

        def counted(row: bytes, deployment_id: str) -> OutputLine | None:
            self.count += 1
            return decode(row, deployment_id)

        monkeypatch.setattr(server_logs, "_decode", counted)

    def since(self, mark: int) -> int:
        return self.count - mark


def a_full_archive(root: Path, replicas: int = 8, lines: int = 500) -> ServerLogArchive:
    """Removed replicas' output, one after the other, a second between two lines."""
    archive = ServerLogArchive(root, max_bytes=1 << 24)
    for number in range(replicas):
        archive.keep(
            [
                line(number * lines + i, f"replica {number} line {i}", replica=f"web-1-{number}")
                for i in range(lines)
            ]
        )
    return archive


def test_a_read_decodes_the_lines_it_needs_not_the_whole_archive(
    sessions: SessionFactory,
    deployment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a_full_archive(tmp_path)  # 4,000 lines, stamped 0 s to 3,999 s
    logs = logs_of(sessions, tmp_path, HeldOutputs(), 1 << 24)
    decoded = DecodeCounter(monkeypatch)

    def texts(**asked: object) -> list[str]:
        return [shown.text for shown in logs.read(deployment, LogQuery(**asked))]  # type: ignore[arg-type]

    assert texts(limit=3) == [f"replica 7 line {i}" for i in (497, 498, 499)]
    assert decoded.since(0) <= 4  # the newest file, from its end
    mark = decoded.count
    assert texts(since_ns=3_990 * S, limit=100) == [f"replica 7 line {i}" for i in range(490, 500)]
    assert decoded.since(mark) <= 11
    mark = decoded.count
    assert texts(until_ns=1_001 * S, limit=2) == ["replica 2 line 0", "replica 2 line 1"]
    assert decoded.since(mark) <= 500 + 3  # replica 2's file alone: the later ones begin later
    mark = decoded.count
    found = texts(text="replica 3 line 7", limit=1000)
    assert found == ["replica 3 line 7", *(f"replica 3 line {i}" for i in range(70, 80))]
    assert decoded.since(mark) == 11  # looked for everywhere, decoded where it is
    assert len(texts(limit=1000)) == 1000


def test_a_text_is_found_in_what_is_shown_when_redaction_made_it_match(
    sessions: SessionFactory, deployment: str, tmp_path: Path
) -> None:
    logs = logs_of(sessions, tmp_path, HeldOutputs(), 1 << 20)
    # Archived before the secret was the deployment's (so kept as printed), shown redacted.
    ServerLogArchive(tmp_path, 1 << 20).keep([line(1, f"key={SECRET}"), line(2, "other")])

    found = logs.read(deployment, LogQuery(text="key=[redacted]"))

    assert [shown.text for shown in found] == ["key=[redacted]"]
    assert not logs.read(deployment, LogQuery(text="key=sk-live"))


class PrintingOutputs(HeldOutputs):
    """The runtime while a follow polls it: a replica prints a line at the third read, and
    is removed at the fifth (its output copied to the archive, with a line no read saw)."""

    def __init__(self, keep: Callable[[list[OutputLine]], None]) -> None:
        super().__init__()
        self.keep = keep
        self.asked: list[tuple[int | None, int | None]] = []

    def of_deployment(
        self,
        deployment_id: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> list[OutputLine]:
        self.asked.append((since_ns, tail))
        if len(self.asked) == 3:
            self.lines.append(line(5_000, "printed while followed", replica="web-2-a"))
        if len(self.asked) == 5:
            gone = [*self.lines, line(5_001, "last words", replica="web-2-a", stream="stderr")]
            self.lines = []
            self.keep(gone)
        return [
            shown
            for shown in super().of_deployment(deployment_id, since_ns, until_ns, tail)
            if since_ns is None or shown.at_ns >= since_ns
        ]


def test_a_follow_over_a_full_archive_reads_only_what_is_new_at_each_poll(
    sessions: SessionFactory,
    deployment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a_full_archive(tmp_path)
    archive = ServerLogArchive(tmp_path, max_bytes=1 << 24)
    held = PrintingOutputs(archive.keep)
    logs = ServerLogs(sessions=sessions, secrets=SECRETS, archive=archive, outputs=held)
    held.lines = [line(4_000 + i, f"running line {i}", replica="web-2-a") for i in range(3)]
    monkeypatch.setattr(logs_api, "FOLLOW_POLL_SECONDS", 0.0)
    decoded = DecodeCounter(monkeypatch)
    request = SimpleNamespace(user=Caller("admin", False), url=SimpleNamespace(path="/logs"))

    async def follow() -> list[dict[str, Any]]:
        answer = await logs_api.server_logs.fn(
            request=request,
            deployment_id=deployment,
            sessions=sessions,
            settings=Settings(_env_file=None, data_dir=tmp_path / "data"),
            follows=LogFollows(1),
            logs=logs,
            clock=lambda: datetime(2026, 12, 7, tzinfo=UTC),
            limit=4,
            follow=True,
        )
        events = answer.iterator
        received: list[dict[str, Any]] = []
        try:
            async for event in events:
                if event.startswith(b"data: "):
                    received.append(json.loads(event.removeprefix(b"data: ")))
                if len(held.asked) >= 10:
                    return received
            return received
        finally:
            await events.aclose()

    received = asyncio.run(follow())

    assert [shown["text"] for shown in received] == [
        "replica 7 line 499",
        "running line 0",
        "running line 1",
        "running line 2",
        "printed while followed",
        "last words",
    ]
    assert decoded.count <= 10  # the first read's few, then only the file written meanwhile
    polls = held.asked[1:]
    assert all(tail is None and since is not None and since >= 4_002 * S for since, tail in polls)


class JsonFileEngine:
    """The Engine API's `logs` over one replica's json-file log, as the engine reads it: a
    `tail` from the file's end, then `since` drops what is older; `since` alone, every line of
    the file from its start. `decoded` counts the lines the engine read to answer."""

    def __init__(self, stamps: list[int]) -> None:
        self.stamps = stamps
        self.decoded = 0
        self.asked: list[dict[str, Any]] = []

    def containers(self, **_: Any) -> list[dict[str, Any]]:
        labels = {DEPLOYMENT_LABEL: "dep_web", REVISION_LABEL: "rev_1"}
        return [{"Id": "c1", "Names": ["/web-1-a"], "Labels": labels}]

    def _url(self, template: str, *args: str) -> str:
        return template.format(*args)

    def _raise_for_status(self, response: Any) -> None:
        return None

    def _get(self, url: str, params: dict[str, Any], stream: bool) -> Any:
        self.asked.append(params)
        tail = params["tail"]
        window = self.stamps if tail == "all" else self.stamps[-int(tail) :] if tail else []
        self.decoded += len(window)
        since = int(Decimal(str(params["since"])) * S) if "since" in params else 0
        content = b"".join(
            FRAME_HEADER.pack(1, len(payload)) + payload
            for payload in (
                f"{stamp_of(at)} line {n}\n".encode()
                for n, at in enumerate(window, start=len(self.stamps) - len(window))
                if at >= since
            )
        )
        return SimpleNamespace(content=content)


def test_a_read_of_what_is_new_asks_the_engine_for_the_newest_lines_only() -> None:
    start = 1_796_000_000 * S
    engine = JsonFileEngine([start + n * 1_000_000 for n in range(10_000)])  # one a millisecond
    outputs = DockerOutputs(lambda: SimpleNamespace(api=engine))  # type: ignore[arg-type,return-value]

    new = outputs.of_deployment("dep_web", since_ns=engine.stamps[9_990])

    assert [shown.text for shown in new] == [f"line {n}" for n in range(9_990, 10_000)]
    assert engine.decoded <= 256  # not the 10,000 lines of the file
    engine.decoded = 0
    many = outputs.of_deployment("dep_web", since_ns=engine.stamps[9_500] + 1)
    assert [shown.text for shown in many] == [f"line {n}" for n in range(9_501, 10_000)]
    assert engine.decoded <= 256 + 8192  # more asked for while all were new, none missed
    engine.decoded = 0
    assert len(outputs.of_deployment("dep_web", tail=5)) == 5  # a newest-lines read as before
    assert engine.decoded == 5 and engine.asked[-1]["tail"] == 5


def test_files_of_an_older_archive_are_read_and_a_write_cut_by_a_crash_is_not(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "dep_web"
    folder.mkdir()
    old = [line(1, "named before the last stamp was"), line(2, "its last line")]
    (folder / f"{1 * S:020d}-web-1-a.jsonl").write_bytes(b"".join(map(_encode, old)))
    (folder / f"{3 * S:020d}-{4 * S:020d}-web-1-b.tmp").write_bytes(_encode(line(3, "cut"))[:9])
    archive = ServerLogArchive(tmp_path, max_bytes=1 << 20)
    archive.keep([line(5, "after the crash", replica="web-1-c")])

    assert [shown.text for shown in archive.read("dep_web", LogQuery(since_ns=2 * S))] == [
        "its last line",
        "after the crash",
    ]
    assert [shown.text for shown in archive.read("dep_web", LogQuery(until_ns=4 * S))] == [
        "named before the last stamp was",
        "its last line",
    ]
