"""The reconciler's read of Caddy's in-flight requests over the admin socket (every tick, so
without httpx): what Caddy answers, and what the reconciler is told when it cannot answer."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.caddy import CaddyRouter
from app.kernel.errors import RouterError


class AdminSocket:
    """A unix socket answering every connection with `answer`, keeping the requests seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answer = b""
        self.requests: list[bytes] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                connection.sendall(self.answer)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminSocket]:
    server = AdminSocket(tmp_path / "admin.sock")
    yield server
    server.close()


def router_at(path: Path) -> CaddyRouter:
    return CaddyRouter(f"unix://{path}", listen="127.0.0.1:8000", storage_dir=path.parent)


def answer(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", *headers, "Content-Length: " + str(len(body))]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_the_requests_in_flight_are_read_per_upstream(admin: AdminSocket) -> None:
    upstreams = [
        {"address": "10.0.0.2:8000", "num_requests": 3, "fails": 0},
        {"address": "10.0.0.3:8000", "num_requests": 0, "fails": 0},
        {"address": "10.0.0.4:8000", "fails": 1},
    ]
    admin.answer = answer("200 OK", json.dumps(upstreams).encode())

    assert router_at(admin.path).in_flight() == {
        "10.0.0.2:8000": 3,
        "10.0.0.3:8000": 0,
        "10.0.0.4:8000": 0,
    }
    [request] = admin.requests
    assert request.startswith(b"GET /reverse_proxy/upstreams HTTP/1.0\r\n")


def test_no_upstream_yet_is_no_request_in_flight(admin: AdminSocket) -> None:
    admin.answer = answer("200 OK", b"null")
    assert router_at(admin.path).in_flight() == {}


def test_an_error_status_is_a_router_error_with_the_status(admin: AdminSocket) -> None:
    admin.answer = answer("500 Internal Server Error", b'{"error":"boom"}')
    with pytest.raises(RouterError, match=r"did not list its upstreams \(HTTP 500\)"):
        router_at(admin.path).in_flight()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not an HTTP answer"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"),
        (answer("200 OK", b"5\r\n[]\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), "chunked"),
    ],
)
def test_an_answer_that_is_not_plain_http_is_a_router_error(
    admin: AdminSocket, raw: bytes, reason: str
) -> None:
    admin.answer = raw
    with pytest.raises(RouterError, match=f"did not answer: .*{reason}"):
        router_at(admin.path).in_flight()


def test_a_body_in_another_form_is_a_router_error(admin: AdminSocket) -> None:
    admin.answer = answer("200 OK", b'{"upstreams": "none"}')
    with pytest.raises(RouterError, match="in a form Slipway does not know"):
        router_at(admin.path).in_flight()


def test_no_router_at_the_socket_is_a_router_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone.sock"
    with pytest.raises(RouterError, match=f"Caddy.*{missing}.*did not answer"):
        router_at(missing).in_flight()
