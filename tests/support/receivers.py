"""Local stand-ins for notification channels, checking what they receive: a webhook (what
apprise's `json://` posts) and an SMTP server (aiosmtpd, what `mailto://` sends). Both listen
on 127.0.0.1 only, on ports of their own."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    title: str
    body: str


class WebhookReceiver:
    """Records every JSON body POSTed to it; answers `status` (200 unless a test breaks it)."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.raw: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.raw.append(payload)
                    receiver.messages.append(
                        Received(str(payload.get("title")), str(payload.get("message")))
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hooks/slipway"

    def about(self, text: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if text in m.title or text in m.body]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class _Mailbox:
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        with self.lock:
            self.messages.append(Received(str(message["Subject"]), str(body)))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpReceiver:
    """An SMTP server that keeps every message (subject and plain-text body)."""

    def __init__(self) -> None:
        self._mailbox = _Mailbox()
        self.port = free_port()
        self._controller = Controller(self._mailbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=slipway@example.com&to=ops@example.com"
            "&mode=insecure"
        )

    def about(self, text: str) -> list[Received]:
        with self._mailbox.lock:
            return [m for m in self._mailbox.messages if text in m.title or text in m.body]

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
