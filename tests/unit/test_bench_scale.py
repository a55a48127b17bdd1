"""bench.scale's pure parts: what it reads from /proc and how it counts CPU at rest."""

from __future__ import annotations

import pytest

from bench.scale import (
    Level,
    Proc,
    Snapshot,
    Stat,
    category,
    containers_by_kind,
    cpu_ticks,
    descendants,
    memory,
    most_overtaken,
    parse_levels,
    parse_setting,
    parse_smaps_rollup,
    parse_stat,
    phases_of,
    render,
)

SMAPS_ROLLUP = """55d0c0a00000-7ffd4a5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:              120520 kB
Pss:               98304 kB
Pss_Anon:          80000 kB
Pss_File:          18304 kB
Shared_Clean:      30000 kB
Swap:                  0 kB
SwapPss:               0 kB
"""


def stat_line(comm: str, ppid: int, utime: int, stime: int, cutime: int, cstime: int) -> str:
    after = [
        "S",
        str(ppid),
        *["0"] * 9,
        str(utime),
        str(stime),
        str(cutime),
        str(cstime),
        "20",
        "0",
        "4",
        "0",
        "987654",  # starttime, field 22
        "123456",
    ]
    return f"4321 ({comm}) " + " ".join(after) + "\n"


def test_pss_and_rss_are_read_in_bytes() -> None:
    assert parse_smaps_rollup(SMAPS_ROLLUP) == (98304 * 1024, 120520 * 1024)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    stat = parse_stat(stat_line("postgres: (walwriter) x", 17, 100, 20, 7, 3))
    assert stat == Stat(ppid=17, ticks=120, child_ticks=10, start_ticks=987654)


@pytest.mark.parametrize(
    ("argv", "supervisor", "in_postgres", "expected"),
    [
        (["/venv/bin/python", "-m", "app.cli", "up"], True, False, "supervisor"),
        (["/venv/bin/python", "-m", "app.cli", "api"], False, False, "api"),
        (["/venv/bin/python", "-m", "app.cli", "worker"], False, False, "worker"),
        (["postgres: checkpointer"], False, True, "postgres"),
        (["/usr/bin/valkey-server", "127.0.0.1:6380"], False, False, "valkey"),
        (["/usr/bin/redis-server", "*:0"], False, False, "valkey"),
        (["/data/bin/caddy", "run", "--config", "x"], False, False, "caddy"),
        (["/usr/bin/docker", "buildx", "build"], False, False, "other"),
    ],
)
def test_processes_are_named_after_the_part_they_are(
    argv: list[str], supervisor: bool, in_postgres: bool, expected: str
) -> None:
    assert category(argv, supervisor=supervisor, in_postgres=in_postgres) == expected


def test_descendants_follow_the_tree_and_ignore_the_rest() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 30: 999}
    assert descendants(parents, [10]) == {10, 11, 12, 13}
    assert descendants(parents, [10, 30, 404]) == {10, 11, 12, 13, 30}


def proc(pid: int, name: str, ticks: int, child_ticks: int = 0, start: int = 0) -> Proc:
    return Proc(pid, name, Stat(1, ticks, child_ticks, start), pss=pid * 1024, rss=pid * 2048)


def test_cpu_counts_deltas_newborns_and_reaped_children_once() -> None:
    first = Snapshot(
        at_ticks=1000,
        procs={
            1: proc(1, "worker", 500, child_ticks=40),
            2: proc(2, "postgres", 300),
            3: proc(3, "other", 50),  # dies in the window: its parent (1) reaps it
            4: proc(4, "api", 900, start=10),  # exits; pid 4 is reused by a newborn
        },
    )
    last = Snapshot(
        at_ticks=3000,
        procs={
            1: proc(1, "worker", 560, child_ticks=95),  # +60 own, +55 reaped (pid 3's 55)
            2: proc(2, "postgres", 310),
            4: proc(4, "postgres", 7, start=2000),  # born in the window
            5: proc(5, "caddy", 9999, start=500),  # seen only at the end, born before: unknown
        },
    )
    spent = cpu_ticks(first, last)
    assert spent["worker"] == 115
    assert spent["postgres"] == 17
    assert spent["api"] == 0
    assert spent["caddy"] == 0


def test_memory_is_the_mean_of_the_samples_per_part() -> None:
    snapshots = [
        Snapshot(0, {1: proc(1, "worker", 0), 2: proc(2, "postgres", 0)}),
        Snapshot(1, {1: proc(1, "worker", 0), 3: proc(3, "postgres", 0)}),
    ]
    result = memory(snapshots)
    assert result["worker"] == (1024, 2048)
    assert result["postgres"] == (2.5 * 1024, 5 * 1024)
    assert result["caddy"] == (0, 0)


def test_levels_start_at_one_and_grow() -> None:
    assert parse_levels("1,100") == (1, 100)
    for bad in ("10,100", "1,10,5", "1,1", "", "1,1000"):
        with pytest.raises(ValueError):
            parse_levels(bad)


def level(
    deployments: int, pss_mib: float, cpu: float, push: float, p50: float, p99: float
) -> Level:
    parts = ("supervisor", "api", "worker", "postgres", "valkey", "caddy", "other")
    result = Level(
        deployments,
        pss={name: 0.0 for name in parts},
        rss={name: 0.0 for name in parts},
        cpu={name: 0.0 for name in parts},
        pushes=[push],
        router_p50_ms=p50,
        router_p99_ms=p99,
        apps=deployments,
        holders=4 * deployments,
        burst=deployments - 1 if deployments > 1 else 1,
        burst_seconds=3.0,
    )
    result.pss["worker"] = pss_mib * 1024 * 1024
    result.cpu["worker"] = cpu
    return result


def test_the_table_judges_each_goal_against_level_one() -> None:
    text = render(
        [level(1, 150, 1.0, 2.0, 3.0, 9.0), level(100, 400, 30.0, 2.1, 3.3, 20.0)],
        ["machine: test"],
        "python -m bench.scale --levels 1,100",
    )
    assert "| platform PSS (RSS) at rest" in text
    assert "- 1: PSS at rest <= 200 MiB: 150 MiB -> met" in text.replace("-   1", "- 1")
    goals = {line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("- 100")}
    assert "PSS at rest <= 300 MiB: 400 MiB -> NOT met" in goals
    assert "CPU at rest <= 2 % of a core: 30.0 % -> NOT met" in goals
    assert "push <= 1.1x level 1: 1.05x -> met" in goals
    assert "router p50 and p99 <= 1.2x level 1: 1.10x / 2.22x -> NOT met" in goals
    assert "containers of its own <= replicas + 4: 400 holders for 100 replicas -> NOT met" in goals
    assert "99 pushes at once all live: 0 failed, 3 s -> met" in goals


def test_containers_are_those_of_this_runs_deployments_and_reserve_by_kind() -> None:
    listing = "\n".join(
        [
            "slipway-d1-r1\td1\t\t",
            "slipway-d1-r1-holder\td1\t\t",
            "slipway-net-d1-spare0-holder\td1\t\t",
            "slipway-redis-d1\td1\tredis\t",
            "slipway-reserve-abc-0-holder\t\t\tabc",
            "slipway-reserve-other-0-holder\t\t\tother",  # another platform's reserve
            "slipway-d9-r1\td9\t\t",  # another run's deployment
            "unrelated",
        ]
    )
    assert containers_by_kind(listing, {"d1"}, "abc") == (1, 3, 1)
    assert containers_by_kind(listing, {"d1"}, None) == (1, 2, 1)


def test_builds_in_order_of_arrival_are_overtaken_by_none() -> None:
    assert most_overtaken([1.0, 2.0, 3.0, 4.0]) == 0
    assert most_overtaken([]) == 0


def test_builds_admitted_together_overtake_within_the_slots() -> None:
    # Two slots: the second push's build started a hair before the first's.
    assert most_overtaken([1.01, 1.0, 2.01, 2.0]) == 1


def test_a_push_that_newcomers_jump_is_overtaken_by_each_of_them() -> None:
    # The first push waited while three later ones were built (a LIFO queue would do this).
    assert most_overtaken([9.0, 1.0, 2.0, 3.0]) == 3


def test_a_build_that_never_started_counts_for_nothing() -> None:
    assert most_overtaken([None, 1.0, 2.0]) == 0
    assert most_overtaken([2.0, None, 1.0]) == 1


def test_a_push_is_cut_at_its_revisions_timestamps_and_a_missing_one_is_left_out() -> None:
    base = 1_796_630_000.0  # 2026-12-07T07:53:20Z
    revision = {
        "created_at": "2026-12-07T07:53:20.050000Z",
        "build_started_at": "2026-12-07T07:53:20.100000",  # stored without a zone: UTC
        "build_finished_at": "2026-12-07T07:53:20.250000+00:00",
        "deploy_started_at": "2026-12-07T07:53:20.260000Z",
        "database_ready_at": None,
        "replica_started_at": "2026-12-07T07:53:20.300000Z",
        "healthy_at": "2026-12-07T07:53:20.340000Z",
        "live_at": "2026-12-07T07:53:20.350000Z",
    }
    phases = phases_of(revision, sent=base, seen=base + 0.4)
    assert {k: round(v * 1000) for k, v in phases.items()} == {
        "webhook to revision": 50,
        "queued": 50,
        "build": 150,
        "to deploy": 10,
        "health check": 40,
        "route switch": 10,
        "first 200 after live": 50,
    }


def test_a_setting_for_the_run_is_a_known_one() -> None:
    """`--setting metrics=false` compares a run without the sampler with one with it."""
    assert parse_setting("metrics=false") == ("metrics", "false")
    assert parse_setting("SLIPWAY_METRICS=false") == ("metrics", "false")
    for bad in ("metrics", "no_such_setting=1"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_setting(bad)
