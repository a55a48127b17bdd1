"""The read API: deployments, their revisions, and each revision's build log."""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from app import deployments, revisions
from app.api.schemas import DeploymentView, RevisionView
from app.db import SessionFactory
from app.models import Repository, RevisionState
from app.pipeline import PipelineConfig
from app.settings import Settings


class DeploymentController(Controller):
    path = "/api/deployments"

    @get("/")
    async def list_deployments(
        self, sessions: NamedDependency[SessionFactory], settings: NamedDependency[Settings]
    ) -> list[DeploymentView]:
        with sessions() as session:
            views = []
            for deployment in deployments.list_deployments(session):
                repository = session.get(Repository, deployment.repository_id)
                views.append(
                    DeploymentView.of(
                        deployment,
                        repository.full_name if repository else "",
                        settings.deployment_url(deployment.slug),
                    )
                )
            return views

    @get("/{deployment_id:str}")
    async def get_deployment(
        self,
        deployment_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> DeploymentView:
        with sessions() as session:
            deployment = deployments.get_deployment(session, deployment_id)
            repository = session.get(Repository, deployment.repository_id)
            return DeploymentView.of(
                deployment,
                repository.full_name if repository else "",
                settings.deployment_url(deployment.slug),
            )

    @get("/{deployment_id:str}/revisions")
    async def revisions(
        self,
        deployment_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> list[RevisionView]:
        with sessions() as session:
            deployments.get_deployment(session, deployment_id)
            return [
                RevisionView.of(r, settings.api_url)
                for r in revisions.list_revisions(session, deployment_id)
            ]


class RevisionController(Controller):
    path = "/api/revisions"

    @get("/{revision_id:str}")
    async def get_revision(
        self,
        revision_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        settings: NamedDependency[Settings],
    ) -> RevisionView:
        with sessions() as session:
            return RevisionView.of(revisions.get_revision(session, revision_id), settings.api_url)

    @get("/{revision_id:str}/logs", media_type="text/plain; charset=utf-8")
    async def logs(
        self,
        revision_id: FromPath[str],
        sessions: NamedDependency[SessionFactory],
        pipeline_config: NamedDependency[PipelineConfig],
    ) -> str:
        """The build log so far: a snapshot, since a running build keeps appending to it."""
        with sessions() as session:
            revision = revisions.get_revision(session, revision_id)
        path: Path = pipeline_config.log_path(revision)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            if revision.state is RevisionState.queued:
                return ""
            raise NotFoundException(detail=f"revision {revision_id} has no build log") from None
