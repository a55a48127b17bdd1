"""Reading the git directories behind the fake's repositories (never writing to them).

What a full SHA names never changes (a commit, its tree, a blob), so answers about full SHAs
are kept for the process: a git subprocess costs milliseconds, and the unit tier asks the same
questions of every revision it runs. Anything named by a branch or a relative ref is asked anew.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SHA = re.compile(r"[0-9a-f]{40}")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""The SHA-1 of git's empty tree: what a root commit is compared with."""


def git(git_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``git -C git_dir ARGS``; pathspecs are literal (no globs, no magic)."""
    return subprocess.run(
        ["git", "--literal-pathspecs", "-C", str(git_dir), *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _safe_rev(ref: str) -> bool:
    return bool(ref) and not ref.startswith("-") and not any(c in ref for c in "\0\n\r\t ")


_KNOWN_COMMITS: set[tuple[Path, str]] = set()
"""(git_dir, full SHA) of commits seen to exist: a commit, once there, stays."""


def _full(*shas: str | None) -> bool:
    return all(sha is not None and SHA.fullmatch(sha) for sha in shas)


def rev_parse(git_dir: Path, ref: str) -> str | None:
    """The commit SHA a branch, tag or SHA names in ``git_dir``, or None."""
    if not _safe_rev(ref):
        return None
    if (git_dir, ref) in _KNOWN_COMMITS:
        return ref
    proc = git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    sha = proc.stdout.decode().strip()
    if proc.returncode != 0 or not SHA.fullmatch(sha):
        return None
    _KNOWN_COMMITS.add((git_dir, sha))
    return sha


def has_commits(git_dir: Path) -> bool:
    """False for an empty repository (no ref at all), which GitHub answers with 409."""
    proc = git(git_dir, "for-each-ref", "--count=1", "--format=%(objectname)")
    return proc.returncode == 0 and bool(proc.stdout.strip())


def branches_at(git_dir: Path, sha: str) -> list[str]:
    """The branches (short names) whose tip is ``sha``."""
    proc = git(
        git_dir, "for-each-ref", f"--points-at={sha}", "--format=%(refname:short)", "refs/heads"
    )
    return [line for line in proc.stdout.decode().splitlines() if line]


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    date: str
    """ISO 8601 with the author's offset, as git stores it."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str
    signed: bool


@lru_cache(maxsize=4096)
def commit_info(git_dir: Path, sha: str) -> CommitInfo:
    """What ``git show`` knows about one commit (``sha`` must be a full, existing commit SHA)."""
    fields = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%G?%x00%B"
    proc = git(git_dir, "show", "-s", f"--format={fields}", "--end-of-options", sha)
    if proc.returncode != 0:
        raise LookupError(f"git show {sha}: {proc.stderr.decode().strip()}")
    parts = proc.stdout.decode(errors="replace").split("\0", 10)
    full, tree, parents, a_name, a_mail, a_date, c_name, c_mail, c_date, signature, message = parts
    return CommitInfo(
        sha=full,
        tree=tree,
        parents=tuple(parents.split()),
        author=Person(a_name, a_mail, a_date),
        committer=Person(c_name, c_mail, c_date),
        message=message.rstrip("\n"),
        signed=signature.strip() not in ("", "N"),
    )


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str
    """GitHub's word: added, removed, modified or changed (a type change)."""
    blob: str | None
    """The file's blob SHA after the change (None when it was removed)."""
    additions: int
    deletions: int


_STATUS = {"A": "added", "D": "removed", "M": "modified", "T": "changed"}


def changed_files(git_dir: Path, sha: str, parent: str | None) -> list[FileChange]:
    """Files changed by ``sha`` against ``parent`` (against the empty tree when None)."""
    if _full(sha, parent or EMPTY_TREE):
        return list(_changed_files_between(git_dir, sha, parent))
    return _changed_files(git_dir, sha, parent)


@lru_cache(maxsize=4096)
def _changed_files_between(git_dir: Path, sha: str, parent: str | None) -> tuple[FileChange, ...]:
    return tuple(_changed_files(git_dir, sha, parent))


def _changed_files(git_dir: Path, sha: str, parent: str | None) -> list[FileChange]:
    base = parent or EMPTY_TREE
    raw = git(git_dir, "diff-tree", "-r", "--no-renames", "--raw", "-z", base, sha)
    numstat = git(git_dir, "diff-tree", "-r", "--no-renames", "--numstat", "-z", base, sha)
    counts: dict[str, tuple[int, int]] = {}
    for record in numstat.stdout.decode(errors="replace").split("\0"):
        adds, _, rest = record.partition("\t")
        dels, _, path = rest.partition("\t")
        if path:
            counts[path] = (
                int(adds) if adds.isdigit() else 0,
                int(dels) if dels.isdigit() else 0,
            )
    changes: list[FileChange] = []
    items = raw.stdout.decode(errors="replace").split("\0")
    for meta, path in zip(items[0::2], items[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        _, _, _, new_blob, letter = meta[1:].split(" ", 4)
        status = _STATUS.get(letter[:1], "modified")
        added, deleted = counts.get(path, (0, 0))
        blob = None if status == "removed" else new_blob
        changes.append(FileChange(path, status, blob, added, deleted))
    return changes


def count_commits(git_dir: Path, base: str, head: str) -> int:
    """Commits reachable from ``head`` but not from ``base`` (a pull request's ``commits``)."""
    if _full(base, head):
        return _count_commits_between(git_dir, base, head)
    return _count_commits(git_dir, base, head)


@lru_cache(maxsize=4096)
def _count_commits_between(git_dir: Path, base: str, head: str) -> int:
    return _count_commits(git_dir, base, head)


def _count_commits(git_dir: Path, base: str, head: str) -> int:
    proc = git(git_dir, "rev-list", "--count", f"{base}..{head}")
    text = proc.stdout.decode().strip()
    return int(text) if proc.returncode == 0 and text.isdigit() else 0


def merge_base(git_dir: Path, base: str, head: str) -> str | None:
    if _full(base, head):
        return _merge_base_of(git_dir, base, head)
    return _merge_base(git_dir, base, head)


@lru_cache(maxsize=4096)
def _merge_base_of(git_dir: Path, base: str, head: str) -> str | None:
    return _merge_base(git_dir, base, head)


def _merge_base(git_dir: Path, base: str, head: str) -> str | None:
    proc = git(git_dir, "merge-base", base, head)
    sha = proc.stdout.decode().strip()
    return sha if proc.returncode == 0 and SHA.fullmatch(sha) else None


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str
    """``blob``, ``tree`` or ``commit`` (a submodule)."""
    sha: str
    size: int
    path: str
    """Relative to the repository root."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _tree_entries(output: bytes, prefix: str) -> list[TreeEntry]:
    entries: list[TreeEntry] = []
    for record in output.decode(errors="surrogateescape").split("\0"):
        if not record:
            continue
        meta, _, name = record.partition("\t")
        mode, kind, sha, size = meta.split()
        entries.append(
            TreeEntry(mode, kind, sha, int(size) if size.isdigit() else 0, prefix + name)
        )
    return entries


def tree_entry(git_dir: Path, commit: str, path: str) -> TreeEntry | None:
    """The entry at ``path`` (no leading or trailing slash) in ``commit``'s tree, or None."""
    if _full(commit):
        return _tree_entry_of(git_dir, commit, path)
    return _tree_entry(git_dir, commit, path)


@lru_cache(maxsize=4096)
def _tree_entry_of(git_dir: Path, commit: str, path: str) -> TreeEntry | None:
    return _tree_entry(git_dir, commit, path)


def _tree_entry(git_dir: Path, commit: str, path: str) -> TreeEntry | None:
    proc = git(git_dir, "ls-tree", "-l", "-z", "--full-tree", commit, "--", path)
    if proc.returncode != 0:
        return None
    found = [entry for entry in _tree_entries(proc.stdout, "") if entry.path == path]
    return found[0] if found else None


def list_tree(git_dir: Path, commit: str, path: str) -> list[TreeEntry]:
    """The entries of the directory at ``path`` ("" for the root) in ``commit``'s tree."""
    tree = f"{commit}:{path}" if path else f"{commit}^{{tree}}"
    proc = git(git_dir, "ls-tree", "-l", "-z", "--end-of-options", tree)
    if proc.returncode != 0:
        return []
    return _tree_entries(proc.stdout, f"{path}/" if path else "")


@lru_cache(maxsize=1024)
def read_blob(git_dir: Path, sha: str) -> bytes:
    proc = git(git_dir, "cat-file", "blob", sha)
    if proc.returncode != 0:
        raise LookupError(f"git cat-file blob {sha}: {proc.stderr.decode().strip()}")
    return proc.stdout


def run_text(git_dir: Path, *args: str) -> str:
    """The output of a read-only git command (a diff, a patch) as text."""
    proc = git(git_dir, *args)
    if proc.returncode != 0:
        raise LookupError(f"git {' '.join(args)}: {proc.stderr.decode().strip()}")
    return proc.stdout.decode(errors="replace")
