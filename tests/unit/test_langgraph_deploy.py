"""A LangGraph revision goes live with a Redis of its deployment's own, kept across revisions,
removed with the deployment; a Dockerfile app gets none."""

from __future__ import annotations

from app.kernel.models import RevisionState
from manifests.containers import REDIS_LIMITS, redis_name
from tests.unit.world import Platform

LANGGRAPH_REPOSITORY = {
    "langgraph.json": '{"dependencies": ["."], "graphs": {"agent": "./agent.py:graph"}}\n',
    "agent.py": "graph = object()\n",
    "requirements.txt": "langgraph\n",
}


def test_a_langgraph_revision_gets_its_own_redis_on_its_network(platform: Platform) -> None:
    first = platform.push(LANGGRAPH_REPOSITORY)

    assert platform.pipeline.run(first) is RevisionState.live, platform.revision(first).error

    deployment = platform.deployment()
    [redis] = platform.runtime.services.values()
    assert redis.name == redis_name(deployment.id)
    assert redis.limits == REDIS_LIMITS
    [container] = platform.runtime.of_revision(first)
    assert redis.network == container.spec.network
    password = redis.files["/slipway/valkey.conf"].split("requirepass ")[1].split()[0]
    assert len(password) >= 32
    assert container.spec.env["REDIS_URI"] == (
        f"redis://:{password}@{redis_name(deployment.id)}:6379/0"
    )
    assert password not in container.spec.env["DATABASE_URI"]
    log = platform.config.log_path(platform.revision(first)).read_text()
    assert "managed checkpointer and store (pg runtime)" in log
    assert "the deployment's own Redis" in log
    assert password not in log


def test_the_redis_is_reused_across_revisions_and_recreated_when_gone(
    platform: Platform,
) -> None:
    platform.pipeline.run(platform.push(LANGGRAPH_REPOSITORY))
    [before] = platform.runtime.services.values()

    second = platform.push({**LANGGRAPH_REPOSITORY, "agent.py": "graph = 2\n"})
    assert platform.pipeline.run(second) is RevisionState.live
    assert platform.runtime.service_starts == 1
    [container] = platform.runtime.of_revision(second)
    assert container.spec.env["REDIS_URI"].endswith(f"@{before.name}:6379/0")

    platform.runtime.services.clear()  # removed by hand, or the engine lost it
    third = platform.push({**LANGGRAPH_REPOSITORY, "agent.py": "graph = 3\n"})
    assert platform.pipeline.run(third) is RevisionState.live
    [after] = platform.runtime.services.values()
    assert after.files == before.files  # same password: the replicas' URI stays right


def test_teardown_removes_the_deployments_redis(platform: Platform) -> None:
    platform.pipeline.run(platform.push(LANGGRAPH_REPOSITORY))
    assert platform.runtime.services

    platform.teardown.remove(platform.deployment().id, drop_database=True, reason="closed")

    assert not platform.runtime.services


def test_a_dockerfile_app_gets_no_redis(platform: Platform) -> None:
    first = platform.push()

    assert platform.pipeline.run(first) is RevisionState.live
    assert not platform.runtime.services
    [container] = platform.runtime.of_revision(first)
    assert "REDIS_URI" not in container.spec.env
