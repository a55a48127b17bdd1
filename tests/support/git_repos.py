"""Git repositories the tests make, to be served by the fake GitHub as tarballs."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

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

    For tiers that make many commits and look at none of them by hand: one `git fast-import` per
    commit. Every commit is chained onto the previous one (on a ref of its own), so two commits
    of the same files and message are still two commits, as two pushes on GitHub are.
    """

    HISTORY = "refs/slipway-tests/made"

    def __init__(self, path: Path) -> None:
        self.path = path
        subprocess.run(
            ["git", "init", "-q", "--bare", str(path)], capture_output=True, check=True, timeout=60
        )
        self._tip: str | None = None

    def commit(self, files: Mapping[str, str | bytes], message: str = "change") -> str:
        """A commit of `files` (path → content); returns its sha."""
        stream = bytearray()

        def data(content: bytes) -> None:
            stream.extend(b"data %d\n" % len(content) + content + b"\n")

        stream.extend(f"commit {self.HISTORY}\nmark :1\n".encode())
        stream.extend(b"committer Test Pusher <pusher@example.com> 1735732800 +0000\n")
        data(message.encode())
        if self._tip is not None:
            stream.extend(f"from {self._tip}\n".encode())
        stream.extend(b"deleteall\n")
        for name, content in files.items():
            stream.extend(f"M 100644 inline {name}\n".encode())
            data(content.encode() if isinstance(content, str) else content)
        stream.extend(b"\nget-mark :1\n")
        result = subprocess.run(
            ["git", "-C", str(self.path), "fast-import", "--quiet"],
            input=bytes(stream),
            capture_output=True,
            check=True,
            timeout=60,
        )
        self._tip = result.stdout.decode().strip()
        return self._tip

    def has_branch(self, branch: str) -> bool:
        found = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "-q", "--verify", f"refs/heads/{branch}"],
            capture_output=True,
            check=False,
            timeout=60,
        )
        return found.returncode == 0

    def tip(self, branch: str) -> str:
        """The sha `branch` points at."""
        return subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "--verify", f"refs/heads/{branch}"],
            capture_output=True,
            check=True,
            text=True,
            timeout=60,
        ).stdout.strip()

    def point(self, branch: str, sha: str) -> None:
        """Make `branch` (created if need be) point at `sha`, as a push of it would."""
        subprocess.run(
            ["git", "-C", str(self.path), "update-ref", f"refs/heads/{branch}", sha],
            capture_output=True,
            check=True,
            timeout=60,
        )
