"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A person signs in through the fake GitHub's OAuth page, sees their deployment with its preview
under it, watches a server-log line arrive live (once), opens a revision's build log, changes
an env var (a new revision goes live), sees the charts and the autoscaler's decisions, rolls
back, and moves through the page with the keyboard; a reader sees no write buttons and a
forged POST is refused.
Screenshots of the pages go to tmp_path, or to $SLIPWAY_DASHBOARD_SCREENSHOTS (docs/images is
refreshed that way: an hour of metrics and the decisions are written first, and the platform's
clock set to the real time, so the pictures show data and their dates agree).

Needs `chromium` (scripts/ensure-test-tools.sh installs it) and Playwright's Python client;
skipped, saying which is missing, where they are not installed.
"""

from __future__ import annotations

import math
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from app.kernel.models import (
    Deployment,
    MetricPoint,
    Replica,
    ReplicaMetricPoint,
    Revision,
    RevisionState,
)
from app.replicas.autoscaler import Decision, Reason, ScalerState
from app.server.embedded import free_port
from tests.support.api_server import serve_api
from tests.support.browser import TIMEOUT_MS, needs_chromium
from tests.unit.dashboard_site import HeldOutputs, dashboard
from tests.unit.world import Platform

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's client is missing")
pytestmark = needs_chromium


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("SLIPWAY_DASHBOARD_SCREENSHOTS") or tmp_path / "shots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def an_hour_of_traffic(platform: Platform, deployment_id: str, scale: float = 1.0) -> None:
    """What the metrics sampler would have written over the last hour (1-minute points): a
    morning's traffic rising, a burst of errors, latency following the load."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with platform.sessions() as session:
        for minute in range(60):
            load = 1 + math.sin(minute / 9) * 0.4 + minute / 90
            requests = int(900 * load * scale)
            session.add(
                MetricPoint(
                    deployment_id=deployment_id,
                    at=now - timedelta(minutes=59 - minute),
                    step_seconds=60,
                    requests=requests,
                    errors=requests // 40 if 38 <= minute <= 41 else 0,
                    p50_ms=round(11 + 4 * load, 1),
                    p95_ms=round(38 + 22 * load, 1),
                    p99_ms=round(90 + 70 * load, 1),
                    in_flight=round(2.5 * load * scale, 2),
                    replicas=2 if 40 <= minute < 58 else 1,  # scaled down 2 minutes ago
                    restarts=1 if minute == 23 else 0,
                )
            )
        session.commit()


def replica_usage(platform: Platform, deployment_id: str) -> None:
    """Each of the deployment's replicas' CPU and memory over the last hour, or over the part
    of it it ran (a replica started minutes ago has minutes of points), and the autoscaler's
    last decisions (at the platform's clock, as the reconciler records them)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with platform.sessions() as session:
        replicas = session.exec(
            select(Replica)
            .join(Revision, col(Replica.revision_id) == col(Revision.id))
            .where(Revision.deployment_id == deployment_id)
            .order_by(col(Replica.started_at))
        ).all()
        for index, replica in enumerate(replicas):
            minutes = range(0, 57) if index == 0 and len(replicas) > 1 else range(57, 60)
            for minute in minutes:
                session.add(
                    ReplicaMetricPoint(
                        deployment_id=deployment_id,
                        replica_id=replica.id,
                        at=now - timedelta(minutes=59 - minute),
                        step_seconds=60,
                        cpu_cores=round(0.12 + 0.08 * math.sin(minute / 7 + index), 3),
                        memory_bytes=(92 + minute // 6 + 14 * index) * 1024 * 1024,
                    )
                )
        row = session.get(Deployment, deployment_id)
        assert row is not None
        row.scaler_state = ScalerState(
            decisions=tuple(
                Decision(
                    at=(platform.clock.now - timedelta(minutes=ago)).timestamp(),
                    stable_concurrency=stable,
                    panic_concurrency=panic,
                    desired=desired,
                    actual=actual,
                    reason=reason,
                )
                for ago, stable, panic, desired, actual, reason in (
                    (20, 11.8, 24.0, 2, 1, Reason.panic),
                    (12, 12.6, None, 2, 2, Reason.steady),
                    (2, 6.1, None, 1, 2, Reason.scale_down),
                )
            )
        ).to_json()
        session.add(row)
        session.commit()


def test_a_person_signs_in_reads_a_build_log_changes_env_and_rolls_back_in_a_browser(
    platform: Platform, tmp_path: Path, browser: Any, shots: Path
) -> None:
    # The platform's clock at the real time (it ticks a second a reading, so it runs a little
    # ahead): the pages' dates (revisions, replicas) follow the push's (now), as the server
    # logs' and the metrics' times do, in the screenshots.
    platform.clock.now = datetime.now(UTC).replace(microsecond=0)
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    opened = platform.pull_request_event("opened", 7, platform.commit(message="Add search"))
    [preview_revision] = opened.start_revisions
    assert platform.pipeline.run(preview_revision) is RevisionState.live
    preview = platform.preview_deployment(7)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    outputs = HeldOutputs()
    app, _ = dashboard(platform, tmp_path, public_url=public, run_revisions=True, outputs=outputs)
    with platform.sessions() as session:
        deployment = session.exec(select(Deployment).where(Deployment.slug == "web")).one()
    an_hour_of_traffic(platform, deployment.id)
    an_hour_of_traffic(platform, preview.id, scale=0.02)
    outputs.print(deployment.id, first, "listening on :8080")
    platform.github.sign_in_browser("octo")
    expect = sync_api.expect

    with serve_api(app, port):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{public}/dashboard/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.screenshot(path=str(shots / "dashboard-sign-in.png"))
        page.get_by_role("link", name="Sign in with GitHub").click()

        expect(page.get_by_role("heading", name="Deployments")).to_be_visible()
        expect(page.get_by_text("Signed in as")).to_contain_text("octo")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name="web", exact=True))
        expect(row).to_contain_text("http://web.localhost:8000")
        expect(row).to_contain_text("#1")
        expect(row.get_by_role("img")).to_have_attribute(
            "aria-label", re.compile(r"requests per second: last \d")
        )
        # The preview, right under its production deployment.
        expect(page.get_by_role("row").nth(2)).to_contain_text(preview.slug)
        page.screenshot(path=str(shots / "dashboard-deployments.png"), full_page=True)

        row.get_by_role("link", name="web", exact=True).click()
        expect(page.get_by_role("heading", name="Revisions")).to_be_visible()
        server_log = page.locator("#server-log")
        expect(server_log).to_contain_text("listening on :8080")
        outputs.print(deployment.id, first, "GET / 200 (printed after the page opened)")
        expect(server_log).to_contain_text("printed after the page opened")
        # The line rendered with the page is not sent again by the follow.
        assert server_log.inner_text().count("listening on :8080") == 1
        page.get_by_role("link", name="#1", exact=True).click()
        expect(page.get_by_role("heading", name="Build log")).to_be_visible()
        expect(page.locator("pre.log")).not_to_be_empty()
        page.screenshot(path=str(shots / "dashboard-revision.png"), full_page=True)
        page.go_back()

        page.get_by_label("Name").fill("GREETING")
        page.get_by_label("Value").fill("hello from the browser")
        page.get_by_role("button", name="Save and redeploy").click()
        expect(page.get_by_role("status")).to_contain_text("changed by octo")
        expect(page.get_by_role("cell", name="hello from the browser")).to_be_visible()
        expect(page.get_by_role("row").filter(has_text="#2")).to_contain_text("live")
        replica_usage(platform, deployment.id)
        page.reload()
        metrics = page.get_by_role("region", name="Metrics, last hour")
        expect(metrics.get_by_role("img", name=re.compile("^Latency p99: last"))).to_be_visible()
        expect(
            metrics.get_by_role("img", name=re.compile("^CPU per replica: rep_"))
        ).to_be_visible()
        expect(metrics).to_contain_text("2 replicas in the last hour")
        scaling = page.get_by_role("region", name="Scaling")
        expect(scaling.get_by_role("row").filter(has_text="scale-down")).to_be_visible()
        page.screenshot(path=str(shots / "dashboard-deployment.png"), full_page=True)

        page.get_by_role("button", name="Roll back to revision 1").click()
        expect(page.get_by_role("status")).to_contain_text("rollback of web to revision #1")
        expect(page.get_by_role("row").filter(has_text="#3")).to_contain_text("live")
        expect(page.get_by_role("cell", name="hello from the browser")).to_have_count(0)

        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        assert focused == "Skip to content"

    platform.github.assert_no_errors()


def test_a_reader_sees_no_write_buttons_and_a_forged_post_is_refused_in_a_browser(
    platform: Platform, tmp_path: Path, browser: Any
) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    deployment = platform.deployment()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    app, queue = dashboard(platform, tmp_path, public_url=public)
    platform.github.set_permission("octo/web", "reader", "read")
    platform.github.sign_in_browser("reader")
    expect = sync_api.expect

    with serve_api(app, port):
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{public}/dashboard/sign-in/github")
        page.goto(f"{public}/dashboard/deployments/{deployment.id}")
        expect(page.get_by_role("heading", name="Revisions")).to_be_visible()
        expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
        expect(page.get_by_role("button", name="Save and redeploy")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete web")).to_have_count(0)

        forged = page.request.post(
            f"{public}/dashboard/deployments/{deployment.id}/deploy", form={"ref": "main"}
        )
        assert forged.status == 403
    assert queue.jobs == []


def test_a_building_revisions_log_arrives_live_in_a_browser(
    platform: Platform, tmp_path: Path, browser: Any
) -> None:
    first = platform.push()
    assert platform.pipeline.run(first) is RevisionState.live
    second = platform.push()  # queued: its page follows the build log
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    app, _ = dashboard(platform, tmp_path, public_url=public)
    platform.github.sign_in_browser("octo")
    expect = sync_api.expect

    with serve_api(app, port):
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{public}/dashboard/sign-in/github")
        page.goto(f"{public}/dashboard/revisions/{second}")
        log = page.locator("#build-log-text")
        expect(log).to_contain_text("(no build log yet)")

        built = threading.Thread(target=platform.pipeline.run, args=(second,))
        built.start()
        built.join(timeout=60)
        assert not built.is_alive()
        whole = page.request.get(f"{public}/dashboard/revisions/{second}/log").text()
        first_line = whole.splitlines()[0]

        # The page was not reloaded: the lines came over the followed stream.
        expect(log).to_contain_text(first_line)
        expect(log).not_to_contain_text("(no build log yet)")
