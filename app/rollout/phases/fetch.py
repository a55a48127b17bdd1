"""Fetch: the commit's source from GitHub, unpacked within limits, its slipway.toml read, and
the recipe that will build it chosen (a Dockerfile, a LangGraph app ...)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from app.kernel.ports import GitHubPort
from app.rollout.phases.context import RevisionContext
from builders.source import unpack_tarball
from manifests.config import RepositoryConfig, load_repository_config
from manifests.containers import DeploymentType
from manifests.recipes import BuildPlan, BuildTarget, plan_build


@dataclass(frozen=True)
class Source:
    """What the build phase needs of a fetched commit."""

    plan: BuildPlan
    """How the chosen recipe builds it (and the `[deploy]` it implies, already applied)."""
    config: RepositoryConfig


class Fetch:
    def __init__(self, *, github: GitHubPort) -> None:
        self._github = github

    def run(self, ctx: RevisionContext) -> Source:
        revision, deployment = ctx.revision, ctx.deployment
        work = ctx.config.builds_dir / revision.id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        ctx.log.append(
            f"slipway: revision #{revision.number} of {deployment.slug}, "
            f"commit {revision.commit_sha}"
        )
        tarball = work / "source.tar.gz"
        started = time.monotonic()
        self._github.download_tarball(
            ctx.ref.installation_id,
            ctx.ref.repository.full_name,
            revision.commit_sha,
            tarball,
            max_bytes=ctx.config.max_download_bytes,
        )
        source = unpack_tarball(tarball, work / "src", ctx.config.unpack_limits)
        tarball.unlink()
        ctx.log.append(f"slipway: fetched source in {time.monotonic() - started:.1f} s")
        config = load_repository_config(source)
        target = BuildTarget(
            work_dir=work,
            production=deployment.type is DeploymentType.production,
            cache_scope=str(ctx.ref.repository.id),
        )
        plan = plan_build(source, config, target, ctx.config.recipes)
        if plan.deploy is not None:
            config = config.model_copy(update={"deploy": plan.deploy})
        for note in plan.notes:
            ctx.log.append(f"slipway: {ctx.redact(note)}")
        return Source(plan=plan, config=config)
