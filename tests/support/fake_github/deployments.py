"""Deployments and their statuses, with GitHub's commit-status check (409 unless the commit's
check runs passed or ``required_contexts`` says which must) and ``auto_inactive``."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .checks import CheckRun, ChecksMixin
from .core import Repo
from .http import (
    JSON,
    REPO,
    Body,
    HttpError,
    Request,
    Response,
    RouteSpec,
    json_response,
    json_type,
)
from .payloads import iso_time, node_id

DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
MAX_DESCRIPTION = 140
_SUCCESSFUL_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})


@dataclass
class Deployment:
    """A deployment; ``statuses`` are the deployment-status objects in the order received."""

    id: int
    repository: str
    sha: str
    ref: str
    task: str
    payload: JSON | str
    environment: str
    original_environment: str
    description: str
    transient_environment: bool
    production_environment: bool
    auto_merge: bool
    required_contexts: list[str] | None
    created_at: str
    updated_at: str
    statuses: list[JSON] = field(default_factory=list)
    received: list[tuple[str, float]] = field(default_factory=list)
    """(state, time.perf_counter()) of each status as it arrived: benchmarks time by it."""
    deleted: bool = False

    @property
    def state(self) -> str | None:
        """State of the latest status, or None before the first one."""
        return str(self.statuses[-1]["state"]) if self.statuses else None


class DeploymentsMixin(ChecksMixin):
    _deployments: dict[int, Deployment]

    def _init_deployments(self) -> None:
        self._deployments = {}

    # ------------------------------------------------------------------ test helpers

    def deployments(self, full_name: str) -> list[Deployment]:
        """Copies of the repository's deployments (deleted ones too), in creation order."""
        key = full_name.lower()
        with self._lock:
            found = sorted(
                (dep for dep in self._deployments.values() if dep.repository.lower() == key),
                key=lambda dep: dep.id,
            )
            return copy.deepcopy(found)

    # ------------------------------------------------------------------ JSON

    def _deployment_json(self, deployment: Deployment) -> JSON:
        repo_api = f"{self.url}/repos/{deployment.repository}"
        url = f"{repo_api}/deployments/{deployment.id}"
        return {
            "url": url,
            "id": deployment.id,
            "node_id": node_id("Deployment", deployment.id),
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": copy.deepcopy(deployment.payload),
            "original_environment": deployment.original_environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": self._bot(),
            "created_at": deployment.created_at,
            "updated_at": deployment.updated_at,
            "statuses_url": f"{url}/statuses",
            "repository_url": repo_api,
            "transient_environment": deployment.transient_environment,
            "production_environment": deployment.production_environment,
            "performed_via_github_app": self._app_json(),
        }

    def _deployment_status_json(
        self,
        deployment: Deployment,
        state: str,
        *,
        description: str = "",
        environment: str,
        log_url: str = "",
        environment_url: str = "",
    ) -> JSON:
        status_id = self._next_id("deployment_status")
        repo_api = f"{self.url}/repos/{deployment.repository}"
        deployment_url = f"{repo_api}/deployments/{deployment.id}"
        now = iso_time()
        return {
            "url": f"{deployment_url}/statuses/{status_id}",
            "id": status_id,
            "node_id": node_id("DeploymentStatus", status_id),
            "state": state,
            "creator": self._bot(),
            "description": description,
            "environment": environment,
            "target_url": log_url,
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment_url,
            "repository_url": repo_api,
            "environment_url": environment_url,
            "log_url": log_url,
            "performed_via_github_app": self._app_json(),
        }

    # ------------------------------------------------------------------ routes

    def _deployments_routes(self) -> list[RouteSpec]:
        return [
            ("POST", REPO + r"/deployments", self._create_deployment),
            ("GET", REPO + r"/deployments", self._list_deployments),
            ("DELETE", REPO + r"/deployments/(?P<deployment_id>\d+)", self._delete_deployment),
            (
                "POST",
                REPO + r"/deployments/(?P<deployment_id>\d+)/statuses",
                self._create_deployment_status,
            ),
            (
                "GET",
                REPO + r"/deployments/(?P<deployment_id>\d+)/statuses",
                self._list_deployment_statuses,
            ),
        ]

    def _failing_contexts(self, repo: Repo, sha: str, required: list[str] | None) -> list[JSON]:
        """Commit contexts (check runs) that block a deployment of ``sha``, GitHub-style."""
        latest: dict[str, CheckRun] = {}
        for run in self._check_runs.values():
            if (
                run.repository.lower() == repo.key
                and run.head_sha == sha
                and (run.name not in latest or run.id > latest[run.name].id)
            ):
                latest[run.name] = run
        names = sorted(latest) if required is None else required
        failing: list[JSON] = []
        for name in names:
            found = latest.get(name)
            if found is None:
                failing.append({"context": name, "state": "missing"})
            elif found.status != "completed":
                failing.append({"context": name, "state": "pending"})
            elif found.conclusion not in _SUCCESSFUL_CONCLUSIONS:
                failing.append({"context": name, "state": "failure"})
        return failing

    def _create_deployment(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "deployments", "write")
        body = Body(request.json_object(), "Deployment")
        ref = body.string("ref", required=True, non_empty=True)
        task = body.string("task") or "deploy"
        auto_merge = body.boolean("auto_merge")
        required_contexts = body.string_list("required_contexts")
        payload: JSON | str = {}
        if "payload" in body.data:
            raw = body.data["payload"]
            if isinstance(raw, dict | str):
                payload = raw
            else:
                body.fail("payload", f"payload must be an object or a string, not {json_type(raw)}")
        environment = body.string("environment", non_empty=True)
        environment = "production" if environment is None else environment
        description = body.string("description", nullable=True, max_length=MAX_DESCRIPTION)
        transient = body.boolean("transient_environment")
        production = body.boolean("production_environment")
        body.check()
        assert ref is not None
        sha = self._resolve(repo, ref)
        if sha is None:
            raise HttpError(422, f"No ref found for: {ref}")
        if auto_merge is None or auto_merge:
            self._record(
                f"POST {request.path}: auto_merge should be false for a deploy of an exact commit "
                f"(it is {'omitted (default true)' if auto_merge is None else 'true'}; GitHub "
                "answers 409 when the ref is behind the default branch)"
            )
        with self._lock:
            failing = self._failing_contexts(repo, sha, required_contexts)
            if failing:
                raise HttpError(
                    409,
                    f"Conflict: Commit status checks failed for {ref}.",
                    detail=(
                        "required_contexts "
                        + (
                            "omitted (GitHub then requires every context on the commit)"
                            if required_contexts is None
                            else f"= {required_contexts}"
                        )
                        + f" but these are not successful: {failing}; pass required_contexts=[] "
                        "to deploy regardless of checks"
                    ),
                    errors=[
                        {
                            "resource": "Deployment",
                            "field": "required_contexts",
                            "code": "invalid",
                            "contexts": failing,
                        }
                    ],
                )
            now = iso_time()
            deployment = Deployment(
                id=self._next_id("deployment"),
                repository=repo.full_name,
                sha=sha,
                ref=ref,
                task=task,
                payload=payload,
                environment=environment,
                original_environment=environment,
                description=description or "",
                transient_environment=bool(transient),
                production_environment=(
                    environment == "production" if production is None else production
                ),
                auto_merge=True if auto_merge is None else auto_merge,
                required_contexts=required_contexts,
                created_at=now,
                updated_at=now,
            )
            self._deployments[deployment.id] = deployment
            return json_response(201, self._deployment_json(deployment))

    def _list_deployments(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "deployments", "read")
        query = request.query
        with self._lock:
            found = [
                self._deployment_json(dep)
                for dep in sorted(self._deployments.values(), key=lambda d: d.id, reverse=True)
                if dep.repository.lower() == repo.key
                and not dep.deleted
                and all(
                    query[name] == getattr(dep, name)
                    for name in ("sha", "ref", "task", "environment")
                    if name in query
                )
            ]
        page, headers = self._paginate(request, found)
        return json_response(200, page, headers)

    def _find_deployment(self, repo: Repo, params: Mapping[str, str]) -> Deployment:
        deployment = self._deployments.get(int(params["deployment_id"]))
        if deployment is None or deployment.deleted or deployment.repository.lower() != repo.key:
            raise HttpError(
                404,
                "Not Found",
                detail=f"no deployment {params['deployment_id']} in {repo.full_name}",
            )
        return deployment

    def _delete_deployment(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "deployments", "write")
        with self._lock:
            deployment = self._find_deployment(repo, params)
            others = [
                d
                for d in self._deployments.values()
                if d.repository.lower() == repo.key
                and not d.deleted
                and d.id != deployment.id
                and d.environment == deployment.environment
            ]
            if deployment.state != "inactive" and others:
                raise HttpError(
                    422,
                    "We cannot delete an active deployment unless it is the only deployment in a "
                    "given environment.",
                )
            deployment.deleted = True
        return Response(204)

    def _create_deployment_status(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "deployments", "write")
        body = Body(request.json_object(), "DeploymentStatus")
        state = body.string("state", required=True, choices=DEPLOYMENT_STATES)
        target_url = body.url("target_url", allow_empty=True)
        log_url = body.url("log_url", allow_empty=True)
        environment_url = body.url("environment_url", allow_empty=True)
        description = body.string("description", max_length=MAX_DESCRIPTION)
        environment = body.string("environment", non_empty=True)
        auto_inactive = body.boolean("auto_inactive")
        body.check()
        assert state is not None
        with self._lock:
            deployment = self._find_deployment(repo, params)
            if environment is not None:
                deployment.environment = environment
            status = self._deployment_status_json(
                deployment,
                state,
                description=description or "",
                environment=deployment.environment,
                log_url=log_url or target_url or "",
                environment_url=environment_url or "",
            )
            deployment.statuses.append(status)
            deployment.received.append((state, time.perf_counter()))
            deployment.updated_at = status["created_at"]
            if state == "success" and auto_inactive is not False:
                for other in self._deployments.values():
                    if (
                        other.id < deployment.id
                        and other.repository.lower() == repo.key
                        and not other.deleted
                        and other.environment == deployment.environment
                        and not other.transient_environment
                        and not other.production_environment
                        and other.state == "success"
                    ):
                        other.statuses.append(
                            self._deployment_status_json(
                                other, "inactive", environment=other.environment
                            )
                        )
                        other.updated_at = status["created_at"]
            return json_response(201, copy.deepcopy(status))

    def _list_deployment_statuses(self, request: Request, params: dict[str, str]) -> Response:
        repo, _ = self._repo_access(request, params, "deployments", "read")
        with self._lock:
            found = copy.deepcopy(list(reversed(self._find_deployment(repo, params).statuses)))
        page, headers = self._paginate(request, found)
        return json_response(200, page, headers)
