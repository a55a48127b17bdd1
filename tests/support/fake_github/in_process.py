"""The fake GitHub without a socket: an httpx transport that hands each request to the fake's
routes in the caller's thread.

A client given this transport (Slipway's own GitHub client, in the unit tier) goes through the
same routes, checks and stores as over HTTP — authentication, required fields, allowed values —
and a test reads what it did from the same fake; only the socket and the server thread are
skipped. Exceptions a test hook raises (``on_check_run_update``) reach the caller as they are.
"""

from __future__ import annotations

from email.message import Message

import httpx

from .http import Backend, answer


class InProcessTransport(httpx.BaseTransport):
    def __init__(self, fake: Backend) -> None:
        self._fake = fake

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._fake.unreachable:
            raise httpx.ConnectError("the fake GitHub is unreachable", request=request)
        headers = Message()
        for name, value in request.headers.multi_items():
            headers[name] = value
        target = request.url.raw_path.decode("ascii")
        response = answer(self._fake, request.method, target, headers, request.read())
        return httpx.Response(
            response.status, headers=response.headers, content=response.body, request=request
        )
