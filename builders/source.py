"""Unpacking a commit's tarball into a build directory, safely.

A tarball is untrusted input, whatever forge or upload it came from. Every member is checked
here, against the tree the archive itself describes, before a single byte is written; the
standard library's `data` filter is not relied on (before Python 3.11.13 a chain of long
symlinks gets past it, CVE-2025-4517). The rules:

- only regular files, directories, symlinks, and hard links to earlier regular files;
- no absolute names, no `..`, no member whose path runs through a symlink or a file, no name
  that appears twice;
- a symlink's target, resolved against the member's own directory through the archive's other
  symlinks (never through the filesystem), stays inside the tree;
- no setuid/setgid bits; bounds on members, path length and unpacked bytes.

Extraction then writes plain files and directories only below `dest`, with `O_NOFOLLOW` and
`O_EXCL`, so even a check that missed something could not write through a link.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builders.errors import SourceError

SYMLINK_HOPS = 40
"""Linux gives up resolving after 40 links (ELOOP); so does the check."""
COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds on what one commit may unpack to; settings choose them (SLIPWAY_SOURCE_*)."""

    max_bytes: int = 2 * 1024**3
    max_members: int = 200_000
    max_path_length: int = 1024


class UnsafeEntry(SourceError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"unsafe entry {name}: {why}")


@dataclass(frozen=True)
class _Entry:
    member: tarfile.TarInfo
    path: tuple[str, ...]
    """Components below the repository root (the top folder stripped)."""
    hardlink_to: tuple[str, ...] | None = None


def unpack_tarball(archive: Path, dest: Path, limits: UnpackLimits | None = None) -> Path:
    """Unpack GitHub's tarball (one top-level `owner-repo-sha/` folder) so dest is the repo root.

    Raises SourceError ("unsafe entry <name>: <why>" for a refused member) with nothing written
    outside `dest`; a refused archive writes nothing at all.
    """
    limits = limits or UnpackLimits()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            entries = _checked_entries(tar, limits)
            _extract(tar, entries, dest)
    except SourceError:
        raise
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
        raise SourceError(f"the commit's tarball could not be unpacked: {exc}") from exc
    return dest


# -- checks -----------------------------------------------------------------------------------
def _checked_entries(tar: tarfile.TarFile, limits: UnpackLimits) -> list[_Entry]:
    members: list[tarfile.TarInfo] = []
    for member in tar:  # streamed, so a million-member bomb is refused before it is all read
        if member.type == tarfile.XGLTYPE:
            continue
        members.append(member)
        if len(members) > limits.max_members:
            raise SourceError(
                f"the commit has more than {limits.max_members} files and folders, more than "
                "Slipway builds from (SLIPWAY_SOURCE_MAX_MEMBERS)"
            )
    total = sum(m.size for m in members if m.isreg())
    if total > limits.max_bytes:
        raise SourceError(
            f"the commit unpacks to {total // 1024**2} MiB, more than the "
            f"{limits.max_bytes // 1024**2} MiB Slipway builds from (SLIPWAY_SOURCE_MAX_BYTES)"
        )
    top = _common_top(members)
    entries: list[_Entry] = []
    kinds: dict[tuple[str, ...], str] = {}
    """Every path the archive makes, explicitly or as a parent: 'dir', 'file' or 'link'."""
    links: dict[tuple[str, ...], str] = {}
    for member in members:
        path = _member_path(member, top, limits)
        if path is None:
            continue
        kind = _kind(member)
        for depth in range(1, len(path)):
            parent = path[:depth]
            seen = kinds.get(parent)
            if seen in ("link", "file"):
                what = "symlink" if seen == "link" else "file"
                through = "/".join(parent)
                raise UnsafeEntry(member.name, f"its path runs through the {what} {through}")
            kinds[parent] = "dir"
        if path in kinds and not (kind == "dir" and kinds[path] == "dir"):
            raise UnsafeEntry(member.name, "the name appears twice, or is both a folder and a file")
        kinds[path] = kind
        if member.issym():
            links[path] = member.linkname
        elif member.islnk():
            target = _member_path_of(member.linkname, member.name, top, limits)
            if kinds.get(target) != "file" or target == path:
                raise UnsafeEntry(member.name, "a hard link must point to an earlier regular file")
            entries.append(_Entry(member, path, hardlink_to=target))
            continue
        entries.append(_Entry(member, path))
    for entry in entries:
        if entry.member.issym():
            _resolve_inside(entry.path[:-1], entry.member.linkname, links, entry.member.name)
    return entries


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        kind = "dir"
    elif member.issym():
        kind = "link"
    elif member.isreg() or member.islnk():
        kind = "file"
    else:
        what = {
            tarfile.CHRTYPE: "a character device",
            tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a FIFO",
        }.get(member.type, f"an entry of type {member.type!r}")
        raise UnsafeEntry(member.name, f"{what} is not a file, folder or symlink")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeEntry(member.name, "setuid and setgid bits are not allowed")
    return kind


def _member_path(
    member: tarfile.TarInfo, top: str | None, limits: UnpackLimits
) -> tuple[str, ...] | None:
    """The member's components below the root; None for the top folder itself."""
    name = member.name
    if len(name.encode("utf-8", "surrogateescape")) > limits.max_path_length:
        raise UnsafeEntry(
            name[:80] + "…",
            f"its path is longer than {limits.max_path_length} bytes "
            "(SLIPWAY_SOURCE_MAX_PATH_LENGTH)",
        )
    if len(member.linkname.encode("utf-8", "surrogateescape")) > limits.max_path_length:
        raise UnsafeEntry(name, f"its link target is longer than {limits.max_path_length} bytes")
    if name.startswith("/"):
        raise UnsafeEntry(name, "absolute paths are not allowed")
    if "\x00" in name:
        raise UnsafeEntry(name, "the name holds a NUL byte")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if ".." in parts:
        raise UnsafeEntry(name, "'..' is not allowed in a path")
    if top is not None:
        if not parts or parts[0] != top:
            return None
        parts = parts[1:]
    return parts or None


def _member_path_of(
    linkname: str, name: str, top: str | None, limits: UnpackLimits
) -> tuple[str, ...]:
    """A hard link's target, named like a member (from the archive's root)."""
    probe = tarfile.TarInfo(linkname)
    try:
        target = _member_path(probe, top, limits)
    except UnsafeEntry as exc:
        raise UnsafeEntry(name, f"its hard link target {linkname!r} is unsafe") from exc
    if target is None:
        raise UnsafeEntry(name, "a hard link must point to an earlier regular file")
    return target


def _resolve_inside(
    directory: tuple[str, ...], target: str, links: dict[tuple[str, ...], str], name: str
) -> None:
    """Walk `target` from `directory` through the archive's own links; refuse any way out."""
    if not target:
        raise UnsafeEntry(name, "a symlink with an empty target")
    if target.startswith("/"):
        raise UnsafeEntry(name, f"the symlink points to the absolute path {target}")
    hops = 0
    pending = list(PurePosixPath(target).parts)
    current = list(directory)
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                raise UnsafeEntry(name, f"the symlink points outside the repository ({target})")
            current.pop()
            continue
        current.append(part)
        link = links.get(tuple(current))
        if link is None:
            continue
        hops += 1
        if hops > SYMLINK_HOPS:
            raise UnsafeEntry(name, f"the symlink resolves through more than {SYMLINK_HOPS} links")
        if link.startswith("/"):
            raise UnsafeEntry(name, f"the symlink resolves to the absolute path {link}")
        current.pop()
        pending = list(PurePosixPath(link).parts) + pending


def _common_top(members: list[tarfile.TarInfo]) -> str | None:
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    return tops.pop() if len(tops) == 1 else None


# -- extraction -------------------------------------------------------------------------------
def _extract(tar: tarfile.TarFile, entries: list[_Entry], dest: Path) -> None:
    """Write the checked entries; files never follow a link and never replace anything."""
    root = str(dest)
    directories: list[tuple[str, tarfile.TarInfo]] = []
    for entry in entries:
        member = entry.member
        target = os.path.join(root, *entry.path)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if member.isdir():
            os.makedirs(target, mode=0o755, exist_ok=True)
            directories.append((target, member))
        elif member.issym():
            os.symlink(member.linkname, target)
        elif entry.hardlink_to is not None:
            os.link(os.path.join(root, *entry.hardlink_to), target, follow_symlinks=False)
        else:
            _write_file(tar, member, target)
    for path, member in reversed(directories):
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
    mode = 0o755 if member.mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(target, flags, mode)
    with os.fdopen(fd, "wb") as out:
        source = tar.extractfile(member)
        if source is not None:
            remaining = member.size
            while remaining > 0:
                chunk = source.read(min(COPY_CHUNK, remaining))
                if not chunk:
                    raise SourceError(
                        f"the commit's tarball could not be unpacked: {member.name} is truncated"
                    )
                out.write(chunk)
                remaining -= len(chunk)
    os.utime(target, (member.mtime, member.mtime))
