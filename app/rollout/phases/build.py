"""Build: the revision's image, and how it runs as the platform decided while building it.

A rollback runs its source revision's image again (no download, no build) while that image is
kept; anything else is built from the fetched source by the chosen recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from app.kernel.db import SessionFactory
from app.kernel.models import Revision, RevisionState
from app.kernel.ports import ImageBuilder
from app.rollout.phases.context import RevisionContext
from app.rollout.phases.fetch import Source
from manifests.config import RepositoryConfig, deploy_labels, scale_labels
from manifests.containers import LABEL_PREFIX
from manifests.image_names import revision_image_tag
from manifests.recipes import langgraph_runtime_of, state_dir_of
from manifests.run import RunConfig, scale_table

REUSED = "reused"
"""The build method of a rollback that ran its source's image again."""


@dataclass(frozen=True)
class Image:
    tag: str
    run: RunConfig
    """How it runs: from the repository's config and the labels the platform put on it."""
    method: str
    """How it was made (the builder's method, or `reused`), recorded on the revision."""


class Build:
    def __init__(self, *, sessions: SessionFactory, builder: ImageBuilder) -> None:
        self._sessions = sessions
        self._builder = builder

    def reuse(self, ctx: RevisionContext) -> Image | None:
        """A rollback's image: its source revision's, tagged anew.

        How it runs is the record the platform made when it built that image: never what the
        image's labels say (a Dockerfile's LABEL line is the tenant's to write). None when the
        image was pruned, or predates that record: the commit is then built again, and the log
        says so.
        """
        revision = ctx.revision
        assert revision.rollback_of is not None
        tag = revision_image_tag(ctx.deployment.id, revision.id)
        with self._sessions() as session:
            source = session.get(Revision, revision.rollback_of)
            assert source is not None
            # The image depends on the commit alone (env is not a build input), so any
            # revision of this deployment built from it will do: an earlier rollback's too.
            same_commit = session.exec(
                select(Revision)
                .where(
                    Revision.deployment_id == source.deployment_id,
                    Revision.commit_sha == source.commit_sha,
                    col(Revision.image).is_not(None),
                    Revision.id != revision.id,
                )
                .order_by(col(Revision.number).desc())
            ).all()
        what = f"revision #{source.number} ({source.commit_sha[:7]})"
        candidates: dict[str, str] = {}
        for built in [source, *same_commit]:
            if built.image and built.run_config and built.image not in candidates:
                candidates[built.image] = built.run_config
        for image, recorded in candidates.items():
            if self._builder.retag(image, tag) is None:
                continue
            ctx.log.append(f"slipway: rollback to {what}: reusing its image {image}")
            ctx.event("revision image reused", source_revision_id=source.id)
            return Image(tag=tag, run=RunConfig.from_json(recorded), method=REUSED)
        ctx.log.append(
            f"slipway: rollback to {what}: its image is no longer kept, so the commit is built "
            "again",
        )
        return None

    def run(self, ctx: RevisionContext, source: Source) -> Image:
        """Raises BuildCancelled as soon as the revision is cancelled (a newer push, a
        teardown), BuildError when the build fails."""
        revision = ctx.revision
        tag = revision_image_tag(ctx.deployment.id, revision.id)
        labels = {
            **source.plan.labels,
            f"{LABEL_PREFIX}.deployment": ctx.deployment.id,
            f"{LABEL_PREFIX}.revision": revision.id,
            f"{LABEL_PREFIX}.commit": revision.commit_sha,
            **deploy_labels(source.config.deploy),
            **scale_labels(source.config.scale),
        }
        built = self._builder.build(
            source.plan,
            tag,
            labels,
            ctx.log.path,
            cancelled=lambda: self._is_cancelled(revision.id),
            timeout_seconds=ctx.config.build_timeout_seconds,
            redact=ctx.redact,
        )
        ctx.event("revision built", image=tag, seconds=round(built.seconds, 2))
        return Image(tag=tag, run=run_config(source.config, labels), method=built.method)

    def _is_cancelled(self, revision_id: str) -> bool:
        with self._sessions() as session:
            state = session.exec(select(Revision.state).where(Revision.id == revision_id)).one()
        return state is RevisionState.cancelled


def run_config(repo_config: RepositoryConfig, labels: dict[str, str]) -> RunConfig:
    """How a revision built now runs: from the repository's config and the labels the platform
    put on its image (the recipe's and its own), never read back from the image."""
    return RunConfig(
        port=repo_config.deploy.port,
        health_path=repo_config.deploy.health_path,
        langgraph_runtime=langgraph_runtime_of(labels),
        scale=scale_table(labels),
        state_dir=state_dir_of(labels),
    )
