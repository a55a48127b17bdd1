"""An authenticating pass-through to the operator's package index, for builds.

A build runs the tenant's code (a Dockerfile, `dockerfile_lines`, a package's setup.py), so
anything a build is given, the tenant can print. The operator's index URL may carry
credentials (`https://user:token@mirror/simple/`); builds get instead a URL without them that
points here, and this process adds the credentials on its way upstream.

It is not an open proxy: it forwards GET and HEAD on paths under a prefix it handed out, to
the one origin (scheme, host, port) that prefix stands for, and nothing else. It listens on
one address only (the docker bridge gateway, where builds reach the host). Simple-index pages
are read whole (bounded) so that links to the upstream's own origin are rewritten to come
back through here; everything else (wheels, sdists) is streamed.
"""

from __future__ import annotations

import base64
import html
import http.client
import logging
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from builders.errors import BuildError
from manifests.langgraph_image import PipIndex

log = logging.getLogger(__name__)

BRIDGE_GATEWAY = "172.17.0.1"
"""docker0's address on the host: BuildKit's RUN steps reach the host there."""
DEFAULT_PORT = 3141
"""Where the pass-through listens (on the gateway address only); the host firewall lets
builds reach this port (see `listening_on`)."""
UPSTREAM_TIMEOUT_SECONDS = 60.0
"""A stalled upstream read fails the download instead of holding a build forever."""
MAX_PAGE_BYTES = 32 * 1024 * 1024
"""A simple-index page is rewritten in memory; PyPI's largest project pages are a few MB."""
MAX_CONNECTIONS = 32
"""Downloads at once: pip opens a handful per build, builds run two at a time by default."""
CHUNK_BYTES = 64 * 1024
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html, text/html;q=0.9"
"""Asked of the upstream whatever pip asked: the HTML form is the one whose links we rewrite."""
PASSED_RESPONSE_HEADERS = ("content-type", "etag", "last-modified", "cache-control", "location")


@dataclass(frozen=True)
class Upstream:
    """One origin with its credentials, reached under `/<prefix>/` of the pass-through."""

    prefix: str
    scheme: str
    host: str
    port: int
    authorization: str = ""
    verify_tls: bool = True

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}"


def has_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return parts.username is not None or parts.password is not None


def split_credentials(url: str) -> tuple[str, str, str]:
    """(URL without userinfo, user, password), both unquoted."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")


def credentials_of(pip: PipIndex) -> list[str]:
    """What a log must never show of these settings (for the build log's redactor)."""
    found: list[str] = []
    for url in _urls(pip):
        if has_credentials(url):
            _, user, password = split_credentials(url)
            found += [url, password, f"{user}:{password}", _basic(user, password)]
    return [value for value in found if value]


def _urls(pip: PipIndex) -> list[str]:
    return [u for u in [pip.index_url, *(pip.extra_index_url or "").split()] if u]


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class IndexPassThrough:
    """The pass-through for one PipIndex: started on first use, in a thread of the process
    that builds (the API never builds, so it never listens)."""

    def __init__(self, pip: PipIndex, *, host: str = BRIDGE_GATEWAY, port: int = DEFAULT_PORT):
        self._pip = pip
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._upstreams: dict[str, Upstream] = {}
        self._rewritten: PipIndex | None = None

    @property
    def needed(self) -> bool:
        return any(has_credentials(url) for url in _urls(self._pip))

    @property
    def listening_on(self) -> tuple[str, int] | None:
        """(address, port) once started: what the host firewall must let builds reach."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def __call__(self, pip: PipIndex) -> PipIndex:
        """The settings builds get: each URL with credentials replaced by one through here."""
        if pip != self._pip:
            raise ValueError("this pass-through serves other index settings")
        if not self.needed:
            return pip
        with self._lock:
            if self._rewritten is None:
                self._rewritten = self._start()
            return self._rewritten

    def _start(self) -> PipIndex:
        urls: dict[str, str] = {}
        trusted = set((self._pip.trusted_host or "").split())
        for number, url in enumerate(_urls(self._pip)):
            if not has_credentials(url):
                continue
            bare, user, password = split_credentials(url)
            parts = urlsplit(bare)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("a package index URL must be http(s)://host/...")
            upstream = Upstream(
                prefix=f"i{number}",
                scheme=scheme,
                host=parts.hostname,
                port=parts.port or (443 if scheme == "https" else 80),
                authorization=f"Basic {_basic(user, password)}",
                verify_tls=parts.hostname not in trusted,
            )
            self._upstreams[upstream.prefix] = upstream
            urls[url] = upstream.prefix + urlunsplit(("", "", parts.path or "/", parts.query, ""))
        try:
            server = _Server((self._host, self._port), _Handler)
        except OSError as exc:
            raise BuildError(
                f"the package index pass-through cannot listen on {self._host}:{self._port} "
                f"({exc.strerror}): set SLIPWAY_BUILD_INDEX_PROXY_HOST/PORT to a free address "
                "that builds reach (the docker bridge's gateway)"
            ) from None
        server.upstreams = dict(self._upstreams)
        server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        threading.Thread(
            target=server.serve_forever, name="index-pass-through", daemon=True
        ).start()
        self._server = server
        host, port = str(server.server_address[0]), int(server.server_address[1])
        base = f"http://{host}:{port}/"
        log.info("index pass-through listening", extra={"address": f"{host}:{port}"})

        def through(url: str) -> str:
            return base + urls[url] if url in urls else url

        extra = [through(u) for u in (self._pip.extra_index_url or "").split()]
        return replace(
            self._pip,
            index_url=through(self._pip.index_url) if self._pip.index_url else None,
            extra_index_url=" ".join(extra) or None,
            trusted_host=" ".join(sorted({*trusted, str(host)})),
        )

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None
                self._rewritten = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstreams: dict[str, Upstream]
    slots: threading.BoundedSemaphore


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = UPSTREAM_TIMEOUT_SECONDS

    def do_HEAD(self) -> None:
        self._forward(body=False)

    def do_GET(self) -> None:
        self._forward(body=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self, *, body: bool) -> None:
        # Origin-form only ("/i0/simple/x/"): an absolute-form request ("GET http://elsewhere/")
        # would make this an open proxy.
        match = re.fullmatch(r"/([a-z0-9]+)(/[^#]*)?", self.path)
        upstream = self.server.upstreams.get(match.group(1)) if match else None
        if match is None or upstream is None:
            self._refuse(404, "not a path of the package index")
            return
        if not self.server.slots.acquire(timeout=UPSTREAM_TIMEOUT_SECONDS):
            self._refuse(503, "too many downloads at once")
            return
        try:
            self._relay(upstream, match.group(2) or "/", body=body)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("index pass-through: upstream failed", extra={"error": str(exc)})
            self.close_connection = True
        finally:
            self.server.slots.release()

    def _relay(self, upstream: Upstream, path: str, *, body: bool) -> None:
        connection = _connect(upstream)
        try:
            connection.request(
                "GET" if body else "HEAD",
                path,
                headers={
                    "Authorization": upstream.authorization,
                    "Accept": SIMPLE_HTML if _wants_page(self.headers.get("Accept")) else "*/*",
                    "User-Agent": self.headers.get("User-Agent", "slipway-index-pass-through"),
                    "Accept-Encoding": "identity",
                },
            )
            response = connection.getresponse()
            kind = response.getheader("Content-Type", "")
            if body and kind.split(";")[0].strip() in ("text/html", SIMPLE_HTML.split(",")[0]):
                page = response.read(MAX_PAGE_BYTES + 1)
                if len(page) > MAX_PAGE_BYTES:
                    self._refuse(502, "the index page is too large")
                    return
                payload = rewrite_links(page, upstream)
                self._head(response, upstream, len(payload))
                self.wfile.write(payload)
                return
            length = response.getheader("Content-Length")
            self._head(response, upstream, int(length) if length and length.isdigit() else None)
            if body:
                for chunk in _chunks(response):
                    self.wfile.write(chunk)
                if length is None:
                    self.close_connection = True
        finally:
            connection.close()

    def _head(
        self, response: http.client.HTTPResponse, upstream: Upstream, size: int | None
    ) -> None:
        self.send_response(response.status)
        for name in PASSED_RESPONSE_HEADERS:
            value = response.getheader(name)
            if value is None:
                continue
            if name == "location":
                value = _through(value, upstream)
            self.send_header(name, value)
        if size is not None:
            self.send_header("Content-Length", str(size))
        else:
            self.send_header("Connection", "close")
        self.end_headers()

    def _refuse(self, status: int, reason: str) -> None:
        payload = f"{reason}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _wants_page(accept: str | None) -> bool:
    return accept is not None and ("text/html" in accept or "pypi.simple" in accept)


def _connect(upstream: Upstream) -> http.client.HTTPConnection:
    if upstream.scheme == "https":
        context = ssl.create_default_context()
        if not upstream.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(
            upstream.host, upstream.port, timeout=UPSTREAM_TIMEOUT_SECONDS, context=context
        )
    return http.client.HTTPConnection(
        upstream.host, upstream.port, timeout=UPSTREAM_TIMEOUT_SECONDS
    )


def _chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while chunk := response.read(CHUNK_BYTES):
        yield chunk


def _through(url: str, upstream: Upstream) -> str:
    """A link as the build must follow it: the upstream's own origin (absolute, or a path from
    its root) comes back through the pass-through's prefix; other hosts and relative links
    stay as they are (pip resolves relative ones against the page, already under the prefix)."""
    if url.startswith("//"):
        url = f"{upstream.scheme}:{url}"
    parts = urlsplit(url)
    if parts.scheme:
        same = (
            parts.scheme.lower() == upstream.scheme
            and (parts.hostname or "") == upstream.host
            and (parts.port or (443 if parts.scheme.lower() == "https" else 80)) == upstream.port
        )
        if not same:
            return url
        return urlunsplit(
            ("", "", f"/{upstream.prefix}{parts.path or '/'}", parts.query, parts.fragment)
        )
    if url.startswith("/"):
        return f"/{upstream.prefix}{url}"
    return url


_HREF = re.compile(rb"""(\b(?:href|src)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def rewrite_links(page: bytes, upstream: Upstream) -> bytes:
    """A simple-index page with every link to the upstream's origin sent through here."""

    def one(match: re.Match[bytes]) -> bytes:
        raw = html.unescape(match.group(3).decode("utf-8", errors="replace"))
        link = html.escape(_through(raw, upstream), quote=True).encode()
        return match.group(1) + match.group(2) + link + match.group(2)

    return _HREF.sub(one, page)
