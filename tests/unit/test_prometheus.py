"""`/metrics` as an operator's Prometheus sees it: behind a token unless SLIPWAY_METRICS_PUBLIC
opens it, and carrying what one alerts on (failed revisions, builds waiting, the notification
backlog, the worker's last passes, each part /readyz asks), in text prometheus_client parses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.api import create_app
from app.api.metrics import PrometheusExposition
from app.bootstrap import Platform
from app.kernel.db import SessionFactory
from app.kernel.models import Notification, RevisionState
from app.kernel.orders import LAST_FINISHED_KEY
from app.kernel.settings import Settings
from jobs import tasks
from tests.support.keys import new_private_key_pem
from tests.support.rows import add_revision, add_web_revision

PARTS = ("control-plane database", "redis", "router", "docker engine")


@pytest.mark.parametrize("public", [False, True])
def test_metrics_needs_a_token_unless_the_setting_opens_it(tmp_path: Path, public: bool) -> None:
    settings = Settings(
        _env_file=None,
        github_app_id=1,
        github_private_key=new_private_key_pem(),
        github_webhook_secret="s",
        data_dir=tmp_path / "data",
        metrics_public=public,
    )
    app = create_app(settings)  # no lifespan (no Redis here): /metrics reads the database
    client = TestClient(app=app)

    scraped = client.get("/metrics")

    if public:
        assert scraped.status_code == 200, scraped.text
        names = {family.name for family in text_string_to_metric_families(scraped.text)}
        assert "slipway_deployments" in names
    else:
        assert scraped.status_code == 401
    assert client.get("/api/deployments").status_code == 401  # the API stays guarded


class Redis:
    """The worker's records of its last passes, as the worker writes and the API reads them."""

    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value.encode()

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]


def test_the_worker_records_when_it_last_finished_a_reconciler_pass() -> None:
    """What `slipway_reconcile_last_pass_timestamp_seconds` shows: a worker whose passes stop
    (stuck, or gone) leaves it behind the clock."""
    platform = Platform.__new__(Platform)  # only the parts a reconcile job uses
    platform.reconciler = SimpleNamespace(reconcile=lambda: None)  # type: ignore[assignment]
    platform.clock = lambda: datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    redis = Redis({})

    asyncio.run(tasks.reconcile({"platform": platform, "redis": redis}))

    seconds = datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()
    assert redis.values == {LAST_FINISHED_KEY.format("reconcile"): f"{seconds:.3f}".encode()}


def test_the_platforms_own_metrics_carry_what_an_operator_alerts_on(
    sessions: SessionFactory,
) -> None:
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    with sessions() as session:
        add_web_revision(session)  # rev_1, queued
        add_revision(session, "rev_2", number=2, env_hash="b", state=RevisionState.failed)
        add_revision(session, "rev_3", number=3, env_hash="c", state=RevisionState.failed)
        add_revision(session, "rev_4", number=4, env_hash="d", state=RevisionState.building)
        for i, (sent, gave_up) in enumerate([(None, None), (None, None), (now, None), (None, now)]):
            session.add(
                Notification(
                    deployment_id="dep_web",
                    event="failed",
                    channel="operator 1 (json)",
                    target_encrypted="x",
                    title="t",
                    body="b",
                    created_at=now - timedelta(minutes=10 - i),
                    sent_at=sent,
                    gave_up_at=gave_up,
                )
            )
        session.commit()
    exposition = PrometheusExposition(
        sessions,
        lambda: Redis({LAST_FINISHED_KEY.format("reconcile"): b"1796637600.5"}),  # type: ignore[arg-type,return-value]
    )

    passes = asyncio.run(exposition.last_passes())
    text = exposition.render(PARTS, frozenset({"redis"}), passes).decode()

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("slipway_revisions", (("state", "failed"),))] == 2
    assert samples[("slipway_revisions", (("state", "live"),))] == 0  # every state, 0 too
    assert samples[("slipway_builds_queued", ())] == 1
    assert samples[("slipway_builds_running", ())] == 1
    assert samples[("slipway_notifications_pending", ())] == 2
    assert samples[("slipway_notifications_given_up", ())] == 1
    oldest = samples[("slipway_notifications_oldest_pending_timestamp_seconds", ())]
    assert oldest == (now - timedelta(minutes=10)).timestamp()
    assert samples[("slipway_reconcile_last_pass_timestamp_seconds", ())] == 1796637600.5
    assert ("slipway_metrics_last_sample_timestamp_seconds", ()) not in samples  # never ran
    parts = {labels[0][1]: v for (name, labels), v in samples.items() if name == "slipway_part_up"}
    assert parts == {"control-plane database": 1, "redis": 0, "router": 1, "docker engine": 1}
