"""`slipway db`: what it refuses before asking the platform anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli_harness import Cli
from tests.unit.slipway_api import FakeApi


@pytest.mark.parametrize(
    "argv",
    [
        ["db", "restore", "web"],  # neither a file nor a backup
        ["db", "restore", "web", "web.dump", "--backup", "bak_1"],  # both
        ["db", "restore", "web", "no-such-file.dump"],
    ],
)
def test_a_restore_without_exactly_one_archive_exits_2_and_asks_nothing(
    slipway: Cli,
    fake_api: FakeApi,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "web.dump").write_bytes(b"PGDMP")
    slipway.use(fake_api)

    ran = slipway(*argv)

    assert ran.code == 2, ran
    assert ran.err.startswith("slipway: ") and fake_api.requests == []
