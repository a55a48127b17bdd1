"""Two repositories' builds naming the same BuildKit cache mount do not share it: a tenant
can neither read another's cached files (tokens in ~/.npmrc, private wheels) nor plant files
in another's cache."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from builders.images import BuildKitBuilder
from manifests.recipes import BuildPlan
from tests.support.images import DOCKER, ensure_busybox_image

pytestmark = pytest.mark.docker


def build(root: Path, scope: str, lines: list[str], tags: list[str]) -> str:
    """The build log of a Dockerfile of `lines` built for the repository `scope`."""
    root.mkdir(parents=True, exist_ok=True)
    context = root / "src"
    context.mkdir(exist_ok=True)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text("\n".join([f"FROM {ensure_busybox_image()}", *lines]) + "\n")
    tag = f"slipway-test/cache-scope:{uuid.uuid4().hex[:8]}"
    tags.append(tag)
    log = root / f"{tag.rsplit(':', 1)[1]}.log"
    plan = BuildPlan(
        recipe="dockerfile",
        context_dir=context,
        dockerfile=dockerfile,
        dockerfile_path="Dockerfile",
        cache_scope=scope,
    )
    BuildKitBuilder(DOCKER).build(plan, tag, {}, log, cancelled=lambda: False, timeout_seconds=300)
    return log.read_text()


def test_a_repository_does_not_see_another_ones_cache_mount(
    tmp_path: Path, tags: list[str]
) -> None:
    victim, thief = f"victim-{uuid.uuid4().hex[:8]}", f"thief-{uuid.uuid4().hex[:8]}"
    planted = f"token-{uuid.uuid4().hex}"
    shared = f"npm-{uuid.uuid4().hex[:8]}"  # an id both name (no other test's cache)
    build(
        tmp_path / "victim",
        victim,
        [f"RUN --mount=type=cache,id={shared},target=/cache echo {planted} > /cache/note"],
        tags,
    )

    stolen = build(
        tmp_path / "thief",
        thief,
        [
            f"RUN echo {uuid.uuid4().hex}",
            f"RUN --mount=type=cache,id={shared},target=/cache cat /cache/note; true",
            # The victim's scoped id, named outright, is scoped again under the thief's.
            f"RUN --mount=type=cache,id=slipway-{victim}/{shared},target=/c cat /c/note; true",
            "RUN --mount=type=cache,target=/cache cat /cache/note; true",
        ],
        tags,
    )
    assert planted not in stolen, stolen[-2000:]

    # The victim's own next build still finds its cache: the mount does persist.
    again = build(
        tmp_path / "victim-again",
        victim,
        [
            f"RUN echo {uuid.uuid4().hex}",
            f"RUN --mount=type=cache,id={shared},target=/cache cat /cache/note",
        ],
        tags,
    )
    assert planted in again, again[-2000:]
