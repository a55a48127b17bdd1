"""The test images are bootstrapped from the Debian archive the machine's apt uses: the project
names no mirror, so a host behind a local mirror builds them from the same one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apt_sources import NoDebianArchive, debian_archive

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://archive.example/debian http://second.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive.example/debian-security
Suites: bookworm-security
Components: main
"""


def apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "apt" / "sources.list.d").mkdir(parents=True, exist_ok=True)
    return tmp_path / "apt"


def test_the_first_uri_of_a_deb822_source_is_the_archive(tmp_path: Path) -> None:
    apt = apt_dir(tmp_path, {"sources.list.d/debian.sources": DEB822})

    assert debian_archive("bookworm", apt) == "http://archive.example/debian"


def test_a_one_line_sources_list_is_read_when_there_is_no_deb822_file(tmp_path: Path) -> None:
    apt = apt_dir(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://source.example/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/usr/share/keyrings/d.gpg] "
                "http://archive.example/debian bookworm main contrib  # the archive\n"
                "deb http://archive.example/debian-security bookworm-security main\n"
            )
        },
    )

    assert debian_archive("bookworm", apt) == "http://archive.example/debian"


def test_deb822_files_come_before_the_one_line_list(tmp_path: Path) -> None:
    apt = apt_dir(
        tmp_path,
        {
            "sources.list": "deb http://old.example/debian bookworm main\n",
            "sources.list.d/debian.sources": DEB822,
        },
    )

    assert debian_archive("bookworm", apt) == "http://archive.example/debian"


def test_disabled_source_and_other_repositories_are_passed_over(tmp_path: Path) -> None:
    """Docker's own apt repository lists the suite too, sorts first here, and has no `main`."""
    apt = apt_dir(
        tmp_path,
        {
            "sources.list.d/a-docker.sources": (
                "Types: deb\nURIs: https://packages.example/linux/debian\n"
                "Suites: bookworm\nComponents: stable\n"
            ),
            "sources.list.d/b-off.sources": (
                "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n"
                "Suites: bookworm\nComponents: main\n"
            ),
            "sources.list.d/c-debian.sources": DEB822,
        },
    )

    assert debian_archive("bookworm", apt) == "http://archive.example/debian"


def test_an_archive_of_another_release_serves_when_none_lists_the_suite(tmp_path: Path) -> None:
    """A Debian 13 host: its mirror carries bookworm too; its security archive does not."""
    apt = apt_dir(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://security.example/debian-security\n"
                "Suites: trixie-security\nComponents: main\n\n"
                "Types: deb deb-src\nURIs:\n http://archive.example/debian\n"
                "Suites: trixie trixie-updates\nComponents: main\n"
            )
        },
    )

    assert debian_archive("bookworm", apt) == "http://archive.example/debian"


def test_no_debian_source_says_how_to_name_one(tmp_path: Path) -> None:
    source_only = "deb-src http://source.example/debian bookworm main\n"
    apt = apt_dir(tmp_path, {"sources.list": source_only})

    with pytest.raises(NoDebianArchive, match="SLIPWAY_TEST_DEBIAN_MIRROR"):
        debian_archive("bookworm", apt)
