"""Server logs: the archive of removed replicas' output stays within its bound (the oldest
lines go first), every filter of a read narrows what is shown, and no secret is shown or
kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.adapters.docker_output import FRAME_HEADER, parse_frames
from app.kernel.db import SessionFactory
from app.kernel.errors import InvalidRequest
from app.kernel.models import Database
from app.kernel.ports import OutputLine
from app.replicas.replica_set import redis_password
from app.replicas.server_logs import (
    TAIL_BLOCK,
    LogQuery,
    ServerLogArchive,
    ServerLogs,
    moment_ns,
    newest,
    stamp_of,
)
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
    assert len(sizes) == 2 and min(sizes) > 4 * TAIL_BLOCK

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
