"""SLIPWAY_METRICS=false: the worker samples nothing, and the idle rules, which read requests
from those samples, judge no deployment unused for want of them (the router's side is in
test_router_config)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.deployments.idle import IdleRules
from app.kernel.models import RevisionState
from app.kernel.settings import Settings
from jobs.worker import periodic_passes
from tests.support.keys import new_private_key_pem
from tests.unit.world import Platform

DAY = 1000.0


@pytest.mark.parametrize("metrics", [True, False])
def test_the_worker_samples_metrics_only_when_they_are_on(tmp_path: Path, metrics: bool) -> None:
    settings = Settings(
        _env_file=None,
        github_app_id=1,
        github_private_key=new_private_key_pem(),
        github_webhook_secret="s",
        data_dir=tmp_path,
        redis_url="redis://127.0.0.1:1/0",  # never connected: the worker is only made
        metrics=metrics,
    )

    passes = {periodic.name for periodic in periodic_passes(settings)}

    assert ("sample_metrics" in passes) is metrics
    assert "reconcile" in passes


def test_without_metrics_no_deployment_is_judged_unused(platform: Platform) -> None:
    """Nothing counts its requests: a deployment in use must not be noticed or deleted."""
    platform.idle = IdleRules(day_seconds=DAY, notice_days=7, delete_days=28)
    platform.requests_counted = False
    platform.__post_init__()
    assert platform.pipeline.run(platform.push()) is RevisionState.live
    deployment = platform.deployment()
    platform.usage.tick()
    for _ in range(30):
        platform.clock.now += timedelta(seconds=DAY)
        report = platform.usage.tick()
        assert (report.noticed, report.deleted) == ([], [])
    assert platform.github.issues(platform.full_name) == []
    assert platform.deployment_by_id(deployment.id).deleted_at is None
