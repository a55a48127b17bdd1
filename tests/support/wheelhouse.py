"""Wheels for LangGraph builds, downloaded once and served to BuildKit from the docker bridge.

Builds have no network but reach the docker0 address (172.17.0.1), so the tests play the
operator's package mirror: `pip download` on the host fills a wheelhouse cached under
~/.cache/slipway-tests (keyed by what it holds), and a PEP 503 index over it listens on the
bridge for as long as a test session needs it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import html
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from manifests.langgraph_image import SERVER_RELEASES
from scripts.lock_langgraph_server import SDIST_ONLY, pip_for_builds, wheels_of_sdists
from tests.support.images import CACHE_DIR

BRIDGE_ADDRESS = "172.17.0.1"
"""docker0: where BuildKit's RUN steps reach the host."""
SERVER_SETS = tuple(
    (release.requirements(runtime), release.constraints(runtime))
    for release in SERVER_RELEASES
    for runtime in release.runtimes
)
"""Every server a build may install and the constraints it is installed with (exact versions,
langgraph_image.SERVER_RELEASES and its lock files), each resolved on its own: two
langgraph-api versions cannot be in one pip resolution."""
EXTRA_REQUIREMENTS = ("async-timeout",)
"""redis wants it on Python < 3.11.3 (the test base has 3.11.2), a marker pip on the host
(3.11.7) judges by the host, so it is asked for by name."""
DOWNLOAD_TIMEOUT_SECONDS = 900


def ensure_wheelhouse() -> Path:
    """The wheelhouse, filled once per machine.

    Two test workers (or a test run and a bench) may ask at once on a machine whose cache is
    empty, as CI's is: the first fills it under a lock while the others wait for it, then find
    it complete. Without the lock they wrote and removed each other's constraints file."""
    wanted = [" ".join(server) + constraints for server, constraints in SERVER_SETS]
    key = hashlib.sha256(" ".join([*wanted, *EXTRA_REQUIREMENTS, *SDIST_ONLY]).encode())
    wheelhouse = CACHE_DIR / f"langgraph-wheels-{key.hexdigest()[:12]}"
    done = wheelhouse / ".complete"
    if done.exists():
        return wheelhouse
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / f"{wheelhouse.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _fill(wheelhouse)
            done.touch()
    return wheelhouse


def _fill(wheelhouse: Path) -> None:
    wheelhouse.mkdir(parents=True, exist_ok=True)
    _run(wheels_of_sdists(wheelhouse))
    for server, constraints in SERVER_SETS:
        pins = wheelhouse / "constraints.txt"
        pins.write_text(constraints, encoding="utf-8")
        _run(
            pip_for_builds(
                "download",
                "--find-links",
                str(wheelhouse),
                "-d",
                str(wheelhouse),
                "-c",
                str(pins),
                *server,
                *EXTRA_REQUIREMENTS,
            )
        )
        pins.unlink()


def _run(argv: list[str]) -> None:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=DOWNLOAD_TIMEOUT_SECONDS
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:5])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


def _project(wheel: str) -> str:
    """PEP 503 normalised project name of a wheel file."""
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


class _IndexHandler(SimpleHTTPRequestHandler):
    """/simple/<project>/ lists that project's wheels; /files/<wheel> serves one."""

    def __init__(
        self,
        *args: Any,
        wheelhouse: Path,
        authorization: str | None = None,
        absolute_links: bool = False,
        **kwargs: Any,
    ) -> None:
        self.wheelhouse = wheelhouse
        self.authorization = authorization
        self.absolute_links = absolute_links
        super().__init__(*args, directory=str(wheelhouse), **kwargs)

    def do_GET(self) -> None:
        if self.authorization is not None and (
            self.headers.get("Authorization") != self.authorization
        ):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="wheels"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        match = re.fullmatch(r"/simple/([^/]+)/?", self.path)
        if match is None:
            self.path = self.path.removeprefix("/files")
            super().do_GET()
            return
        name = match.group(1).lower()
        host = self.headers.get("Host", "")
        origin = f"http://{host}" if self.absolute_links else ""
        links = [
            f'<a href="{origin}/files/{html.escape(w.name)}">{html.escape(w.name)}</a><br>'
            for w in sorted(self.wheelhouse.glob("*.whl"))
            if _project(w.name) == name
        ]
        body = f"<!DOCTYPE html><html><body>{''.join(links)}</body></html>".encode()
        self.send_response(200 if links else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class WheelIndex:
    url: str
    """PEP 503 index URL as builds reach it (on the docker bridge)."""
    trusted_host: str = BRIDGE_ADDRESS

    def settings(self) -> dict[str, str]:
        """The platform settings that send LangGraph builds here."""
        return {"build_pip_index_url": self.url, "build_pip_trusted_host": self.trusted_host}


@contextmanager
def serve_wheelhouse(
    wheelhouse: Path, *, user: str | None = None, password: str | None = None
) -> Iterator[WheelIndex]:
    """With a user and password, the index asks for them (HTTP basic auth, as a company
    mirror does), its URL carries them, and its pages link to files by absolute URLs."""
    authorization = None
    if user is not None and password is not None:
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    handler = partial(
        _IndexHandler,
        wheelhouse=wheelhouse,
        authorization=authorization,
        absolute_links=authorization is not None,
    )
    server = ThreadingHTTPServer((BRIDGE_ADDRESS, 0), handler)
    userinfo = f"{user}:{password}@" if authorization is not None else ""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield WheelIndex(url=f"http://{userinfo}{BRIDGE_ADDRESS}:{port}/simple/")
    finally:
        server.shutdown()
        server.server_close()
