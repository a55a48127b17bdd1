"""The index pass-through adds the operator's credentials on the way to the one index it was
given, and is nothing more: not a proxy to anywhere else, not a way to the credentials."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builders.errors import BuildError
from builders.index_proxy import IndexPassThrough, credentials_of
from manifests.langgraph_image import PipIndex
from tests.support.wheelhouse import BRIDGE_ADDRESS, WheelIndex, serve_wheelhouse

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
PASSWORD = "s3cret-index-token"
CONTENT = b"not really a wheel, but bytes to stream " * 50_000


@pytest.fixture
def index(tmp_path: Path) -> Iterator[WheelIndex]:
    (tmp_path / WHEEL).write_bytes(CONTENT)
    with serve_wheelhouse(tmp_path, user="operator", password=PASSWORD) as served:
        yield served


@pytest.fixture
def through(index: WheelIndex) -> Iterator[tuple[IndexPassThrough, PipIndex]]:
    pip = PipIndex(index_url=index.url, trusted_host=index.trusted_host)
    pass_through = IndexPassThrough(pip, host="127.0.0.1", port=0)
    try:
        yield pass_through, pass_through(pip)
    finally:
        pass_through.stop()


def test_builds_get_packages_through_it_without_the_credentials(
    index: WheelIndex, through: tuple[IndexPassThrough, PipIndex]
) -> None:
    pass_through, for_builds = through
    assert (
        httpx.get(index.url.replace(f"operator:{PASSWORD}@", "") + "demo-pkg/").status_code == 401
    )
    assert for_builds.index_url is not None
    assert PASSWORD not in repr(for_builds) and PASSWORD not in (for_builds.config_file() or "")
    assert pass_through.listening_on is not None
    assert pass_through.listening_on[0] == "127.0.0.1"

    page = httpx.get(for_builds.index_url + "demo-pkg/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    # The index links to its files by absolute URLs: they come back through the pass-through.
    host, port = pass_through.listening_on
    assert f'href="/i0/files/{WHEEL}"' in page.text, page.text
    wheel = httpx.get(f"http://{host}:{port}/i0/files/{WHEEL}")
    assert wheel.status_code == 200 and wheel.content == CONTENT


def test_it_is_no_proxy_to_anywhere_else(through: tuple[IndexPassThrough, PipIndex]) -> None:
    pass_through, _ = through
    assert pass_through.listening_on is not None
    host, port = pass_through.listening_on
    elsewhere = "http://127.0.0.1:6379/"
    requests = [
        f"GET {elsewhere} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "CONNECT 127.0.0.1:6379 HTTP/1.1\r\nHost: 127.0.0.1:6379\r\n\r\n",
        "GET /i1/simple/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /i0/simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ]
    for request in requests:
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(request.encode())
            status = connection.recv(64).split(b" ", 2)[1]
        assert status in (b"404", b"501"), (request, status)


def test_an_index_without_credentials_is_given_as_it_is(tmp_path: Path) -> None:
    pip = PipIndex(index_url=f"http://{BRIDGE_ADDRESS}:9/simple/")
    pass_through = IndexPassThrough(pip, host="127.0.0.1", port=0)
    assert pass_through(pip) == pip
    assert pass_through.listening_on is None
    assert credentials_of(pip) == []


def test_the_log_redactor_knows_every_form_of_the_credentials() -> None:
    pip = PipIndex(index_url="https://me:p%40ss@mirror.example/simple/")
    assert set(credentials_of(pip)) >= {
        "p@ss",
        "me:p@ss",
        base64.b64encode(b"me:p@ss").decode(),
        "https://me:p%40ss@mirror.example/simple/",
    }


def test_a_taken_port_is_a_clear_build_error(index: WheelIndex) -> None:
    pip = PipIndex(index_url=index.url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BuildError, match="SLIPWAY_BUILD_INDEX_PROXY_HOST/PORT"):
            IndexPassThrough(pip, host="127.0.0.1", port=port)(pip)
