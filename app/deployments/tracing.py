"""Every deployment's tracing project, made on LangSmith if missing and named as the deployment.

Run at each usage tick: a project LangSmith would not make (down, a bad key) is retried at the
next one, the reason shown on the deployment (`tracing_error` in the API) and logged. A deploy
never waits on it: the replicas already carry LANGSMITH_PROJECT, and LangSmith files runs sent
to a project it does not have yet under a new one of that name. Deleting a deployment leaves
its project and traces alone.
"""

from __future__ import annotations

import logging

from sqlmodel import col, select

from app.kernel.db import SessionFactory
from app.kernel.errors import TracingError
from app.kernel.models import Deployment, Repository
from app.kernel.ports import Clock, PreviewNotifier, TracingService
from manifests.tracing import project_name

log = logging.getLogger(__name__)


class TracingProjects:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        service: TracingService | None,
        notifier: PreviewNotifier,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._service = service
        self._notifier = notifier
        self._clock = clock

    @property
    def configured(self) -> bool:
        return self._service is not None

    def ensure_missing(self) -> int:
        """Make the projects deployments lack; returns how many were made."""
        if self._service is None:
            return 0
        with self._sessions() as session:
            missing = session.exec(
                select(Deployment).where(
                    col(Deployment.removed_at).is_(None),
                    col(Deployment.tracing_project_id).is_(None),
                )
            ).all()
            wanted = []
            for deployment in missing:
                repository = session.get(Repository, deployment.repository_id)
                wanted.append((deployment.id, deployment.slug, repository))
        made = 0
        for deployment_id, slug, repository in wanted:
            description = f"Traces of the Slipway deployment {slug}" + (
                f" of {repository.full_name}" if repository else ""
            )
            try:
                project = self._service.ensure_project(project_name(slug), description)
            except TracingError as exc:
                self._failed(deployment_id, str(exc))
                continue
            with self._sessions() as session:
                row = session.get(Deployment, deployment_id)
                if row is None:
                    continue
                deployment = row
                deployment.tracing_project_id = project.id
                deployment.tracing_project_url = project.url
                deployment.tracing_error = None
                session.add(deployment)
                session.commit()
                preview = deployment.is_preview
            made += 1
            log.info(
                "tracing project ready",
                extra={"deployment_id": deployment_id, "project_id": project.id},
            )
            if preview:
                self._notifier.deployment_changed(deployment_id)  # the comment links it
        return made

    def _failed(self, deployment_id: str, error: str) -> None:
        with self._sessions() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None:
                return
            if deployment.tracing_error != error:
                log.warning(
                    "tracing project not made; retried at the next usage tick",
                    extra={"deployment_id": deployment_id, "error": error},
                )
                deployment.tracing_error = error
                session.add(deployment)
                session.commit()
