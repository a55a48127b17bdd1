"""The errors the manifests raise, and the root every Slipway error derives from.

The root lives here, at the bottom of the layers (manifests import nothing of the rest of
Slipway), so the builders, the manifests and the app all raise kinds of one SlipwayError that a
caller catches once. Each message says what went wrong in words a user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

ANNOTATION_LEVELS = ("notice", "warning", "failure")


@dataclass(frozen=True)
class Annotation:
    """A problem on lines of one file of the commit, shown by GitHub on the check run and in
    the pull request's diff."""

    path: str
    """Relative to the repository root, POSIX."""
    start_line: int
    end_line: int
    message: str
    level: str = "failure"
    """notice, warning or failure (GitHub's annotation levels)."""
    title: str | None = None

    def as_github(self) -> dict[str, object]:
        """The check-run `output.annotations[]` item."""
        item: dict[str, object] = {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": max(self.end_line, self.start_line),
            "annotation_level": self.level,
            "message": self.message,
        }
        if self.title:
            item["title"] = self.title[:255]
        return item


class SlipwayError(Exception):
    """Base of every error Slipway raises on purpose."""


class ConfigError(SlipwayError):
    """The repository's slipway.toml or build recipe is wrong.

    `annotations` point at the lines at fault, when the recipe knows them (langgraph.json).
    """

    def __init__(self, message: str, *, annotations: tuple[Annotation, ...] = ()) -> None:
        super().__init__(message)
        self.annotations = annotations


class RuntimeStartError(SlipwayError):
    """The container could not be started, exited, or never answered its health check."""
