"""A stand-in for a platform's API, over real HTTP on 127.0.0.1, for the CLI's unit tests.

It answers the routes the CLI calls with the shapes app/api/schemas.py gives them, keeps
what it is sent, and refuses unknown tokens (401) and read-only writers (403) as the real
API does. A revision it starts goes one phase further each time it is looked at, or stays
in one phase (`hold`) so a test can interrupt a `--wait`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ADMIN_TOKEN = "slw_admin-token"
READER_TOKEN = "slw_reader-token"
T0 = "2025-03-01T12:00:00Z"
FAILURE = "the build failed: RUN false exited 1"
PHASE_FIELDS = {
    "queued": "created_at",
    "building": "build_started_at",
    "deploying": "deploy_started_at",
    "live": "live_at",
}


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def revision(deployment_id: str, number: int, state: str = "superseded") -> dict[str, Any]:
    return {
        "id": f"rev_{deployment_id[4:]}{number:02d}",
        "deployment_id": deployment_id,
        "number": number,
        "state": state,
        "commit_sha": f"{number:040x}",
        "commit_message": f"commit {number}",
        "image": f"slipway/web:{number}",
        "build_method": "dockerfile",
        "error": None,
        "attempt": 1,
        "approval_required": False,
        "approved_by": None,
        "rollback_of": None,
        "requested_by": "push",
        "created_at": T0,
        "build_started_at": T0,
        "build_finished_at": T0,
        "deploy_started_at": T0,
        "database_ready_at": T0,
        "replica_started_at": T0,
        "healthy_at": T0,
        "live_at": T0 if state in ("live", "superseded") else None,
        "finished_at": None,
        "logs_url": f"http://127.0.0.1/api/revisions/rev_{deployment_id[4:]}{number:02d}/logs",
    }


def deployment(slug: str) -> dict[str, Any]:
    return {
        "id": f"dep_{slug}",
        "slug": slug,
        "url": f"http://{slug}.localhost:8000",
        "repository": f"octo/{slug}",
        "branch": "main",
        "environment": "production",
        "type": "development",
        "live_revision_id": None,
        "pull_request": None,
        "deploy_on_push": True,
        "status": "active",
        "last_exit_reason": None,
        "desired_replicas": 1,
        "replicas": [],
        "removed_at": None,
        "deleted_at": None,
        "created_at": T0,
        "updated_at": T0,
    }


@dataclass
class FakeApi:
    url: str = ""
    tokens: dict[str, tuple[str, bool]] = field(
        default_factory=lambda: {ADMIN_TOKEN: ("admin", False), READER_TOKEN: ("reader", True)}
    )
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    revisions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per deployment id, oldest first."""
    env: dict[str, dict[str, Any]] = field(default_factory=dict)
    preview_env: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per deployment id, once a change with `"scope": "previews"` was made."""
    logs: dict[str, str] = field(default_factory=dict)
    domains: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per deployment id, as the platform lists them (pending until a test moves them on)."""
    server_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per deployment id: the lines its server-log route answers (filtered by q and revision)."""
    server_log_queries: list[dict[str, str]] = field(default_factory=list)
    hold: str | None = None
    """A phase new revisions stay in (e.g. "building"): `--wait` then waits until stopped."""
    fail_at: str | None = None
    """A phase in which new revisions fail (e.g. "building"), with `FAILURE` as the error."""
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    """(method, path, JSON body) of every request that passed the token check."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_deployment(self, slug: str, revisions: int = 3) -> dict[str, Any]:
        made = deployment(slug)
        self.deployments[made["id"]] = made
        rows = [revision(made["id"], n) for n in range(1, revisions + 1)]
        if rows:
            rows[-1]["state"] = "live"
            made["live_revision_id"] = rows[-1]["id"]
        self.revisions[made["id"]] = rows
        self.env[made["id"]] = {"vars": {}, "secrets": []}
        for row in rows:
            self.logs[row["id"]] = f"building {slug}#{row['number']}\nslipway: built\n"
        return made

    # -- routing ----------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: str, body: Any, auth: str | None) -> Any:
        caller = self.tokens.get((auth or "").removeprefix("Bearer ").strip())
        if caller is None:
            raise Refused(401, "the token is unknown or was revoked")
        if method not in ("GET", "HEAD") and caller[1]:
            raise Refused(403, f"the token {caller[0]!r} is read-only: it cannot change anything")
        self.requests.append((method, path, body))
        parts = path.strip("/").split("/")[1:]  # without "api"
        match (method, parts):
            case ("GET", ["whoami"]):
                return {"name": caller[0], "read_only": caller[1]}
            case ("GET", ["deployments"]):
                return list(self.deployments.values())
            case ("GET", ["deployments", did]):
                return self._deployment(did)
            case ("DELETE", ["deployments", did]):
                found = self._deployment(did)
                if body.get("confirm") != found["slug"]:
                    raise Refused(422, "confirm with the deployment's name")
                del self.deployments[did]
                return {
                    "deployment_id": did,
                    "status": "removing",
                    "progress_url": f"{self.url}/api/deployments/{did}",
                    "warning": "the deployment's database was dropped",
                }
            case ("GET", ["deployments", did, "revisions"]):
                self._deployment(did)
                return list(reversed(self.revisions[did]))
            case ("POST", ["deployments", did, "revisions"]):
                return self._start(did, f"deploy of {body.get('ref') or 'main'}", None)
            case ("POST", ["deployments", did, "rollback"]):
                number = body["revision"]
                found = self._deployment(did)
                target = [r for r in self.revisions[did] if r["number"] == number]
                if not target:
                    raise Refused(404, f"{found['slug']} has no revision #{number}")
                return self._start(did, f"rollback to revision #{number}", target[0]["id"])
            case ("GET", ["deployments", did, "env"]):
                self._deployment(did)
                if did in self.preview_env:
                    return {**self.env[did], "previews": self.preview_env[did]}
                return self.env[did]
            case ("PATCH", ["deployments", did, "env"]):
                did = self._deployment(did)["id"]
                if body.get("scope", "deployment") == "previews":
                    env = self.preview_env.setdefault(did, {"vars": {}, "secrets": []})
                    _change(env, body)
                    return {
                        "deployment": self.deployments[did],
                        "revision": None,
                        "message": "env of its previews changed",
                    }
                env = self.env[did]
                _change(env, body)
                return self._start(did, "env changed", None)
            case ("GET", ["deployments", did, "domains"]):
                self._deployment(did)
                return self.domains.get(did, [])
            case ("POST", ["deployments", did, "domains"]):
                found = self._deployment(did)
                name = body["domain"].lower()
                for owner, held in self.domains.items():
                    if owner != did and any(d["domain"] == name for d in held):
                        raise Refused(409, f"domain: {name} belongs to another deployment")
                added = {
                    "domain": name,
                    "deployment_id": did,
                    "state": "pending-dns",
                    "reason": None,
                    "records": [
                        {"type": "CNAME", "name": name, "value": f"{found['slug']}.localhost"}
                    ],
                    "url": f"http://{name}:8000/",
                    "created_at": T0,
                    "checked_at": None,
                    "active_at": None,
                    "note": None,
                }
                names = {d["domain"] for d in self.domains.get(did, [])}
                if name.count(".") == 1 and f"www.{name}" not in names:
                    added["note"] = (
                        f"www.{name} is a name of its own and is not served: add it too if it "
                        f"should serve this app (slipway domains add {found['slug']} www.{name})"
                    )
                self.domains.setdefault(did, []).append(added)
                return added
            case ("DELETE", ["deployments", did, "domains", name]):
                held = self.domains.get(self._deployment(did)["id"], [])
                if not any(d["domain"] == name for d in held):
                    raise Refused(404, f"no domain {name}")
                self.domains[did] = [d for d in held if d["domain"] != name]
                return None
            case ("GET", ["revisions", rid]):
                return self._advance(self._revision(rid))
            case ("GET", ["deployments", did, "logs"]):
                self._deployment(did)
                asked = {k: v[0] for k, v in parse_qs(query).items()}
                self.server_log_queries.append(asked)
                matching = [
                    line
                    for line in self.server_logs.get(did, [])
                    if asked.get("q", "") in line["text"]
                    and asked.get("revision", line["revision_id"]) == line["revision_id"]
                ]
                return Events(matching) if asked.get("follow") == "true" else matching
            case ("GET", ["revisions", rid, "logs"]):
                self._revision(rid)
                return LogText(self.logs.get(rid, ""))
            case ("GET", ["tokens"]):
                return [
                    {
                        "id": f"tok_{name}",
                        "name": name,
                        "read_only": read_only,
                        "created_at": T0,
                        "last_used_at": None,
                        "revoked_at": None,
                    }
                    for name, read_only in self.tokens.values()
                ]
            case ("POST", ["tokens"]):
                token = f"slw_new-{body['name']}"
                self.tokens[token] = (body["name"], bool(body.get("read_only")))
                return {
                    "id": f"tok_{body['name']}",
                    "name": body["name"],
                    "read_only": bool(body.get("read_only")),
                    "created_at": T0,
                    "last_used_at": None,
                    "revoked_at": None,
                    "token": token,
                }
            case ("DELETE", ["tokens", name]):
                for token, (known, _) in list(self.tokens.items()):
                    if known == name:
                        del self.tokens[token]
                        return {
                            "id": f"tok_{name}",
                            "name": name,
                            "read_only": False,
                            "created_at": T0,
                            "last_used_at": None,
                            "revoked_at": T0,
                        }
                raise Refused(404, f"no token named {name!r}")
        raise Refused(404, f"no route {method} {path}")

    def _deployment(self, deployment_id: str) -> dict[str, Any]:
        if deployment_id not in self.deployments:
            raise Refused(404, f"no deployment {deployment_id}")
        return self.deployments[deployment_id]

    def _revision(self, revision_id: str) -> dict[str, Any]:
        for rows in self.revisions.values():
            for row in rows:
                if row["id"] == revision_id:
                    return row
        raise Refused(404, f"no revision {revision_id}")

    def _start(self, deployment_id: str, message: str, rollback_of: str | None) -> Any:
        found = self._deployment(deployment_id)
        rows = self.revisions[deployment_id]
        made = revision(deployment_id, len(rows) + 1, state="queued")
        for phase in (
            "build_started_at",
            "build_finished_at",
            "deploy_started_at",
            "database_ready_at",
            "replica_started_at",
            "healthy_at",
            "live_at",
        ):
            made[phase] = None
        made["rollback_of"] = rollback_of
        made["requested_by"] = "admin"
        rows.append(made)
        self.logs[made["id"]] = f"building {found['slug']}#{made['number']}\nslipway: built\n"
        return {"deployment": found, "revision": dict(made), "message": message}

    def _advance(self, row: dict[str, Any]) -> dict[str, Any]:
        """One phase further per look, unless held (or failed)."""
        phases = list(PHASE_FIELDS)
        if row["state"] == self.fail_at:
            row["state"], row["error"] = "failed", FAILURE
            return dict(row)
        if row["state"] in phases and row["state"] != self.hold and row["state"] != "live":
            row["state"] = phases[phases.index(row["state"]) + 1]
            row[PHASE_FIELDS[row["state"]]] = T0
        return dict(row)


class LogText(str):
    """A route's answer that is text/plain, not JSON."""


class Events(list[dict[str, Any]]):
    """A followed server log's answer: Server-Sent Events, one per line, with a keepalive
    comment between them as the API sends; the stream ends after the last (as a follow ends
    at SLIPWAY_LOG_FOLLOW_MAX_SECONDS)."""


def handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            try:
                with api.lock:
                    answer = api.answer(
                        method, parts.path, parts.query, body, self.headers.get("Authorization")
                    )
            except Refused as refused:
                self._send(refused.status, {"detail": refused.detail})
                return
            if isinstance(answer, LogText):
                follow = parse_qs(parts.query).get("follow") == ["true"]
                self._send(200, str(answer) + ("slipway: live\n" if follow else ""), text=True)
                return
            if isinstance(answer, Events):
                stream = "".join(f": keepalive\n\ndata: {json.dumps(line)}\n\n" for line in answer)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(stream.encode())))
                self.end_headers()
                self.wfile.write(stream.encode())
                return
            self._send(200, answer)

        def _send(self, status: int, body: Any, *, text: bool = False) -> None:
            data = body.encode() if text else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def running_api() -> Iterator[FakeApi]:
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def _change(env: dict[str, Any], body: dict[str, Any]) -> None:
    env["vars"].update(body.get("set", {}))
    for name in body.get("secrets", {}):
        env["secrets"].append(name)
    for key in body.get("unset", []):
        env["vars"].pop(key, None)
        if key in env["secrets"]:
            env["secrets"].remove(key)
