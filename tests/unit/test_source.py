"""Unpacking a commit's tarball: GitHub's layout is flattened, hostile entries are refused."""

from __future__ import annotations

import contextlib
import io
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from builders.errors import SourceError
from builders.source import UnpackLimits, unpack_tarball
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
            content = data.get(member.name) if member.isfile() else None
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


def special(name: str, kind: bytes, mode: int = 0o644) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = mode
    return member


HOSTILE = {
    "dot-dot-beside-the-top-folder": [regular("../escape")],
    "dot-dot-inside-the-top-folder": [regular(f"{TOP}/../../escape")],
    "symlink-out-of-the-repository": [link(f"{TOP}/config", "../../../outside")],
    "symlink-to-an-absolute-path": [link(f"{TOP}/config", "/etc")],
    "file-written-through-a-symlink": [link(f"{TOP}/up", "../.."), regular(f"{TOP}/up/escape")],
    "file-under-an-inside-symlink": [
        directory(f"{TOP}/www"),
        link(f"{TOP}/site", "www"),
        regular(f"{TOP}/site/index.html"),
    ],
    "symlink-out-through-another-symlink": [
        directory(f"{TOP}/a/b"),
        link(f"{TOP}/a/b/up", "../.."),
        link(f"{TOP}/out", "a/b/up/.."),
    ],
    "symlink-loop": [link(f"{TOP}/x", "y"), link(f"{TOP}/y", "x/z")],
    "symlink-replaced-by-a-file": [link(f"{TOP}/config", "Dockerfile"), regular(f"{TOP}/config")],
    "hard-link-out-of-the-repository": [link(f"{TOP}/passwd", "/etc/passwd", tarfile.LNKTYPE)],
    "hard-link-to-a-later-file": [
        link(f"{TOP}/early", f"{TOP}/late", tarfile.LNKTYPE),
        regular(f"{TOP}/late"),
    ],
    "hard-link-to-a-symlink": [
        link(f"{TOP}/soft", "Dockerfile"),
        link(f"{TOP}/hard", f"{TOP}/soft", tarfile.LNKTYPE),
    ],
    "character-device": [special(f"{TOP}/null", tarfile.CHRTYPE)],
    "block-device": [special(f"{TOP}/sda", tarfile.BLKTYPE)],
    "fifo": [special(f"{TOP}/pipe", tarfile.FIFOTYPE)],
    "setuid-file": [special(f"{TOP}/su", tarfile.REGTYPE, mode=0o4755)],
    "setgid-folder": [special(f"{TOP}/shared", tarfile.DIRTYPE, mode=0o2775)],
}


@pytest.mark.parametrize("entries", HOSTILE.values(), ids=HOSTILE.keys())
def test_entries_that_leave_the_destination_are_refused(
    tmp_path: Path, entries: list[tarfile.TarInfo]
) -> None:
    members = [directory(f"{TOP}/"), regular(f"{TOP}/Dockerfile"), *entries]
    data = {m.name: b"payload\n" for m in members if m.isfile()}
    archive = handmade_tarball(tmp_path / "hostile.tar.gz", members, data)
    dest = tmp_path / "builds" / "rev_1" / "src"

    with pytest.raises(SourceError, match=r"^unsafe entry \S+: \S"):
        unpack_tarball(archive, dest)

    # Everything is checked before anything is written: not even the harmless members exist.
    assert files_under(tmp_path) == {"hostile.tar.gz", "builds", "builds/rev_1", "builds/rev_1/src"}


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
    tmp_path: Path,
) -> None:
    members = [directory(f"{TOP}/"), regular(f"{TOP}/big.bin")]
    archive = handmade_tarball(tmp_path / "big.tar.gz", members, {f"{TOP}/big.bin": b"0" * 4096})
    dest = tmp_path / "src"

    with pytest.raises(SourceError, match="MiB"):
        unpack_tarball(archive, dest, UnpackLimits(max_bytes=1024))

    assert files_under(dest) == set()


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    members = [directory(f"{TOP}/"), *(regular(f"{TOP}/f{n}") for n in range(20))]
    data = {m.name: b"x" for m in members if m.isfile()}
    archive = handmade_tarball(tmp_path / "many.tar.gz", members, data)

    with pytest.raises(SourceError, match="more than 10 files"):
        unpack_tarball(archive, tmp_path / "src", UnpackLimits(max_members=10))

    assert files_under(tmp_path / "src") == set()


def test_a_path_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    long_name = f"{TOP}/" + "/".join(["d" * 50] * 5) + "/file"
    members = [directory(f"{TOP}/"), regular(long_name)]
    archive = handmade_tarball(tmp_path / "long.tar.gz", members, {long_name: b"x"})

    with pytest.raises(SourceError, match="longer than 200 bytes"):
        unpack_tarball(archive, tmp_path / "src", UnpackLimits(max_path_length=200))


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


def long_symlink_chain_escape(archive: Path, outside: Path) -> None:
    """CVE-2025-4517: resolving this chain exceeds PATH_MAX, so `os.path.realpath` (and with it
    tarfile's `data` filter before 3.11.13) gives up and judges the rest of the path lexically,
    while the kernel follows every link out of the destination."""
    component = "d" * 247
    steps = "abcdefghijklmnop"
    prefix = TOP
    members: list[tarfile.TarInfo] = [directory(f"{TOP}/")]
    for step in steps:
        members.append(directory(f"{prefix}/{component}"))
        members.append(link(f"{prefix}/{step}", component))
        prefix = f"{prefix}/{component}"
    chain = "/".join(steps) + "/" + "l" * 254
    members.append(link(f"{TOP}/{chain}", "../" * len(steps)))
    members.append(link(f"{TOP}/escape", chain + "/" + "../" * len(steps) + str(outside)[1:]))
    members.append(regular(f"{TOP}/escape/pwned"))
    handmade_tarball(archive, members, {f"{TOP}/escape/pwned": b"pwned\n"})


def test_the_long_symlink_chain_escape_writes_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "chain.tar"
    long_symlink_chain_escape(archive, outside)
    dest = tmp_path / "b" / "src"
    assert len(str(dest)) < 100, "the chain is sized for a short destination path"

    with pytest.raises(SourceError, match=r"^unsafe entry .*: its path is longer than 1024 bytes"):
        unpack_tarball(archive, dest)
    # With the path bound lifted, the structural rule refuses it all the same.
    with pytest.raises(SourceError, match=r"^unsafe entry .*: its path runs through the symlink"):
        unpack_tarball(archive, dest, UnpackLimits(max_path_length=65536))

    assert list(outside.iterdir()) == []
    assert list(dest.iterdir()) == []


def test_the_long_symlink_chain_gets_past_this_pythons_data_filter(tmp_path: Path) -> None:
    """Why the unpacker checks members itself: on the project's Python the filter lets it out.

    Skipped where the standard library has the fix; the unpacker test above runs everywhere.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "chain.tar"
    long_symlink_chain_escape(archive, outside)
    dest = tmp_path / "b" / "src"
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError:
            pytest.skip(f"this Python ({sys.version.split()[0]}) has the tarfile fix")
    assert [p.name for p in outside.iterdir()] == ["pwned"]
