"""Request and response plumbing of the fake GitHub: the HTTP server, GitHub-style errors, and
the field-by-field checks of JSON request bodies.

Nothing here knows about GitHub resources; :class:`Backend` (the fake) routes the requests.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from .payloads import iso_time

JSON = dict[str, Any]

DOCS = "https://docs.github.com/rest"
CODELOAD_PREFIX = "/_codeload/"
"""Paths of the fake's stand-in for codeload.github.com: not API answers, never delayed."""


class HttpError(Exception):
    """Raised by a route: becomes a GitHub-style error answer and an entry in ``fake.errors``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        detail: str | None = None,
        errors: Sequence[JSON] | None = None,
        extra: Mapping[str, Any] | None = None,
        record: bool = True,
    ) -> None:
        """``record=False``: an answer GitHub gives in the normal course of things (a file that
        is not there, a user who is not a collaborator), not a contract violation."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or message
        self.errors = list(errors or [])
        self.extra = dict(extra or {})
        self.record = record

    def response(self) -> Response:
        body: JSON = {
            "message": self.message,
            "documentation_url": DOCS,
            "status": str(self.status),
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return json_response(self.status, body)


@dataclass
class Request:
    method: str
    raw_path: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    parsed: Any = None

    def header(self, name: str) -> str | None:
        value: object = self.headers.get(name)
        return None if value is None else str(value)

    def media_types(self) -> list[str]:
        """The media types of the ``Accept`` header, lower case, without parameters."""
        accept = self.header("Accept") or ""
        return [part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part]

    def json_object(self) -> JSON:
        """The request body as a JSON object (an empty body counts as ``{}``)."""
        if not self.body.strip():
            return {}
        if not isinstance(self.parsed, dict):
            raise HttpError(
                422,
                "Invalid request. The body must be a JSON object.",
                detail=f"request body is a JSON {json_type(self.parsed)}, not an object",
            )
        return cast(JSON, self.parsed)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request, dict[str, str]], Response]
RouteSpec = tuple[str, str, Route]
"""``(method, path regex, route)``: the regex must match the whole raw (still quoted) path."""
REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


def json_response(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps(obj).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_time(value: str) -> str:
    """An RFC 3339 date-time (OpenAPI ``format: date-time``) normalised to GitHub's ``...Z``."""
    if "T" not in value.upper():
        raise ValueError("no time part")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("no UTC offset")
    return iso_time(moment)


def is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class Body:
    """Checks one JSON request body field by field, collecting GitHub-style errors."""

    def __init__(self, data: Mapping[str, Any], resource: str) -> None:
        self.data = data
        self.resource = resource
        self.errors: list[JSON] = []

    def fail(self, field_name: str, message: str, code: str = "invalid") -> None:
        self.errors.append(
            {"resource": self.resource, "field": field_name, "code": code, "message": message}
        )

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        nullable: bool = False,
        non_empty: bool = False,
        max_length: int | None = None,
        choices: Sequence[str] | None = None,
        data: Mapping[str, Any] | None = None,
        label: str | None = None,
    ) -> str | None:
        source = self.data if data is None else data
        name = label or key
        if key not in source:
            if required:
                self.fail(name, f"{name} is required", "missing_field")
            return None
        value: object = source[key]
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.fail(name, f"{name} must be a string, not {json_type(value)} {value!r}")
            return None
        if non_empty and not value:
            self.fail(name, f"{name} must not be empty", "missing_field")
        if max_length is not None and len(value) > max_length:
            self.fail(name, f"{name} is {len(value)} characters long; the maximum is {max_length}")
        if choices is not None and value not in choices:
            self.fail(name, f"{name} must be one of {list(choices)}, not {value!r}")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, bool):
            self.fail(key, f"{key} must be a boolean, not {json_type(value)} {value!r}")
            return None
        return value

    def integer(self, key: str, *, data: Mapping[str, Any], label: str) -> int | None:
        if key not in data:
            self.fail(label, f"{label} is required", "missing_field")
            return None
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(label, f"{label} must be an integer, not {json_type(value)} {value!r}")
            return None
        return value

    def url(self, key: str, *, allow_empty: bool = False) -> str | None:
        value = self.string(key)
        if value is None or (allow_empty and value == ""):
            return value
        if not is_http_url(value):
            self.fail(key, f"{key} must be an absolute http(s) URL, not {value!r}")
            return None
        return value

    def timestamp(self, key: str) -> str | None:
        value = self.string(key)
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError:
            self.fail(
                key,
                f"{key} must be an ISO 8601 date-time with offset (YYYY-MM-DDTHH:MM:SSZ), "
                f"not {value!r}",
            )
            return None

    def array(self, key: str, *, data: Mapping[str, Any] | None = None) -> list[Any] | None:
        source = self.data if data is None else data
        if key not in source:
            return None
        value = source[key]
        if not isinstance(value, list):
            self.fail(key, f"{key} must be an array, not {json_type(value)}")
            return None
        return value

    def string_list(self, key: str) -> list[str] | None:
        items = self.array(key)
        if items is None:
            return None
        if not all(isinstance(item, str) for item in items):
            self.fail(key, f"{key} must be an array of strings")
            return None
        return cast(list[str], items)

    def obj(self, key: str) -> JSON | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self.fail(key, f"{key} must be an object, not {json_type(value)}")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise HttpError(
                422,
                "Validation Failed",
                errors=self.errors,
                detail="; ".join(str(error["message"]) for error in self.errors),
            )


# --------------------------------------------------------------------------- the HTTP server


class Backend(Protocol):
    """What the server needs of the fake: a router, a place for violations, the latency, and
    whether it answers at all."""

    @property
    def latency_seconds(self) -> float: ...

    @property
    def unreachable(self) -> bool: ...

    def _dispatch(self, request: Request) -> Response: ...

    def _record(self, message: str) -> None: ...


def answer(backend: Backend, method: str, target: str, headers: Message, body: bytes) -> Response:
    """One request through the fake's routes, as the HTTP server and the in-process transport
    (``in_process.py``) both hand it over: a route that crashes is a 500 and a violation."""
    split = urlsplit(target)
    query = {key: values[-1] for key, values in parse_qs(split.query, True).items()}
    request = Request(
        method=method,
        raw_path=split.path,
        path=unquote(split.path),
        query=query,
        headers=headers,
        body=body,
    )
    try:
        return backend._dispatch(request)
    except Exception:
        backend._record(f"{method} {split.path}: 500 {traceback.format_exc()}")
        return json_response(500, {"message": "Server Error"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        self.backend._record(
            f"connection {client_address}: handler crashed: {traceback.format_exc()}"
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every keep-alive answer waits ~40 ms for a delayed ACK
    server_version = "FakeGitHub/1.0"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        backend = cast(Server, self.server).backend
        split = urlsplit(self.path)
        if backend.unreachable:  # the connection drops with no answer, as in an outage
            self.close_connection = True
            return
        try:
            body = self._read_body()
        except (ValueError, OSError) as exc:
            backend._record(f"{self.command} {split.path}: 400 unreadable request body: {exc}")
            self.close_connection = True
            self._delay(backend, split.path)
            self._send(json_response(400, {"message": "Problems parsing request body"}))
            return
        response = answer(backend, self.command, self.path, self.headers, body)
        self._delay(backend, split.path)
        self._send(response)

    @staticmethod
    def _delay(backend: Backend, path: str) -> None:
        """Hold an API answer back for the fake's latency (in this request's own thread)."""
        seconds = backend.latency_seconds
        if seconds > 0 and not path.startswith(CODELOAD_PREFIX):
            time.sleep(seconds)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(size)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
