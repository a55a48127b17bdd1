"""The errors builds raise: fetching a commit's source, building its image, the engine."""

from __future__ import annotations

from manifests.errors import SlipwayError


class SourceError(SlipwayError):
    """The commit's source could not be fetched or unpacked."""


class BuildError(SlipwayError):
    """The image build failed; the build log says why."""


class BuildCancelled(SlipwayError):
    """A newer revision superseded this one while it was building."""


class EngineError(SlipwayError):
    """The Docker engine refused an operation on running replicas or images."""
