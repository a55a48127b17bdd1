"""Names, labels and env of replicas: pure functions, the one place both starters use."""

from __future__ import annotations

from manifests.containers import (
    DEPLOYMENT_LABEL,
    LIMITS,
    REVISION_LABEL,
    Confinement,
    DeploymentType,
    deployment_network,
    holder_name,
    is_holder,
    replica_env,
    replica_name,
    replica_spec,
    reserve_holder_names,
    reserve_id,
    reserve_network,
)
from manifests.run import RunConfig


def test_a_replica_is_named_after_its_deployment_revision_and_itself() -> None:
    assert replica_name("shop", 7, "rep_0a1b2c") == "slipway-shop-r7-0a1b2c"
    assert len(replica_name("s" * 63, 10**9, "rep_" + "f" * 12)) <= 120


def test_the_platforms_variables_win_over_the_users() -> None:
    env = replica_env(
        user_env={"PORT": "1", "GREETING": "hi", "REDIS_URI": "redis://elsewhere"},
        port=8000,
        database_uri="postgresql://a@h/db",
        deployment_slug="shop",
        revision_id="rev_1",
        commit_sha="c" * 40,
        redis_uri="redis://:pw@slipway-redis-dep_1:6379/0",
    )
    assert env["PORT"] == "8000" and env["GREETING"] == "hi"
    assert env["REDIS_URI"] == "redis://:pw@slipway-redis-dep_1:6379/0"
    assert (env["SLIPWAY_DEPLOYMENT"], env["SLIPWAY_REVISION"]) == ("shop", "rev_1")
    no_redis = replica_env(
        user_env={},
        port=3000,
        database_uri="x",
        deployment_slug="s",
        revision_id="r",
        commit_sha="c",
    )
    assert "REDIS_URI" not in no_redis


def test_every_replica_is_labelled_and_on_its_deployments_network() -> None:
    spec = replica_spec(
        deployment_id="dep_1",
        revision_id="rev_1",
        name="slipway-shop-r1-x",
        image="slipway/dep_1:rev_1",
        port=8000,
        limits=LIMITS[DeploymentType.production],
        env={},
        confinement=Confinement(),
    )
    assert spec.labels == {DEPLOYMENT_LABEL: "dep_1", REVISION_LABEL: "rev_1"}
    assert spec.network == deployment_network("dep_1").name


def test_a_run_config_round_trips_and_keeps_only_what_was_set() -> None:
    run = RunConfig(port=8123, health_path="/ok", langgraph_runtime="pg", scale={"max": 4})
    assert RunConfig.from_json(run.to_json()) == run
    assert RunConfig.from_json('{"port": 80}') == RunConfig(port=80)


def test_a_state_dir_is_kept_on_the_deployments_volume() -> None:
    spec = replica_spec(
        deployment_id="dep_1",
        revision_id="rev_2",
        name="n",
        image="i",
        port=8000,
        limits=LIMITS[DeploymentType.development],
        env={},
        confinement=Confinement(),
        state_dir="/deps/app/.langgraph_api",
    )
    assert spec.volumes == {"slipway-state-dep_1": "/deps/app/.langgraph_api"}


def test_the_hosts_reserve_of_spare_holders_is_the_platforms_not_a_deployments() -> None:
    platform = reserve_id("/srv/slipway/.data/run")

    spares = reserve_holder_names(platform, 3)

    assert len(spares) == 3 and len(set(spares)) == 3
    assert all(is_holder(name) and platform in name for name in spares)
    assert reserve_id("/srv/other/.data/run") != platform  # two platforms on one engine
    assert reserve_network(platform).labels == {"dev.slipway.reserve": platform}
    assert reserve_holder_names(platform, 0) == []
    assert is_holder(holder_name("slipway-web-r1-bbbb"))
    assert not is_holder("slipway-web-r1-bbbb")
