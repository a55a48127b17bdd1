"""Domain errors. Each message says what went wrong in words a user can act on."""

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


class NotFoundError(SlipwayError):
    """A requested object does not exist."""


class GitHubError(SlipwayError):
    """GitHub refused or could not be reached."""


class SourceError(SlipwayError):
    """The commit's source could not be fetched or unpacked."""


class ConfigError(SlipwayError):
    """The repository's slipway.toml or build recipe is wrong.

    `annotations` point at the lines at fault, when the recipe knows them (langgraph.json).
    """

    def __init__(self, message: str, *, annotations: tuple[Annotation, ...] = ()) -> None:
        super().__init__(message)
        self.annotations = annotations


class BuildError(SlipwayError):
    """The image build failed; the build log says why."""


class BuildCancelled(SlipwayError):
    """A newer revision superseded this one while it was building."""


class RevisionAbandoned(SlipwayError):
    """The revision was cancelled (its deployment removed) while it was being started."""


class DatabaseError(SlipwayError):
    """The deployment's database could not be provisioned."""


class RuntimeStartError(SlipwayError):
    """The container could not be started, exited, or never answered its health check."""


class EngineError(SlipwayError):
    """The Docker engine refused an operation on running replicas or images."""


class TeardownIncomplete(SlipwayError):
    """Some of a deployment's parts could not be removed yet; the teardown is tried again."""


class RouterError(SlipwayError):
    """The router (Caddy) refused the configuration or could not be reached."""


class InvalidRequest(SlipwayError):
    """A request to the API is malformed; the message names the field and what is wrong."""


class ConflictError(SlipwayError):
    """The request clashes with what exists (a name taken, a deployment being removed)."""


class PermissionDenied(SlipwayError):
    """The caller may not do this (a read-only token writing)."""
