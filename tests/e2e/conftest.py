"""The e2e tier: `slipway up` as a subprocess, a fake GitHub, real Docker, BuildKit and Caddy.

One platform (`platform`) serves every module that needs nothing special of it (with the
App's OAuth client, for test_dashboard's sign-in). A module that
needs settings of its own (test_replicas' fast autoscaling, test_langgraph's wheel index,
test_restarts' short recovery and the processes it kills, test_first_run_setup's missing App,
test_backups' schedule of seconds, test_https's ACME CA and router ports) starts its own,
once per module; those modules run first, so the shared platform is not yet running beside
them on the machine's two cores.

`make e2e` runs the modules on three workers (tests/support/scheduling.py), longest first: each
worker starts the shared platform when it first needs it. Platforms on one machine keep apart:
each has its own DATA_DIR (a worker's own tmp_path), ports the kernel picks, containers and
networks named after its own ids, spare holders named after its DATA_DIR, and rules of its own
in the network policy's chains (applied under the machine's lock, app.adapters.network_policy).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from xdist.remote import Producer

from tests.support import scheduling
from tests.support.browser import browser as browser  # a fixture: test_dashboard's
from tests.support.fake_github import FakeGitHub
from tests.support.git_repos import GitRepo
from tests.support.images import ensure_busybox_image, ensure_python_image
from tests.support.platform import (
    ACCOUNT,
    INSTALLATION_ID,
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    RepoFactory,
    RunningPlatform,
    connect_repository,
    register_dashboard_client,
    start_platform,
)
from tests.support.receivers import SmtpReceiver, WebhookReceiver

HEALTH_TIMEOUT_SECONDS = "8"
"""Short, so the never-healthy test fails in seconds; real apps here answer in under one."""

_repo_ids = itertools.count(1)

SECONDS = {
    "test_langgraph.py": 103,
    "test_replicas.py": 93,
    "test_langgraph_queue.py": 85,
    "test_backups.py": 75,
    "test_preview_lifecycle.py": 60,
    "test_idle_deployments.py": 59,
    "test_restarts.py": 49,
    "test_https.py": 30,
    "test_notifications.py": 29,
    "test_server_logs.py": 21,
    "test_cli.py": 14,
    "test_bad_input.py": 13,
    "test_dashboard.py": 11,
    "test_previews.py": 10,
    "test_first_run_setup.py": 7,
    "test_operations.py": 5,
    "test_push_to_deploy.py": 4,
    "test_tenant_isolation.py": 1,
}
"""Each module's seconds (setup, tests and teardown) on one of three workers, from the junit
report of a passing run on this machine (252 s wall for 664 s of work): relative weights, the
longest go first."""
scheduling.register(Path(__file__).parent, {}, SECONDS)


def pytest_xdist_make_scheduler(
    config: pytest.Config, log: Producer
) -> scheduling.TierScheduling | None:
    return scheduling.make_scheduler(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This tier's tests of the shared platform after its others, in the places this tier's
    tests hold in the run (a stable sort: file order stays; other tiers' tests do not move)."""
    here = Path(__file__).parent
    places = [i for i, item in enumerate(items) if item.path.is_relative_to(here)]
    ordered = sorted(
        (items[i] for i in places),
        key=lambda item: "platform" in getattr(item, "fixturenames", ()),
    )
    for place, item in zip(places, ordered, strict=True):
        items[place] = item


@pytest.fixture(scope="session")
def base_images() -> dict[str, str]:
    return {"busybox": ensure_busybox_image(), "python": ensure_python_image()}


@pytest.fixture(scope="session")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(app_id=31337, app_slug="slipway-test")
    fake.start()
    fake.add_installation(INSTALLATION_ID, ACCOUNT)
    yield fake
    fake.stop()


@dataclass(frozen=True)
class Receivers:
    """The shared platform's notification channels (SLIPWAY_NOTIFY): what they received."""

    webhook: WebhookReceiver
    smtp: SmtpReceiver


@pytest.fixture(scope="session")
def receivers() -> Iterator[Receivers]:
    webhook, smtp = WebhookReceiver().start(), SmtpReceiver().start()
    yield Receivers(webhook, smtp)
    webhook.stop()
    smtp.stop()


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    github: FakeGitHub,
    base_images: dict[str, str],
    receivers: Receivers,
) -> Iterator[RunningPlatform]:
    running = start_platform(
        tmp_path_factory.mktemp("platform"),
        github,
        health_timeout_seconds=HEALTH_TIMEOUT_SECONDS,
        notify=f"{receivers.webhook.url} {receivers.smtp.url}",
        github_client_id=OAUTH_CLIENT_ID,
        github_client_secret=OAUTH_CLIENT_SECRET,
    )
    register_dashboard_client(running, github)
    yield running
    running.stop_and_clean()


@pytest.fixture
def make_repository(tmp_path: Path, github: FakeGitHub, platform: RunningPlatform) -> RepoFactory:
    """A git repository with a first commit, known to the fake GitHub and connected to the App."""

    def make(name: str, files: dict[str, str | bytes]) -> tuple[GitRepo, dict[str, Any]]:
        return connect_repository(platform, github, tmp_path / f"{name}-{next(_repo_ids)}", files)

    return make
