"""Unpacking a commit's tarball: GitHub's layout is flattened, hostile entries are refused."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import SourceError
from builders import source
from builders.source import unpack_tarball
from tests.unit.conftest import git, make_git_repo

TOP = "octo-web-abc1234"


def github_tarball(tmp_path: Path) -> Path:
    """A tarball made like GitHub makes one: `git archive` with an owner-repo-sha/ prefix."""
    repo = tmp_path / "repo"
    make_git_repo(
        repo,
        {
            "Dockerfile": "FROM scratch\nCOPY www /www\n",
            "www/index.html": "<h1>hello</h1>\n",
            "slipway.toml": "[deploy]\nport = 8080\n",
        },
    )
    archive = tmp_path / "source.tar.gz"
    git(repo, "archive", "--format=tar.gz", f"--prefix={TOP}/", "-o", str(archive), "HEAD")
    return archive


def handmade_tarball(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, mode="w:gz") as tar:
        for member in members:
            content = data.get(member.name)
            if content is not None:
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    return path


def directory(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = tarfile.DIRTYPE
    member.mode = 0o755
    return member


def regular(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.mode = 0o644
    return member


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = target
    return member


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_a_github_tarball_unpacks_with_its_top_folder_stripped(tmp_path: Path) -> None:
    archive = github_tarball(tmp_path)
    with tarfile.open(archive) as tar:  # git archive's pax global header holds the commit id
        tar.getmembers()
        assert "comment" in tar.pax_headers

    dest = unpack_tarball(archive, tmp_path / "src")

    assert files_under(dest) == {"Dockerfile", "slipway.toml", "www", "www/index.html"}
    assert (dest / "www" / "index.html").read_text() == "<h1>hello</h1>\n"


def test_links_inside_the_repository_are_kept(tmp_path: Path) -> None:
    archive = handmade_tarball(
        tmp_path / "links.tar.gz",
        [
            directory(f"{TOP}/"),
            regular(f"{TOP}/Dockerfile"),
            link(f"{TOP}/Containerfile", "Dockerfile"),
            link(f"{TOP}/Dockerfile.copy", f"{TOP}/Dockerfile", kind=tarfile.LNKTYPE),
        ],
        {f"{TOP}/Dockerfile": b"FROM scratch\n"},
    )

    dest = unpack_tarball(archive, tmp_path / "src")

    assert (dest / "Containerfile").is_symlink()
    assert (dest / "Containerfile").read_text() == "FROM scratch\n"
    assert (dest / "Dockerfile.copy").read_text() == "FROM scratch\n"


HOSTILE = {
    "dot-dot-beside-the-top-folder": [regular("../escape")],
    "dot-dot-inside-the-top-folder": [regular(f"{TOP}/../../escape")],
    "symlink-out-of-the-repository": [link(f"{TOP}/config", "../../../outside")],
    "symlink-to-an-absolute-path": [link(f"{TOP}/config", "/etc")],
    "file-written-through-a-symlink": [link(f"{TOP}/up", "../.."), regular(f"{TOP}/up/escape")],
}


@pytest.mark.parametrize("entries", HOSTILE.values(), ids=HOSTILE.keys())
def test_entries_that_leave_the_destination_are_refused(
    tmp_path: Path, entries: list[tarfile.TarInfo]
) -> None:
    members = [directory(f"{TOP}/"), regular(f"{TOP}/Dockerfile"), *entries]
    data = {m.name: b"payload\n" for m in members if m.isfile()}
    archive = handmade_tarball(tmp_path / "hostile.tar.gz", members, data)
    dest = tmp_path / "builds" / "rev_1" / "src"

    with pytest.raises(SourceError, match="unsafe entry"):
        unpack_tarball(archive, dest)

    outside = {path for path in files_under(tmp_path) if not path.startswith("builds/rev_1/src")}
    assert outside == {"hostile.tar.gz", "builds", "builds/rev_1"}


def test_an_absolute_entry_writes_nothing_outside_the_destination(tmp_path: Path) -> None:
    members = [directory(f"{TOP}/"), regular(f"{TOP}/Dockerfile"), regular(f"{tmp_path}/pwned")]
    data = {m.name: b"payload\n" for m in members if m.isfile()}
    archive = handmade_tarball(tmp_path / "absolute.tar.gz", members, data)
    dest = tmp_path / "src"

    with contextlib.suppress(SourceError):  # refusing it would be fine too
        unpack_tarball(archive, dest)

    assert not (tmp_path / "pwned").exists()


def test_an_absolute_entry_is_refused(tmp_path: Path) -> None:
    members = [directory(f"{TOP}/"), regular(f"{TOP}/Dockerfile"), regular("/etc/cron.d/pwned")]
    data = {m.name: b"payload\n" for m in members if m.isfile()}
    archive = handmade_tarball(tmp_path / "absolute.tar.gz", members, data)

    with pytest.raises(SourceError):
        unpack_tarball(archive, tmp_path / "src")


def test_a_tarball_larger_than_the_limit_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source, "MAX_UNPACKED_BYTES", 1024)
    members = [directory(f"{TOP}/"), regular(f"{TOP}/big.bin")]
    archive = handmade_tarball(tmp_path / "big.tar.gz", members, {f"{TOP}/big.bin": b"0" * 4096})
    dest = tmp_path / "src"

    with pytest.raises(SourceError, match="MiB"):
        unpack_tarball(archive, dest)

    assert files_under(dest) == set()


def corrupt(archive: Path) -> None:
    data = bytearray(archive.read_bytes())
    for index in range(20, len(data) - 8):
        data[index] ^= 0x5A
    archive.write_bytes(bytes(data))


def truncate(archive: Path) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])


def replace_with_html(archive: Path) -> None:
    archive.write_bytes(b"<html><body>Rate limit exceeded</body></html>\n")


@pytest.mark.parametrize("damage", [corrupt, truncate, replace_with_html])
def test_a_damaged_tarball_is_a_source_error_with_a_readable_message(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    archive = handmade_tarball(
        tmp_path / "source.tar.gz",
        [directory(f"{TOP}/"), regular(f"{TOP}/Dockerfile")],
        {f"{TOP}/Dockerfile": b"FROM scratch\n" * 2000},
    )
    damage(archive)

    with pytest.raises(SourceError) as caught:
        unpack_tarball(archive, tmp_path / "src")

    assert str(caught.value).startswith("the commit's tarball could not be unpacked: ")
    assert "Traceback" not in str(caught.value)
