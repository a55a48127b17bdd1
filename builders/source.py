"""Unpacking a commit's tarball into a build directory, safely.

A tarball is untrusted input: members may try to escape the directory (absolute paths, `..`,
links pointing outside) or to fill the disk. Absolute and `..` names are refused outright, links
by tarfile's `data` filter; MAX_UNPACKED_BYTES bounds the disk.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from app.errors import SourceError

MAX_UNPACKED_BYTES = 2 * 1024**3
"""A repository larger than this unpacked is refused rather than allowed to fill the disk."""


def unpack_tarball(archive: Path, dest: Path) -> Path:
    """Unpack GitHub's tarball (one top-level `owner-repo-sha/` folder) so dest is the repo root."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = [m for m in tar.getmembers() if m.type != tarfile.XGLTYPE]
            total = sum(m.size for m in members if m.isfile())
            if total > MAX_UNPACKED_BYTES:
                raise SourceError(
                    f"the commit unpacks to {total // 1024**2} MiB, more than the "
                    f"{MAX_UNPACKED_BYTES // 1024**2} MiB Slipway builds from"
                )
            top = _common_top(members)
            for member in members:
                if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
                    raise SourceError(f"the tarball holds an unsafe entry: {member.name!r}")
                stripped = _strip(member.name, top)
                if stripped is None:
                    continue
                member.name = stripped
                if member.islnk() and member.linkname:
                    member.linkname = _strip(member.linkname, top) or member.linkname
                try:
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as exc:
                    raise SourceError(f"the tarball holds an unsafe entry: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"the commit's tarball could not be unpacked: {exc}") from exc
    return dest


def _common_top(members: list[tarfile.TarInfo]) -> str | None:
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    return tops.pop() if len(tops) == 1 else None


def _strip(name: str, top: str | None) -> str | None:
    parts = PurePosixPath(name).parts
    if top is not None:
        if not parts or parts[0] != top:
            return None
        parts = parts[1:]
    return str(PurePosixPath(*parts)) if parts else None
