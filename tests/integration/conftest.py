"""Fixtures the integration tier's build tests share, and how its modules share the workers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from xdist.remote import Producer

from app.server.embedded import EmbeddedRedis
from tests.support import scheduling
from tests.support.images import DOCKER

TOGETHER = {
    # Docker 20.10 re-inserts FORWARD's jump to its isolation chain (delete, then insert) at
    # every network creation, and DOCKER-USER's jump with it: for that moment a container on
    # one bridge reaches another bridge, and the network policy is skipped. A test of what a
    # container cannot reach must not meet a network made meanwhile (A reached B once, beside
    # test_network_policy on the other worker): the modules that make networks, or probe
    # them, run one after the other.
    "test_confinement.py": "docker-networks",
    "test_network_policy.py": "docker-networks",
    "test_deployment_redis.py": "docker-networks",
    # BuildKit's cache and the disk are the machine's: test_disk_bounds prunes the whole build
    # cache, which test_build_cache_scope's and test_langgraph_image's second builds must still
    # find; test_build_limits sets its disk reserve from the free space it measures (400 MiB
    # below it), which a LangGraph image written meanwhile would take.
    "test_disk_bounds.py": "buildkit-cache-and-disk",
    "test_build_cache_scope.py": "buildkit-cache-and-disk",
    "test_langgraph_image.py": "buildkit-cache-and-disk",
    "test_build_limits.py": "buildkit-cache-and-disk",
}
"""Modules that must not run beside each other: one unit of work of one worker
(tests/support/scheduling.py)."""

SECONDS = {
    "test_langgraph_image.py": 62,
    "test_confinement.py": 54,
    "test_worker_wake.py": 27,
    "test_network_policy.py": 22,
    "test_build_limits.py": 20,
    "test_metrics.py": 14,
    "test_disk_bounds.py": 13,
    "test_service.py": 12,
    "test_embedded.py": 6,
    "test_queue_outage.py": 6,
    "test_deployment_redis.py": 5,
    "test_databases.py": 5,
    "test_readiness.py": 3,
    "test_build_cache_scope.py": 3,
    "test_backups.py": 16,
    "test_notifications.py": 3,
    "test_index_pass_through.py": 3,
    "test_run_queue.py": 3,
    "test_log_follows.py": 2,
    "test_webhook_receiver.py": 2,
    "test_engine_events.py": 1,
    "test_control_plane_postgres.py": 1,
    "test_locks_on_postgres.py": 1,
    "test_wildcard_policy.py": 1,
    "test_worker_queue.py": 1,
}
"""Each module's seconds (setup, tests and teardown) on one of three workers, from the junit
report of a run on this machine (106 s wall for 271 s of work): relative weights, the longest
units go first."""


scheduling.register(Path(__file__).parent, TOGETHER, SECONDS)


def pytest_xdist_make_scheduler(
    config: pytest.Config, log: Producer
) -> scheduling.TierScheduling | None:
    return scheduling.make_scheduler(config, log)


@pytest.fixture
def tags() -> Iterator[list[str]]:
    """Image tags a test built: removed when it ends."""
    made: list[str] = []
    yield made
    for tag in made:
        subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Valkey of the test's own, as `slipway up` runs it."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
