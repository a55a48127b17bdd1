"""Followed build logs are bounded: a signed link (posted in pull requests, so anyone may hold
it) follows a few logs at once at most, each follow ends with its revision, and while follows
are held the API answers everyone else at once. A real API server (uvicorn) on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.access.links import RevisionLinks
from app.api import create_app
from app.bootstrap import link_signer, open_database, pipeline_config, secret_box
from app.deployments.revisions import transition
from app.kernel.models import Deployment, Installation, Repository, Revision, RevisionState
from app.kernel.settings import Settings
from app.server.embedded import EmbeddedRedis
from tests.support.api_server import serve_api
from tests.support.keys import new_private_key_pem

pytestmark = pytest.mark.timeout(120)
PER_CALLER = 2


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    queue = EmbeddedRedis(tmp_path / "redis")
    queue.start()
    yield Settings(
        _env_file=None,
        github_app_id=1,
        github_private_key=new_private_key_pem(),
        github_webhook_secret="s",
        data_dir=tmp_path / "data",
        redis_url=queue.url,
        log_follows_per_caller=PER_CALLER,
        log_follow_max_seconds=60,
    )
    queue.stop()


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    with serve_api(create_app(settings)) as base:
        yield base


def _building_revisions(settings: Settings, count: int) -> list[Revision]:
    sessions = open_database(settings)
    with sessions() as session:
        session.add(Installation(id=1, account_login="octo"))
        session.commit()
        session.add(Repository(id=2, installation_id=1, full_name="octo/web"))
        session.commit()
        deployment = Deployment(repository_id=2, slug="web", branch="main")
        session.add(deployment)
        session.commit()
        made = [
            Revision(
                deployment_id=deployment.id,
                number=n,
                commit_sha=f"{n:040d}",
                env_hash="e",
                state=RevisionState.building,
            )
            for n in range(1, count + 1)
        ]
        session.add_all(made)
        session.commit()
    for revision in made:
        path = pipeline_config(settings).log_path(revision)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"step 1/2\n")
    return made


def _signed_log_url(settings: Settings, revision_id: str, base: str) -> str:
    links = RevisionLinks(base, link_signer(settings, secret_box(settings)))
    url = urlsplit(links.log(revision_id))
    return f"{url.path}?{url.query}&follow=true"


def test_a_link_follows_a_few_logs_at_most_each_ends_with_its_revision_and_the_api_answers(
    settings: Settings, api: str
) -> None:
    first, second = _building_revisions(settings, 2)
    link = _signed_log_url(settings, first.id, api)
    other = _signed_log_url(settings, second.id, api)
    received: list[bytes] = []
    with httpx.Client(base_url=api, timeout=30) as client:
        held = [client.stream("GET", link) for _ in range(PER_CALLER)]
        responses = [h.__enter__() for h in held]
        try:
            assert [r.status_code for r in responses] == [200] * PER_CALLER
            chunks = responses[0].iter_bytes()
            received.append(next(chunks))  # the follow is open and streaming

            # Beyond its share the same link is refused; another revision's link is not.
            refused = client.get(link)
            assert refused.status_code == 429, refused.text
            assert refused.headers["Retry-After"]
            with client.stream("GET", other) as elsewhere:
                assert elsewhere.status_code == 200

            # The API answers everyone else at once while the follows are held.
            for _ in range(20):
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                assert time.monotonic() - started < 0.5
            snapshot = client.get(link.replace("&follow=true", ""))
            assert snapshot.status_code == 200 and snapshot.content == b"step 1/2\n"

            # The revision ends: its follows end, with what was written last.
            log = pipeline_config(settings).log_path(first)
            with log.open("ab") as handle:
                handle.write(b"step 2/2\n")
            sessions = open_database(settings)
            with sessions() as session:
                assert transition(
                    session, first.id, frozenset({RevisionState.building}), RevisionState.failed
                )
            started = time.monotonic()
            received.extend(chunks)  # returns once the server ends the stream
            assert time.monotonic() - started < 10
            assert b"".join(received) == b"step 1/2\nstep 2/2\n"
        finally:
            for h in held:
                h.__exit__(None, None, None)

        # The ended follows gave their places back.
        with client.stream("GET", link) as again:
            assert again.status_code == 200
            assert again.read() == b"step 1/2\nstep 2/2\n"


def test_server_log_follows_share_the_callers_bound_with_build_logs_and_give_it_back(
    settings: Settings, api: str
) -> None:
    (revision,) = _building_revisions(settings, 1)
    token = (settings.data_dir / "admin-token").read_text().strip()
    server_logs = f"/api/deployments/{revision.deployment_id}/logs?follow=true"
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api, timeout=30, headers=headers) as client:
        held = [client.stream("GET", server_logs) for _ in range(PER_CALLER)]
        responses = [h.__enter__() for h in held]
        try:
            assert [r.status_code for r in responses] == [200] * PER_CALLER
            assert responses[0].headers["content-type"].startswith("text/event-stream")

            refused = client.get(server_logs)
            assert refused.status_code == 429 and refused.headers["Retry-After"]
            build_log = client.get(f"/api/revisions/{revision.id}/logs?follow=true")
            assert build_log.status_code == 429  # one share for every kind of follow
            read = client.get(server_logs.replace("?follow=true", ""))
            assert read.status_code == 200 and read.json() == []  # reading is never refused
        finally:
            held[0].__exit__(None, None, None)

        # The closed follow's place is given back (the API hears the client go).
        def accepted() -> bool:
            with client.stream("GET", server_logs) as again:
                return again.status_code == 200

        deadline = time.monotonic() + 10
        while not accepted():
            assert time.monotonic() < deadline, "a closed follow kept its place"
            time.sleep(0.1)
        for h in held[1:]:
            h.__exit__(None, None, None)
