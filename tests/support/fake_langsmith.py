"""A local stand-in for LangSmith's API that checks what it receives, as fake_github does.

It serves what Slipway calls (`GET /sessions` by name or ids with stats, `POST /sessions`) and
what the `langsmith` client in a deployment posts its runs to (`GET /info`, `POST /runs`,
`PATCH /runs/{id}`, `POST /runs/batch`, `POST /runs/multipart`), each refusing a request without
the right `x-api-key` (401) or with a malformed body (422), the way LangSmith does. Contract
violations land in `errors`, so a test can end with `assert_no_errors()`.

Runs sent to a project it does not have create it (LangSmith does the same); `created_by_api`
tells the projects Slipway made through `POST /sessions` apart from those.

Containers reach it when it listens where the bridge reaches the host (the docker0 gateway) and
the network policy allows its port (SLIPWAY_NETWORK_POLICY_ALLOW, as an operator allows a
self-hosted LangSmith on their network).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT_ID = "00000000-0000-4000-8000-00000000beef"
RUN_FIELDS = ("id", "name", "run_type")
RUN_TYPES = {"tool", "chain", "llm", "retriever", "embedding", "prompt", "parser"}


@dataclass
class Project:
    id: str
    name: str
    description: str | None
    created_by_api: bool
    start_time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def json(self, runs: list[dict[str, Any]], stats: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tenant_id": TENANT_ID,
            "start_time": self.start_time,
            "end_time": None,
            "extra": None,
            "reference_dataset_id": None,
        }
        if stats:
            starts = [str(r.get("start_time") or "") for r in runs]
            body["run_count"] = len(runs)
            body["last_run_start_time"] = max(starts) if starts else None
        return body


class FakeLangSmith:
    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workspace_id: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.workspace_id = workspace_id
        """A key of several workspaces: every call must name this one in X-Tenant-Id."""
        self.projects: dict[str, Project] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        """Runs by id, each with the project name it went to under `session_name`."""
        self.errors: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.refuse_projects: str | None = None
        """When set, `POST /sessions` answers 503 with it (LangSmith down)."""
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_PATCH(self) -> None:
                fake._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                # Recorded like any request (none is answered: Slipway never deletes on
                # LangSmith, which a test checks in `requests`).
                fake._serve(self, "DELETE")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLangSmith:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    # -- what a test asks ------------------------------------------------------------------
    def runs_in(self, project: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.runs.values() if r.get("session_name") == project]

    def traces_in(self, project: str) -> list[dict[str, Any]]:
        """Root runs (a trace each) of the project."""
        return [r for r in self.runs_in(project) if not r.get("parent_run_id")]

    def assert_no_errors(self) -> None:
        assert not self.errors, "LangSmith saw requests it refused:\n" + "\n".join(self.errors)

    # -- the API ---------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = parts.path.rstrip("/")
        for prefix in ("/api/v1", "/api"):
            path = path.removeprefix(prefix)
        query = parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((method, path))
        routes: dict[tuple[str, str], Callable[..., tuple[int, Any]]] = {
            ("GET", "/info"): self._info,
            ("GET", "/sessions"): self._list_sessions,
            ("POST", "/sessions"): self._create_session,
            ("POST", "/runs"): self._post_run,
            ("POST", "/runs/batch"): self._batch,
            ("POST", "/runs/multipart"): self._multipart,
        }
        route = routes.get((method, path))
        if route is None and method == "PATCH" and path.startswith("/runs/"):
            route = self._patch_run
        if route is None:
            return self._answer(handler, 404, {"detail": f"no route {method} {path}"})
        if path != "/info" and handler.headers.get("x-api-key") != self.api_key:
            self._error(f"{method} {path} without the right x-api-key")
            return self._answer(handler, 401, {"detail": "Invalid token"})
        tenant = handler.headers.get("X-Tenant-Id")
        if path != "/info" and self.workspace_id is not None and tenant != self.workspace_id:
            self._error(f"{method} {path} names workspace {tenant!r}, not {self.workspace_id!r}")
            return self._answer(handler, 403, {"detail": "This API key spans several workspaces"})
        try:
            status, body = route(
                handler=handler, query=query, raw=raw, path=path, headers=handler.headers
            )
        except _Refused as refused:
            self._error(f"{method} {path}: {refused}")
            status, body = 422, {"detail": str(refused)}
        self._answer(handler, status, body)

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _info(self, **_: Any) -> tuple[int, Any]:
        # No zstd flag: the client sends plain multipart bodies.
        return 200, {
            "version": "0.10.0",
            "instance_flags": {},
            "batch_ingest_config": {
                "use_multipart_endpoint": True,
                "scale_up_qsize_trigger": 1000,
                "scale_up_nthreads_limit": 16,
                "scale_down_nempty_trigger": 4,
                "size_limit": 100,
                "size_limit_bytes": 20_971_520,
            },
        }

    def _list_sessions(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        stats = query.get("include_stats", ["false"])[0].lower() == "true"
        limit = int(query.get("limit", ["100"])[0])
        if not 1 <= limit <= 100:
            raise _Refused(f"limit must be 1-100, not {limit}")
        with self._lock:
            found = list(self.projects.values())
            if "name" in query:
                found = [p for p in found if p.name == query["name"][0]]
            if "id" in query:
                ids = set(query["id"])
                found = [p for p in found if p.id in ids]
            runs = list(self.runs.values())
            return 200, [
                p.json([r for r in runs if r.get("session_name") == p.name], stats)
                for p in found[:limit]
            ]

    def _create_session(self, raw: bytes, **_: Any) -> tuple[int, Any]:
        body = _json_object(raw)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _Refused("name must be a non-empty string")
        project_id = body.get("id") or str(uuid.uuid4())
        try:
            uuid.UUID(str(project_id))
        except ValueError:
            raise _Refused(f"id {project_id!r} is not a UUID") from None
        if self.refuse_projects is not None:
            return 503, {"detail": self.refuse_projects}
        with self._lock:
            if any(p.name == name for p in self.projects.values()):
                return 409, {"detail": "Session already exists."}
            description = body.get("description")
            project = Project(str(project_id), name, description, created_by_api=True)
            self.projects[project.id] = project
            return 200, project.json([], False)

    def _take_run(self, run: Any, *, patch: bool = False) -> None:
        if not isinstance(run, dict):
            raise _Refused("a run must be an object")
        required = ("id",) if patch else RUN_FIELDS
        missing = [f for f in required if not run.get(f)]
        if missing:
            raise _Refused(f"a run lacks {missing}")
        if not patch and run["run_type"] not in RUN_TYPES:
            raise _Refused(f"run_type {run['run_type']!r} is not one of {sorted(RUN_TYPES)}")
        with self._lock:
            if patch:
                if run["id"] not in self.runs:
                    raise _Refused(f"no run {run['id']} to patch")
                self.runs[run["id"]].update(run)
                return
            name = run.get("session_name")
            if not name and run.get("session_id"):
                project = self.projects.get(str(run["session_id"]))
                name = project.name if project else None
            if not name:
                raise _Refused("a run names no project (session_name or session_id)")
            if not any(p.name == name for p in self.projects.values()):
                created = Project(str(uuid.uuid4()), name, None, created_by_api=False)
                self.projects[created.id] = created
            self.runs[str(run["id"])] = {**run, "session_name": name}

    def _post_run(self, raw: bytes, **_: Any) -> tuple[int, Any]:
        self._take_run(_json_object(raw))
        return 202, {}

    def _patch_run(self, raw: bytes, path: str, **_: Any) -> tuple[int, Any]:
        self._take_run({**_json_object(raw), "id": path.removeprefix("/runs/")}, patch=True)
        return 202, {}

    def _batch(self, raw: bytes, **_: Any) -> tuple[int, Any]:
        body = _json_object(raw)
        for run in body.get("post") or []:
            self._take_run(run)
        for run in body.get("patch") or []:
            self._take_run(run, patch=True)
        return 202, {}

    def _multipart(self, raw: bytes, headers: Any, **_: Any) -> tuple[int, Any]:
        content_type = headers.get("Content-Type") or ""
        if not content_type.startswith("multipart/form-data") or "boundary=" not in content_type:
            raise _Refused(f"Content-Type {content_type!r} is not multipart/form-data")
        if (headers.get("Content-Encoding") or "").strip():
            raise _Refused("compressed bodies are not offered by this server's /info")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        posts: dict[str, dict[str, Any]] = {}
        patches: dict[str, dict[str, Any]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                raise _Refused("a part has no name")
            kind, _dot, rest = name.partition(".")
            run_id, _dot, extra = rest.partition(".")
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes | None):
                raise _Refused(f"part {name!r} is not a plain body")
            if kind not in ("post", "patch", "attachment", "feedback"):
                raise _Refused(f"part {name!r} is of no kind LangSmith takes")
            if kind in ("attachment", "feedback"):
                continue
            value = json.loads(payload or b"null")
            target = posts if kind == "post" else patches
            fields = target.setdefault(run_id, {"id": run_id})
            if extra:
                fields[extra] = value
            else:
                fields.update(value or {})
        for run in posts.values():
            self._take_run(run)
        for run in patches.values():
            self._take_run(run, patch=True)
        return 202, {}


class _Refused(Exception):
    pass


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _Refused("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused("the body is not a JSON object")
    return body
