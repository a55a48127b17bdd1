"""Git repositories the tests make, to be served by the fake GitHub as tarballs."""

from __future__ import annotations

import hashlib
import subprocess
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GIT_IDENTITY = ["-c", "user.name=Test Pusher", "-c", "user.email=pusher@example.com"]


class GitRepo:
    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        path.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q", "-b", branch)

    def _git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *GIT_IDENTITY, "-C", str(self.path), *args],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return result.stdout.decode().strip()

    def commit(
        self,
        files: dict[str, str | bytes],
        message: str = "change",
        remove: tuple[str, ...] = (),
    ) -> str:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        for name in remove:
            self._git("rm", "-q", name)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m", message)
        return self.head

    def checkout(self, branch: str, *, create: bool = False) -> None:
        self._git("checkout", "-q", *(["-b"] if create else []), branch)
        self.branch = branch

    @property
    def head(self) -> str:
        return self._git("rev-parse", "HEAD")


class CommitStore:
    """A bare repository whose commits are written straight into its object store: each holds
    exactly the files given (no work tree), none moves a branch unless told to.

    For tiers that make many commits and look at none of them by hand: the objects are written
    as git writes loose objects, with no git process (a process costs milliseconds, and the unit
    tier makes hundreds of commits). Every commit's parent is the one made before it, so two
    commits of the same files and message are still two commits, as two pushes on GitHub are.
    """

    AUTHOR = b"Test Pusher <pusher@example.com> 1735732800 +0000"
    HISTORY = "refs/slipway-tests/made"
    """Holds the newest commit, so the repository is not empty before any branch exists."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for folder in ("objects", "refs/heads", "refs/tags"):
            (path / folder).mkdir(parents=True, exist_ok=True)
        (path / "HEAD").write_text("ref: refs/heads/main\n")
        (path / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
        self._tip: str | None = None
        self._branches: dict[str, str] = {}

    def commit(self, files: Mapping[str, str | bytes], message: str = "change") -> str:
        """A commit of `files` (path → content); returns its sha."""
        tree: dict[str, Any] = {}
        for name, content in files.items():
            *folders, leaf = name.split("/")
            node = tree
            for folder in folders:
                node = node.setdefault(folder, {})
            node[leaf] = content.encode() if isinstance(content, str) else content
        lines = [b"tree " + self._tree(tree).encode()]
        if self._tip is not None:
            lines.append(b"parent " + self._tip.encode())
        lines += [b"author " + self.AUTHOR, b"committer " + self.AUTHOR, b"", message.encode()]
        self._tip = self._object("commit", b"\n".join(lines) + b"\n")
        self._write_ref(self.HISTORY, self._tip)  # a repository with no ref is empty to GitHub
        return self._tip

    def has_branch(self, branch: str) -> bool:
        return branch in self._branches

    def tip(self, branch: str) -> str:
        """The sha `branch` points at."""
        return self._branches[branch]

    def point(self, branch: str, sha: str) -> None:
        """Make `branch` (created if need be) point at `sha`, as a push of it would."""
        self._write_ref(f"refs/heads/{branch}", sha)
        self._branches[branch] = sha

    def _write_ref(self, name: str, sha: str) -> None:
        ref = self.path / name
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(sha + "\n")

    def _tree(self, entries: dict[str, Any]) -> str:
        """Git orders a tree's entries by name, a folder's name as if it ended in "/"."""
        body = b""
        for name in sorted(entries, key=lambda n: n + "/" if isinstance(entries[n], dict) else n):
            entry = entries[name]
            if isinstance(entry, dict):
                mode, sha = b"40000", self._tree(entry)
            else:
                mode, sha = b"100644", self._object("blob", entry)
            body += mode + b" " + name.encode() + b"\0" + bytes.fromhex(sha)
        return self._object("tree", body)

    def _object(self, kind: str, body: bytes) -> str:
        data = f"{kind} {len(body)}\0".encode() + body
        sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        target = self.path / "objects" / sha[:2] / sha[2:]
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(zlib.compress(data))
        return sha
