"""LangSmith's REST API, as Slipway calls it: tracing projects ("sessions") by name.

The calls are the langsmith client's own (`Client.read_project`, `create_project`,
`list_projects` in langsmith 0.15): `GET /sessions?name=`, `POST /sessions`, `GET
/sessions?id=…&include_stats=true`, with the key in `x-api-key` and the workspace, when one
is set, in `X-Tenant-Id`. One door: every call goes through `_request`, which maps transport
errors and refusals to TracingError without ever putting the key in a message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from app.kernel.errors import TracingError
from app.kernel.ports import TracingProject
from manifests.tracing import LangSmith, project_url

TIMEOUT_SECONDS = 10.0
"""A call is given this long; a project not made now is made at the next usage tick."""
IDS_PER_CALL = 100
"""LangSmith pages `/sessions` at 100 at most."""


class LangSmithProjects:
    def __init__(self, langsmith: LangSmith, *, transport: httpx.BaseTransport | None = None):
        self._langsmith = langsmith
        self._transport = transport

    def _client(self) -> httpx.Client:
        headers = {"x-api-key": self._langsmith.api_key, "Accept": "application/json"}
        if self._langsmith.workspace_id:
            headers["X-Tenant-Id"] = self._langsmith.workspace_id
        return httpx.Client(
            base_url=self._langsmith.endpoint.rstrip("/"),
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            transport=self._transport,
        )

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            with self._client() as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TracingError(
                f"could not {what}: LangSmith at {self._langsmith.endpoint} did not answer "
                f"({type(exc).__name__})"
            ) from None
        if response.status_code == 409:
            return response
        if response.status_code >= 400:
            raise TracingError(
                f"LangSmith refused to {what} (HTTP {response.status_code}): {_detail(response)}"
            )
        return response

    def _find(self, name: str) -> TracingProject | None:
        response = self._request(
            "GET",
            "/sessions",
            f"look up the tracing project {name!r}",
            params={"name": name, "limit": 1},
        )
        found = _json(response)
        if isinstance(found, list):
            match = next((p for p in found if isinstance(p, dict) and p.get("name") == name), None)
            return self._project(match) if match else None
        return None

    def ensure_project(self, name: str, description: str) -> TracingProject:
        existing = self._find(name)
        if existing is not None:
            return existing
        response = self._request(
            "POST",
            "/sessions",
            f"create the tracing project {name!r}",
            json={"name": name, "description": description, "extra": None, "id": str(uuid.uuid4())},
        )
        if response.status_code == 409:  # made meanwhile (another worker): it is there
            again = self._find(name)
            if again is None:
                raise TracingError(
                    f"LangSmith says the tracing project {name!r} exists but does not list it"
                )
            return again
        return self._project(_json(response))

    def last_runs(self, project_ids: list[str]) -> dict[str, datetime | None]:
        seen: dict[str, datetime | None] = {}
        for start in range(0, len(project_ids), IDS_PER_CALL):
            chunk = project_ids[start : start + IDS_PER_CALL]
            response = self._request(
                "GET",
                "/sessions",
                "read the tracing projects' last runs",
                params={"id": chunk, "include_stats": "true", "limit": IDS_PER_CALL},
            )
            for project in _json(response) or []:
                if isinstance(project, dict) and "id" in project:
                    seen[str(project["id"])] = _time(project.get("last_run_start_time"))
        return seen

    def _project(self, body: Any) -> TracingProject:
        try:
            project_id, tenant_id = str(body["id"]), str(body["tenant_id"])
        except (TypeError, KeyError) as exc:
            raise TracingError(f"LangSmith answered a project without {exc}") from None
        return TracingProject(
            id=project_id,
            tenant_id=tenant_id,
            url=project_url(self._langsmith, tenant_id, project_id),
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise TracingError(
            f"LangSmith answered HTTP {response.status_code} with something not JSON"
        ) from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:200]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # LangSmith writes UTC without an offset
        moment = moment.replace(tzinfo=UTC)
    return moment
