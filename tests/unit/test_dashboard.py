"""The web dashboard over the platform's services and the fake GitHub: signing in with GitHub's
OAuth flow (or an API token), what a person sees and may change, CSRF, and signed links."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.testing import TestClient
from pydantic import ValidationError
from sqlmodel import select

from app.access.browser_sessions import COOKIE, BrowserSession, BrowserSessions
from app.access.tokens import Caller, create_token
from app.api.dashboard.render import TEMPLATES, Pages
from app.api.deployments import deployment_summaries, deployment_view
from app.bootstrap import browser_sessions
from app.deployments.environment import EnvScope
from app.deployments.operations import NewDeployment
from app.github.oauth import GitHubOAuth, OAuthClient
from app.kernel.crypto import SecretBox
from app.kernel.db import SessionFactory
from app.kernel.models import (
    Deployment,
    MetricPoint,
    ReplicaMetricPoint,
    Revision,
    RevisionState,
)
from app.kernel.orders import RUN_REVISION, WorkOrder
from app.kernel.ports import OutputLine
from app.kernel.settings import Settings
from app.replicas.autoscaler import Decision, Reason, ScalerState
from app.setup.credentials import oauth_client
from app.setup.flow import OAUTH_CALLBACK_PATH
from builders.errors import EngineError
from tests.unit.dashboard_site import CLIENT, PUBLIC, HeldOutputs, RecordingQueue, dashboard
from tests.unit.world import DOCKERFILE, SECRETS, Platform


@pytest.fixture
def live(platform: Platform) -> str:
    revision = platform.push()
    assert platform.pipeline.run(revision) is RevisionState.live
    return revision


@pytest.fixture
def site(
    platform: Platform, tmp_path: Path, live: str
) -> Iterator[tuple[TestClient[Any], RecordingQueue]]:
    app, queue = dashboard(platform, tmp_path)
    with TestClient(app=app, base_url=PUBLIC) as client:
        yield client, queue


def sign_in_with_github(client: TestClient[Any], platform: Platform, login: str) -> httpx.Response:
    """Through the fake GitHub's authorize page, as a browser goes."""
    platform.github.sign_in_browser(login)
    start = client.get("/dashboard/sign-in/github", follow_redirects=False)
    assert start.status_code == 303
    authorize = httpx.get(start.headers["location"], headers={"User-Agent": "browser"})
    assert authorize.status_code == 302, authorize.text
    back = urlsplit(authorize.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == PUBLIC + OAUTH_CALLBACK_PATH
    return client.get(f"{back.path}?{back.query}", follow_redirects=True)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def test_signing_in_with_github_shows_the_deployments_the_person_can_read(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    assert (
        client.get("/dashboard/", follow_redirects=False)
        .headers["location"]
        .endswith("/dashboard/sign-in")
    )

    landed = sign_in_with_github(client, platform, "octo")

    assert landed.status_code == 200
    assert "Signed in as <strong>octo</strong>" in landed.text
    assert ">web</a>" in landed.text and "octo/web" in landed.text
    assert "http://web.localhost:8000" in landed.text
    [set_cookie] = [
        v for v in landed.history[-1].headers.get_list("set-cookie") if v.startswith(COOKIE)
    ]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie.replace("Lax", "lax")
    platform.github.assert_no_errors()


def test_a_person_without_access_sees_no_deployment(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    platform.github.set_permission("octo/web", "stranger", "none")

    landed = sign_in_with_github(client, platform, "stranger")
    deployment = platform.deployment()

    assert "No deployment you can see" in landed.text
    assert client.get(f"/dashboard/deployments/{deployment.id}").status_code == 403


def test_a_reader_sees_no_write_buttons_and_a_forged_post_is_refused(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, queue = site
    platform.github.set_permission("octo/web", "reader", "read")
    sign_in_with_github(client, platform, "reader")
    deployment = platform.deployment()

    page = client.get(f"/dashboard/deployments/{deployment.id}")
    assert page.status_code == 200 and "Revisions" in page.text
    assert "Roll back" not in page.text and "Save and redeploy" not in page.text
    assert "Delete web" not in page.text and ">Deploy</button>" not in page.text

    token = csrf_of(page.text)  # the sign-out form's: a reader still may not deploy
    refused = client.post(
        f"/dashboard/deployments/{deployment.id}/deploy", data={"csrf_token": token, "ref": "main"}
    )
    assert (
        refused.status_code == 403 and "may read this deployment but not change it" in refused.text
    )
    assert queue.jobs == []


def test_a_forms_fields_are_judged_only_after_the_viewer_may_change_the_deployment(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, queue = site
    platform.github.set_permission("octo/web", "reader", "read")
    sign_in_with_github(client, platform, "reader")
    deployment = platform.deployment()
    token = csrf_of(client.get(f"/dashboard/deployments/{deployment.id}").text)
    bad = {"csrf_token": token, "revision": "latest"}

    as_reader = client.post(f"/dashboard/deployments/{deployment.id}/rollback", data=bad)
    sign_in_with_github(client, platform, "octo")
    token = csrf_of(client.get(f"/dashboard/deployments/{deployment.id}").text)
    as_writer = client.post(
        f"/dashboard/deployments/{deployment.id}/rollback", data={**bad, "csrf_token": token}
    )

    assert as_reader.status_code == 403
    assert as_writer.status_code == 422 and "revision: give the number" in as_writer.text
    assert queue.jobs == []


def test_a_post_without_the_csrf_token_is_refused(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, queue = site
    sign_in_with_github(client, platform, "octo")
    deployment = platform.deployment()

    forged = client.post(f"/dashboard/deployments/{deployment.id}/deploy", data={"ref": "main"})
    wrong = client.post(
        f"/dashboard/deployments/{deployment.id}/deploy", data={"ref": "main", "csrf_token": "x"}
    )

    assert forged.status_code == 403 and wrong.status_code == 403
    assert "CSRF" in forged.text
    assert queue.jobs == []


def test_a_writer_changes_env_and_rolls_back_through_the_forms(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform, live: str
) -> None:
    client, queue = site
    sign_in_with_github(client, platform, "octo")
    deployment = platform.deployment()
    page = client.get(f"/dashboard/deployments/{deployment.id}")
    token = csrf_of(page.text)
    assert "Save and redeploy" in page.text and "Delete web" in page.text

    changed = client.post(
        f"/dashboard/deployments/{deployment.id}/env",
        data={"csrf_token": token, "name": "GREETING", "value": "<b>hi</b>"},
    )

    assert changed.status_code == 200 and "changed by octo" in changed.text
    assert "<code>GREETING</code>" in changed.text and "&lt;b&gt;hi&lt;/b&gt;" in changed.text
    assert platform.operations.env(deployment.id).values == {"GREETING": "<b>hi</b>"}
    with platform.sessions() as session:
        newest = session.exec(
            select(Revision)
            .where(Revision.deployment_id == deployment.id)
            .order_by(
                Revision.number.desc()  # type: ignore[attr-defined]
            )
        ).first()
    assert newest is not None and newest.number == 2 and newest.requested_by == "octo"
    assert platform.pipeline.run(newest.id) is RevisionState.live

    page = client.get(f"/dashboard/deployments/{deployment.id}")
    assert 'aria-label="Roll back to revision 1"' in page.text
    rolled = client.post(
        f"/dashboard/deployments/{deployment.id}/rollback",
        data={"csrf_token": token, "revision": "1"},
    )
    assert rolled.status_code == 200 and "rollback of web to revision #1 by octo" in rolled.text
    assert len(queue.jobs) >= 2


def newest_revision(platform: Platform, deployment_id: str) -> Revision:
    with platform.sessions() as session:
        found = session.exec(
            select(Revision)
            .where(Revision.deployment_id == deployment_id)
            .order_by(Revision.number.desc())  # type: ignore[attr-defined]
        ).first()
    assert found is not None
    return found


def test_a_writer_deploys_a_branch_or_the_deployments_own_through_the_form(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform, live: str
) -> None:
    client, queue = site
    release = platform.commit({"Dockerfile": DOCKERFILE, "VERSION": "2"}, "Release 2")
    platform.set_branch("release", release)
    sign_in_with_github(client, platform, "octo")
    deployment = platform.deployment()
    page = client.get(f"/dashboard/deployments/{deployment.id}").text
    assert '<label for="ref">Branch, tag or commit</label>' in page
    assert '<input id="ref" name="ref" placeholder="main">' in page

    deployed = client.post(
        f"/dashboard/deployments/{deployment.id}/deploy",
        data={"csrf_token": csrf_of(page), "ref": "release"},
    )

    assert deployed.status_code == 200 and deployed.url.path.endswith(deployment.id)
    assert f"deploy release ({release[:7]}) requested by octo" in deployed.text
    second = newest_revision(platform, deployment.id)
    assert (second.number, second.commit_sha, second.requested_by) == (2, release, "octo")
    assert f'<a href="/dashboard/revisions/{second.id}">#2</a>' in deployed.text
    assert [job for job in queue.jobs if job[0] == RUN_REVISION] == [(RUN_REVISION, second.id)]

    head = platform.revision(live).commit_sha
    platform.set_branch("main", head)  # the push's branch, as GitHub has it
    again = client.post(
        f"/dashboard/deployments/{deployment.id}/deploy",
        data={"csrf_token": csrf_of(page), "ref": " "},
    )
    assert f"deploy main ({head[:7]}) requested by octo" in again.text
    assert newest_revision(platform, deployment.id).commit_sha == head

    unknown = client.post(
        f"/dashboard/deployments/{deployment.id}/deploy",
        data={"csrf_token": csrf_of(page), "ref": "nope"},
    )
    assert unknown.status_code == 422 and "no branch, tag or commit" in unknown.text
    assert newest_revision(platform, deployment.id).number == 3
    assert len([job for job in queue.jobs if job[0] == RUN_REVISION]) == 2
    platform.expect_refusals("commits/nope")


def test_deleting_takes_the_deployments_name_typed_and_a_wrong_one_changes_nothing(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, queue = site
    sign_in_with_github(client, platform, "octo")
    deployment = platform.deployment()
    page = client.get(f"/dashboard/deployments/{deployment.id}").text
    assert '<label for="confirm">Type <strong>web</strong> to confirm</label>' in page

    wrong = client.post(
        f"/dashboard/deployments/{deployment.id}/delete",
        data={"csrf_token": csrf_of(page), "confirm": "Web"},
    )
    empty = client.post(
        f"/dashboard/deployments/{deployment.id}/delete", data={"csrf_token": csrf_of(page)}
    )

    for refused in (wrong, empty):
        assert refused.status_code == 422 and "confirm: give the deployment" in refused.text
    assert queue.jobs == [] and platform.deployment_by_id(deployment.id).deleted_at is None
    assert ">web</a>" in client.get("/dashboard/").text
    assert client.get(f"/dashboard/deployments/{deployment.id}").status_code == 200

    deleted = client.post(
        f"/dashboard/deployments/{deployment.id}/delete",
        data={"csrf_token": csrf_of(page), "confirm": "web"},
    )

    assert deleted.status_code == 200 and deleted.url.path == "/dashboard/"
    assert "deployment deleted by octo" in deleted.text
    assert "No deployment you can see" in deleted.text
    assert platform.deployment_by_id(deployment.id).deleted_at is not None
    [(_, order)] = queue.jobs
    assert [t["deployment_id"] for t in order["teardowns"]] == [deployment.id]


def test_the_list_shows_previews_under_their_production_deployment(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    production = platform.deployment()
    platform.set_branch("staging", platform.commit())
    staging = platform.operations.create(
        NewDeployment(repository="octo/web", branch="staging", name="web-staging"),
        Caller(name="octo", read_only=False),
    ).deployment
    platform.pull_request_event("opened", 7, platform.commit())
    preview = platform.preview_deployment(7)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with platform.sessions() as session:  # made in this order: the preview last
        for minutes, made in enumerate((production, staging, preview)):
            row = session.get(Deployment, made.id)
            assert row is not None
            row.created_at = start + timedelta(minutes=minutes)
            session.add(row)
        session.commit()
    sign_in_with_github(client, platform, "octo")

    listing = client.get("/dashboard/").text

    rows = re.findall(
        r'<tr class="(production|preview)">\s*<th scope="row">(↳ )?'
        r'<a href="/dashboard/deployments/([^"]+)">',
        listing,
    )
    assert rows == [
        ("production", "", production.id),
        ("preview", "↳ ", preview.id),
        ("production", "", staging.id),
    ]
    assert f">{preview.slug}</a>" in listing and "#7" in listing


def test_an_api_token_signs_in_and_a_read_only_one_may_not_act(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    with platform.sessions() as session:
        _, token = create_token(session, "viewer", platform.clock(), read_only=True)
    deployment = platform.deployment()
    form = client.get("/dashboard/sign-in")
    assert "Sign in with GitHub" in form.text

    wrong = client.post(
        "/dashboard/sign-in/token", data={"csrf_token": csrf_of(form.text), "token": "slw_no"}
    )
    assert "unknown or was revoked" in wrong.text
    form = client.get("/dashboard/sign-in")
    landed = client.post(
        "/dashboard/sign-in/token", data={"csrf_token": csrf_of(form.text), "token": token}
    )

    assert "Signed in as <strong>token viewer</strong>" in landed.text and ">web</a>" in landed.text
    page = client.get(f"/dashboard/deployments/{deployment.id}")
    assert "Roll back" not in page.text and "Save and redeploy" not in page.text


def test_a_signed_link_opens_its_revision_page_read_only_without_an_account(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform, live: str
) -> None:
    client, _ = site
    signer = platform.links.signer
    url = signer.sign(PUBLIC, f"/dashboard/revisions/{live}")
    path = url.removeprefix(PUBLIC)

    page = client.get(path)
    tampered = client.get(path.replace(live, "rev_other"), follow_redirects=False)
    bare = client.get(f"/dashboard/revisions/{live}", follow_redirects=False)

    assert page.status_code == 200 and "Build log" in page.text and "#1" in page.text
    assert "Sign out" not in page.text and "csrf_token" not in page.text
    assert tampered.status_code == 303 and bare.status_code == 303


def test_a_cookie_from_another_key_or_altered_is_no_session(platform: Platform) -> None:
    mine = BrowserSessions(b"a" * 32, timedelta(hours=1), platform.clock)
    theirs = BrowserSessions(b"b" * 32, timedelta(hours=1), platform.clock)
    sealed = mine.seal(BrowserSession(github_login="octo", github_token="ghu_x"))

    assert mine.open(sealed) == BrowserSession(
        github_login="octo",
        github_token="ghu_x",
        csrf=mine.open(sealed).csrf,  # type: ignore[union-attr]
    )
    assert theirs.open(sealed) is None
    assert mine.open(sealed[:-2] + "AA") is None
    assert "ghu_x" not in sealed


def test_the_fake_github_refuses_a_wrong_client_secret(platform: Platform) -> None:
    fake = platform.github
    fake.register_oauth_client(CLIENT.client_id, CLIENT.client_secret, [PUBLIC + "/cb"])
    fake.sign_in_browser("octo")
    oauth = GitHubOAuth(fake.url, fake.url)
    answer = httpx.get(
        oauth.authorize_url(CLIENT, PUBLIC + "/cb", "s1"), headers={"User-Agent": "browser"}
    )
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]

    from app.kernel.errors import GitHubError

    with pytest.raises(GitHubError, match="client_id or client_secret"):
        oauth.exchange(OAuthClient(CLIENT.client_id, "wrong"), code, PUBLIC + "/cb")
    assert any("incorrect_client_credentials" in e for e in fake.errors)
    fake.clear_errors()


def test_the_check_runs_details_link_opens_the_revision_page_without_an_account(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform, live: str
) -> None:
    client, _ = site
    [run] = platform.github.check_runs("octo/web")
    assert run.details_url is not None
    details = urlsplit(run.details_url)

    page = client.get(f"{details.path}?{details.query}")

    assert details.path == f"/dashboard/revisions/{live}"
    assert page.status_code == 200 and "Build log" in page.text and "live" in page.text


def test_the_server_logs_read_as_text_without_javascript(
    platform: Platform, tmp_path: Path, live: str
) -> None:
    outputs = HeldOutputs()
    app, _ = dashboard(platform, tmp_path, outputs=outputs)
    deployment = platform.deployment()
    outputs.print(deployment.id, live, "listening on :8080")
    with TestClient(app=app, base_url=PUBLIC) as client:
        anonymous = client.get(
            f"/dashboard/deployments/{deployment.id}/logs", follow_redirects=False
        )
        assert anonymous.status_code == 303
        sign_in_with_github(client, platform, "octo")
        text = client.get(f"/dashboard/deployments/{deployment.id}/logs")

    assert text.headers["content-type"].startswith("text/plain")
    assert "web-1 listening on :8080" in text.text


def test_the_deployments_page_shows_the_last_server_log_lines_without_javascript(
    platform: Platform, tmp_path: Path, live: str
) -> None:
    secret = "sk-live-0123456789abcdef"
    with platform.sessions() as session:
        revision = session.get(Revision, live)
        assert revision is not None
        revision.env_encrypted = SECRETS.encrypt_env({"API_KEY": secret})
        session.add(revision)
        session.commit()
    outputs = HeldOutputs()
    app, _ = dashboard(platform, tmp_path, outputs=outputs)
    deployment = platform.deployment()
    outputs.print(deployment.id, live, "listening on :8080")
    outputs.print(deployment.id, live, f"using key {secret} <b>now</b>")
    with TestClient(app=app, base_url=PUBLIC) as client:
        sign_in_with_github(client, platform, "octo")
        page = client.get(f"/dashboard/deployments/{deployment.id}").text
        pane = page.split('id="server-log"', 1)[1].split("</pre>", 1)[0]
        found = re.search(r'data-follow="([^"]+)"', pane)
        assert found is not None
        follow = html.unescape(found.group(1))
        # What the page's script follows from: the lines after those shown, not them again.
        after = client.get(follow.replace("follow=true", "follow=false")).text
        outputs.print(deployment.id, live, "GET / 200")
        later = client.get(follow.replace("follow=true", "follow=false")).text

    assert "web-1 listening on :8080\n" in pane
    assert "web-1 using key [redacted] &lt;b&gt;now&lt;/b&gt;\n" in pane
    assert secret not in page and "No output yet" not in page
    assert follow.startswith(f"/dashboard/deployments/{deployment.id}/logs?follow=true&since=")
    assert after == "(no output yet)\n"
    assert later.endswith("web-1 GET / 200\n") and "listening" not in later


class SilentEngine(HeldOutputs):
    """A runtime whose engine does not answer."""

    def of_deployment(self, *args: Any, **kwargs: Any) -> list[OutputLine]:
        raise EngineError("the Docker engine did not answer")


def test_the_deployments_page_says_so_when_it_has_no_server_log_to_show(
    platform: Platform, tmp_path: Path, live: str
) -> None:
    deployment = platform.deployment()
    pages = []
    for outputs in (HeldOutputs(), SilentEngine()):
        app, _ = dashboard(platform, tmp_path, outputs=outputs)
        with TestClient(app=app, base_url=PUBLIC) as client:
            sign_in_with_github(client, platform, "octo")
            pages.append(client.get(f"/dashboard/deployments/{deployment.id}"))
    quiet, silent = pages

    follow = f'data-follow="/dashboard/deployments/{deployment.id}/logs?follow=true"'
    assert quiet.status_code == 200 and "No output yet." in quiet.text and follow in quiet.text
    assert silent.status_code == 200 and "The Docker engine did not answer" in silent.text
    assert follow in silent.text


def test_the_lists_summary_of_a_deployment_says_what_its_own_view_says(
    platform: Platform, tmp_path: Path, live: str
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", public_url=PUBLIC)
    with platform.sessions() as session:
        deployment = session.get(Deployment, platform.deployment().id)
        assert deployment is not None
        [summary] = deployment_summaries(session, [deployment], settings)
        full = deployment_view(session, deployment, settings)

    assert summary.status == full.status and summary.url == full.url
    assert summary.repository == full.repository == "octo/web"
    assert [r.id for r in summary.replicas] == [r.id for r in full.replicas] != []


def test_the_pages_chart_the_deployments_metrics_of_the_last_hour(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    deployment = platform.deployment()
    now = datetime.now(UTC)
    with platform.sessions() as session:
        for minute, requests in enumerate((60, 120, 600)):
            session.add(
                MetricPoint(
                    deployment_id=deployment.id,
                    at=now - timedelta(minutes=3 - minute),
                    step_seconds=60,
                    requests=requests,
                    errors=6 if minute == 2 else 0,
                    p95_ms=42.0,
                    replicas=1,
                )
            )
        session.commit()
    sign_in_with_github(client, platform, "octo")

    listing = client.get("/dashboard/")
    page = client.get(f"/dashboard/deployments/{deployment.id}")

    assert "<title>requests per second: last 10, max 10</title>" in listing.text
    assert "<polyline" in listing.text
    assert "Requests per second" in page.text and "now 10/s, max 10/s" in page.text
    assert "now 1 %, max 1 %" in page.text and "now 42 ms" in page.text
    assert "Runs pending" not in page.text  # not a LangGraph deployment


def test_the_charts_show_every_series_of_the_metrics_api_with_their_values_in_words(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    deployment = platform.deployment()
    now = datetime.now(UTC)
    with platform.sessions() as session:
        for minute in range(3):
            at = now - timedelta(minutes=3 - minute)
            session.add(
                MetricPoint(
                    deployment_id=deployment.id,
                    at=at,
                    step_seconds=60,
                    requests=60,
                    p50_ms=8.0 + minute,
                    p95_ms=40.0,
                    p99_ms=120.0 + minute,
                    in_flight=1.5 * minute,
                    replicas=2,
                    pending_runs=4 - minute,
                    running_runs=minute,
                )
            )
            for replica, cores in (("web-1", 0.25), ("web-2", 0.5)):
                session.add(
                    ReplicaMetricPoint(
                        deployment_id=deployment.id,
                        replica_id=replica,
                        at=at,
                        step_seconds=60,
                        cpu_cores=None if minute == 0 else cores * minute,
                        memory_bytes=(64 + minute) * 1024 * 1024,
                    )
                )
        session.commit()
    sign_in_with_github(client, platform, "octo")

    page = client.get(f"/dashboard/deployments/{deployment.id}").text
    metrics = page.split('id="metrics"', 1)[1].split("</section>", 1)[0]

    def shown(label: str) -> str:
        """The chart's item: its label, its SVG and its values in words."""
        after = metrics.split(f'<span class="chart-label">{label}</span>', 1)[1]
        return after.split('<span class="chart-label">', 1)[0]

    assert "now 10 ms, max 10 ms" in shown("Latency p50")
    assert "now 122 ms, max 122 ms" in shown("Latency p99")
    assert "now 3, max 3" in shown("Requests in flight")
    cpu = shown("CPU per replica")
    assert cpu.count("<polyline") == 2  # a line per replica (the first read has no CPU)
    assert "web-1: now 0.5 cores, max 0.5 cores" in cpu
    assert "web-2: now 1 cores, max 1 cores" in cpu
    assert 'aria-label="CPU per replica: web-1 now 0.5 cores' in cpu
    memory = shown("Memory per replica")
    assert "web-1: now 66 MiB, max 66 MiB" in memory and "web-2: now 66 MiB" in memory
    assert "now 2, max 4" in shown("Runs pending")
    assert "now 2, max 2" in shown("Runs active")
    assert "https://" not in metrics and "<script" not in metrics  # drawn here, from no CDN


def test_a_deployments_page_shows_the_autoscalers_decisions(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, _ = site
    deployment = platform.deployment()
    decision = Decision(
        at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp(),
        stable_concurrency=7.5,
        panic_concurrency=None,
        desired=2,
        actual=1,
        reason=Reason.scale_up,
    )
    with platform.sessions() as session:
        row = session.get(Deployment, deployment.id)
        assert row is not None
        row.scaler_state = ScalerState(decisions=(decision,)).to_json()
        session.add(row)
        session.commit()
    sign_in_with_github(client, platform, "octo")

    page = client.get(f"/dashboard/deployments/{deployment.id}")

    assert "2026-12-01 12:00:00 UTC" in page.text
    assert "<td>7.5 / —</td><td>1</td><td>2</td><td>scale-up</td>" in page.text


def test_every_template_compiles_and_the_engine_loads_only_at_the_first_page() -> None:
    pages = Pages()
    assert pages._lookup is None  # nothing compiled, nothing imported for it, until asked

    for template in sorted(TEMPLATES.glob("*.mako")):
        pages._templates().get_template(template.name)


def test_the_oauth_client_comes_from_the_environment_else_from_setup(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    box = SecretBox("k" * 32)
    given = Settings(
        _env_file=None, data_dir=tmp_path, github_client_id="Iv1.env", github_client_secret="s3"
    )
    bare = Settings(_env_file=None, data_dir=tmp_path)

    assert oauth_client(given, sessions, box) == OAuthClient("Iv1.env", "s3")
    assert oauth_client(bare, sessions, box) is None
    with pytest.raises(ValidationError, match="go together"):
        Settings(_env_file=None, data_dir=tmp_path, github_client_id="Iv1.env")


def test_a_deployments_page_links_its_tracing_project_and_says_when_it_was_last_used(
    platform: Platform, tmp_path: Path, live: str
) -> None:
    deployment = platform.deployment()
    with platform.sessions() as session:
        row = session.get(Deployment, deployment.id)
        assert row is not None
        row.tracing_project_url = "https://smith.example.test/o/1/projects/p/abc"
        row.last_used_at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
        session.add(row)
        session.commit()
    app, _ = dashboard(platform, tmp_path, langsmith_api_key="lsv2-secret-key")
    with TestClient(app=app, base_url=PUBLIC) as client:
        sign_in_with_github(client, platform, "octo")
        page = client.get(f"/dashboard/deployments/{deployment.id}")

    assert page.status_code == 200
    assert (
        f'<a href="https://smith.example.test/o/1/projects/p/abc">{deployment.slug}</a>'
        in page.text
    )
    assert "Last used" in page.text and "2026-12-01 09:30:00 UTC" in page.text
    assert "lsv2-secret-key" not in page.text


def test_the_dashboard_session_lasts_as_long_as_the_setting_says(
    platform: Platform, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, dashboard_session_hours=2)
    sessions = browser_sessions(settings, SecretBox("k" * 32), platform.clock)
    sealed = sessions.seal(BrowserSession(github_login="octo", github_token="ghu_x"))

    assert sessions.lifetime == timedelta(hours=2)
    assert sessions.open(sealed) is not None
    platform.clock.now += timedelta(hours=2, minutes=1)
    assert sessions.open(sealed) is None
    with pytest.raises(ValidationError, match="dashboard_session_hours"):
        Settings(_env_file=None, data_dir=tmp_path, dashboard_session_hours=0)


def test_a_writer_sets_a_previews_only_value_and_sees_it_listed_apart(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, queue = site
    sign_in_with_github(client, platform, "octo")
    deployment = platform.deployment()
    page = client.get(f"/dashboard/deployments/{deployment.id}")
    assert '<option value="previews">its previews only</option>' in page.text

    changed = client.post(
        f"/dashboard/deployments/{deployment.id}/env",
        data={
            "csrf_token": csrf_of(page.text),
            "name": "SANDBOX_KEY",
            "value": "sk-test-1",
            "secret": "1",
            "scope": "previews",
        },
    )

    assert changed.status_code == 200
    previews = changed.text.split('id="previews-env"', 1)[1]
    assert "<code>SANDBOX_KEY</code>" in previews and "secret (not shown)" in previews
    assert "<code>SANDBOX_KEY</code>" not in changed.text.split('id="previews-env"', 1)[0]
    assert "sk-test-1" not in changed.text
    assert platform.operations.env(deployment.id, EnvScope.previews).secrets == ["SANDBOX_KEY"]
    assert platform.operations.env(deployment.id).values == {}
    assert all(not job[1]["start_revisions"] for job in queue.jobs)  # production unchanged


def test_a_writer_approves_a_forks_commit_and_it_is_built_as_the_check_runs_button_does(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform
) -> None:
    client, queue = site
    outcome = platform.pull_request_event("opened", 7, platform.commit(), fork="stranger/web")
    [revision_id] = outcome.announce_revisions
    preview = platform.preview_deployment(7)
    platform.github.set_permission("octo/web", "reader", "read")
    sign_in_with_github(client, platform, "reader")
    read_only = client.get(f"/dashboard/deployments/{preview.id}")
    assert "waiting for approval" in read_only.text and "Approve and build" not in read_only.text
    refused = client.post(
        f"/dashboard/deployments/{preview.id}/revisions/{revision_id}/approve",
        data={"csrf_token": csrf_of(read_only.text)},
    )
    assert refused.status_code == 403 and platform.revision(revision_id).approved_by is None

    sign_in_with_github(client, platform, "octo")
    page = client.get(f"/dashboard/deployments/{preview.id}")
    assert 'aria-label="Approve and build revision 1"' in page.text
    approved = client.post(
        f"/dashboard/deployments/{preview.id}/revisions/{revision_id}/approve",
        data={"csrf_token": csrf_of(page.text)},
    )

    assert approved.status_code == 200 and "approved" in approved.text
    assert "Approve and build revision" not in approved.text
    assert "(approved by octo)" in approved.text
    assert platform.revision(revision_id).approved_by == "octo"
    [(_, order)] = [job for job in queue.jobs if job[1].get("approved_revisions")]
    assert order["approved_revisions"] == [revision_id]
    platform.orders.carry_out(WorkOrder.from_dict(order))
    assert platform.pipeline.run(revision_id) is RevisionState.live
    again = client.post(
        f"/dashboard/deployments/{preview.id}/revisions/{revision_id}/approve",
        data={"csrf_token": csrf_of(page.text)},
    )
    assert "already approved by @octo" in again.text


def test_a_building_revisions_page_follows_its_build_log_over_the_apis_handler(
    site: tuple[TestClient[Any], RecordingQueue], platform: Platform, live: str
) -> None:
    client, _ = site
    outcome = platform.pull_request_event("opened", 7, platform.commit(), fork="stranger/web")
    [waiting] = outcome.announce_revisions
    assert client.get(f"/dashboard/revisions/{live}/log", follow_redirects=False).status_code == 303
    sign_in_with_github(client, platform, "octo")

    pending = client.get(f"/dashboard/revisions/{waiting}")
    done = client.get(f"/dashboard/revisions/{live}")
    followed = client.get(f"/dashboard/revisions/{live}/log?follow=true")

    assert f'data-follow="/dashboard/revisions/{waiting}/log?follow=true"' in pending.text
    assert "(no build log yet)" in pending.text  # the snapshot, for a page without JavaScript
    assert "data-follow" not in done.text.split('id="build-log"', 1)[1]
    assert followed.status_code == 200 and followed.headers["content-type"].startswith("text/plain")
    snapshot = client.get(f"/dashboard/revisions/{live}/log").text
    assert followed.text == snapshot != "" and snapshot.splitlines()[0] in done.text

    signed = urlsplit(platform.links.signer.sign(PUBLIC, f"/dashboard/revisions/{live}"))
    client.cookies.clear()
    by_link = client.get(f"{signed.path}/log?follow=true&{signed.query}")
    forged = client.get(
        f"/dashboard/revisions/{waiting}/log?follow=true&{signed.query}", follow_redirects=False
    )
    assert by_link.status_code == 200 and by_link.text == snapshot
    assert forged.status_code == 303
