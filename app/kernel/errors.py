"""Domain errors. Each message says what went wrong in words a user can act on."""

from __future__ import annotations

from manifests.errors import SlipwayError


class NotFoundError(SlipwayError):
    """A requested object does not exist."""


class GitHubError(SlipwayError):
    """GitHub refused or could not be reached."""


class RevisionAbandoned(SlipwayError):
    """The revision was cancelled (its deployment removed) while it was being started."""


class DatabaseError(SlipwayError):
    """The deployment's database could not be provisioned."""


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


class ChannelError(SlipwayError):
    """A notification channel refused a message or could not be reached; the message never
    holds the channel's URL (it carries tokens)."""


class TracingError(SlipwayError):
    """The tracing service (LangSmith) refused a call or did not answer; retried later."""
