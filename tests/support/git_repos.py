"""Git repositories the tests make, to be served by the fake GitHub as tarballs."""

from __future__ import annotations

import subprocess
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
