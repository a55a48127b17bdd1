"""The autoscaler's decision: load in, replica counts out, each with its reason.

A `Deployment` below plays the reconciler: it ticks every 2 s, samples the load it is given and
runs at once whatever count was decided, so each test reads as "this load for this long".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from app.kernel.settings import Settings
from app.replicas.autoscaler import (
    MAX_DECISIONS,
    AutoscaleDefaults,
    Decision,
    Reason,
    Sample,
    ScalerState,
    ScalingPolicy,
    autoscale_defaults,
    decide,
    record,
    replicas_for,
    scaling_policy,
)
from manifests.config import ScaleConfig
from manifests.containers import DeploymentType

TICK = 2.0
START = 1_700_000_000.0
DEFAULTS = AutoscaleDefaults(
    target_concurrency=10.0,
    max_replicas=10,
    stable_window_seconds=60.0,
    panic_window_seconds=6.0,
    scale_down_delay_seconds=1800.0,
)
PRODUCTION = scaling_policy(DeploymentType.production, DEFAULTS, None)
DEVELOPMENT = scaling_policy(DeploymentType.development, DEFAULTS, None)


@dataclass
class Deployment:
    """A deployment under a perfect reconciler: the decided count is ready by the next tick."""

    policy: ScalingPolicy = PRODUCTION
    replicas: int = 1
    now: float = START
    state: ScalerState = field(default_factory=ScalerState)
    decisions: list[Decision] = field(default_factory=list)

    def tick(self, concurrency: float | None) -> Decision:
        sample = None if concurrency is None else Sample(self.now, concurrency, self.replicas)
        self.state, decision = decide(
            self.policy, self.state, sample, actual=self.replicas, now=self.now
        )
        self.decisions.append(decision)
        self.replicas = decision.desired
        self.now += TICK
        return decision

    def run(self, concurrency: float | None, seconds: float) -> list[Decision]:
        """Ticks for `seconds` at this load; the decisions made meanwhile."""
        return [self.tick(concurrency) for _ in range(round(seconds / TICK))]

    def settled(self, concurrency: float) -> Deployment:
        """Long enough at this load that every window and the delay has forgotten the past."""
        self.run(concurrency, self.policy.scale_down_delay_seconds + 120)
        return self


def counts(decisions: list[Decision]) -> list[int]:
    return [d.desired for d in decisions]


def changes(decisions: list[Decision]) -> list[int]:
    """The counts in the order they were run, each once per run of ticks."""
    out: list[int] = []
    for count in counts(decisions):
        if not out or out[-1] != count:
            out.append(count)
    return out


# The scenario: ~35 in-flight requests, then quiet.


def test_35_concurrent_requests_are_carried_by_4_replicas() -> None:
    deployment = Deployment()
    deployment.run(5, 120)
    assert deployment.replicas == 1

    decisions = deployment.run(35, 120)

    assert deployment.replicas == 4
    assert max(counts(decisions)) == 4
    assert decisions[-1].stable_concurrency == pytest.approx(35)
    assert {d.reason for d in decisions} <= {Reason.scale_up, Reason.panic, Reason.steady}


def test_a_load_growing_slowly_to_35_is_followed_by_scale_ups_alone() -> None:
    deployment = Deployment().settled(5)

    decisions = [deployment.tick(5 + 30 * i / 150) for i in range(150)]
    decisions += deployment.run(35, PRODUCTION.stable_window_seconds)

    assert deployment.replicas == 4
    assert changes(decisions) == [1, 2, 3, 4]
    assert {d.reason for d in decisions} == {Reason.scale_up, Reason.steady}


def test_when_the_load_drops_4_replicas_stay_for_the_whole_delay_then_go() -> None:
    deployment = Deployment()
    deployment.run(35, 300)
    assert deployment.replicas == 4
    dropped_at = deployment.now

    during = deployment.run(0, PRODUCTION.scale_down_delay_seconds)

    assert set(counts(during)) == {4}
    assert during[-1].reason is Reason.waiting_for_delay
    assert during[-1].stable_concurrency == 0

    after = deployment.run(0, PRODUCTION.stable_window_seconds)

    assert deployment.replicas == 1
    assert changes(after) == [4, 3, 2, 1], "down without ever adding one back"
    first_lower = next(d for d in after if d.desired < 4)
    assert first_lower.at - dropped_at >= PRODUCTION.scale_down_delay_seconds
    assert first_lower.reason is Reason.scale_down
    assert after[-1].reason is Reason.steady


def test_after_the_delay_the_count_falls_to_the_highest_asked_during_it() -> None:
    """Each step after the delay lands where the stable window stood one delay earlier: a
    gradual fall of the load comes down as gradually, never one replica per delay."""
    deployment = Deployment()
    deployment.run(35, 300)
    deployment.run(0, PRODUCTION.scale_down_delay_seconds + PRODUCTION.stable_window_seconds)

    delay = PRODUCTION.scale_down_delay_seconds
    asked = {
        d.at: max(1, replicas_for(d.stable_concurrency or 0, 10)) for d in deployment.decisions
    }
    for decision in deployment.decisions:
        window = [count for at, count in asked.items() if decision.at - delay < at <= decision.at]
        assert decision.desired == max(window)


def test_a_lower_count_asked_for_the_whole_delay_comes_in_one_decision() -> None:
    """A burst took 1 replica to 4; only 1 was asked for after it, so 4 -> 1 at once."""
    deployment = Deployment().settled(5)
    deployment.run(40, 6)
    assert deployment.replicas == 4
    burst_ended = deployment.now

    quiet = deployment.run(
        5, PRODUCTION.stable_window_seconds + PRODUCTION.scale_down_delay_seconds + 60
    )

    assert deployment.replicas == 1
    assert all(replicas_for(d.stable_concurrency or 0, 10) <= 1 for d in quiet)
    [step] = [d for d in quiet if d.desired != d.actual]
    assert (step.actual, step.desired, step.reason) == (4, 1, Reason.scale_down)
    assert step.at - burst_ended >= PRODUCTION.scale_down_delay_seconds


def test_demand_rising_again_restarts_the_delay() -> None:
    deployment = Deployment()
    deployment.run(35, 300)
    deployment.run(0, PRODUCTION.scale_down_delay_seconds - 100)
    deployment.run(35, 60)
    returned_at = deployment.now

    held = deployment.run(0, PRODUCTION.scale_down_delay_seconds)

    assert set(counts(held)) == {4}, "the delay counts from the last time 4 were needed"
    assert held[-1].at - returned_at >= PRODUCTION.scale_down_delay_seconds - TICK
    deployment.run(0, PRODUCTION.stable_window_seconds)
    assert deployment.replicas == 1


def test_a_smaller_rise_during_the_delay_is_kept_for_a_delay_of_its_own() -> None:
    deployment = Deployment()
    deployment.run(35, 300)
    deployment.run(0, 600)
    deployment.run(25, 120)  # asks for 3: fewer than run, so no scale-up
    assert deployment.replicas == 4
    deployment.run(0, PRODUCTION.scale_down_delay_seconds - 600)

    deployment.run(0, PRODUCTION.stable_window_seconds)

    assert deployment.replicas == 3, "4 are no longer needed, 3 were within the delay"
    deployment.run(0, 600 + PRODUCTION.stable_window_seconds)
    assert deployment.replicas == 1


def test_with_no_delay_a_lower_count_comes_as_soon_as_it_is_asked() -> None:
    deployment = Deployment(policy=replace(PRODUCTION, scale_down_delay_seconds=0))
    deployment.run(35, 120)

    deployment.run(0, PRODUCTION.stable_window_seconds)

    assert deployment.replicas == 1


# Panic: a burst is met at once and not let go until it is in the stable average.


def test_a_burst_to_twice_the_capacity_scales_at_once_to_what_the_panic_window_asks() -> None:
    """The newest sample counts in full: the first tick that sees 60 in flight asks for 6, not
    for what the 6 s window's average (23, then 42, then 60) would."""
    deployment = Deployment().settled(5)

    burst = deployment.run(60, 6)

    assert [d.desired for d in burst] == [6, 6, 6]
    for decision in burst:
        assert decision.panic_concurrency == 60
        assert decision.stable_concurrency is not None
        assert decision.desired == replicas_for(decision.panic_concurrency, 10)
        assert replicas_for(decision.stable_concurrency, 10) <= 2, "the stable window lags"
        assert decision.reason is Reason.panic
    assert deployment.state.panic is not None


def test_a_load_below_twice_the_capacity_is_no_panic() -> None:
    deployment = Deployment().settled(5)

    decisions = deployment.run(19, 6)

    assert deployment.state.panic is None
    assert Reason.panic not in {d.reason for d in decisions}


def test_nothing_is_removed_while_in_panic() -> None:
    """No scale-down delay here, so only the panic keeps the replicas."""
    policy = replace(PRODUCTION, scale_down_delay_seconds=0)
    deployment = Deployment(policy=policy).settled(5)
    deployment.run(60, 6)
    assert deployment.replicas == 6
    panic = deployment.state.panic
    assert panic is not None

    quiet = deployment.run(5, panic.last_burst + policy.stable_window_seconds - deployment.now)

    assert set(counts(quiet)) == {6}
    assert {d.reason for d in quiet} == {Reason.panic}
    assert deployment.state.panic == panic
    assert deployment.tick(5).desired == 1


def test_the_panic_ends_once_a_stable_window_passed_without_a_burst() -> None:
    policy = replace(PRODUCTION, scale_down_delay_seconds=0)
    deployment = Deployment(policy=policy).settled(5)
    deployment.run(60, 6)
    deployment.run(5, policy.stable_window_seconds + TICK)

    assert deployment.state.panic is None
    assert deployment.replicas == 1
    assert deployment.decisions[-1].reason is Reason.steady
    assert Reason.scale_down in {d.reason for d in deployment.decisions[-5:]}


def test_a_burst_that_goes_on_keeps_the_panic_and_it_grows_with_the_burst() -> None:
    """A panic window of one tick, so each panic average is that tick's sample."""
    policy = replace(PRODUCTION, scale_down_delay_seconds=0, panic_window_seconds=TICK)
    deployment = Deployment(policy=policy).settled(5)
    deployment.tick(30)  # 30 >= 2 x 1 replica x 10
    assert deployment.replicas == 3
    panic = deployment.state.panic
    assert panic is not None

    deployment.tick(80)  # 80 >= 2 x 3 replicas x 10: still a burst, a bigger one

    assert deployment.replicas == 8
    assert deployment.state.panic is not None
    assert deployment.state.panic.since == panic.since
    assert deployment.state.panic.last_burst > panic.last_burst


# Development deployments and the policy's bounds.


@pytest.mark.parametrize("concurrency", [0, 35, 1000, 1e6])
def test_a_development_deployment_runs_one_replica_whatever_the_load(concurrency: float) -> None:
    deployment = Deployment(policy=DEVELOPMENT)

    decisions = deployment.run(concurrency, 300)

    assert set(counts(decisions)) == {1}
    assert deployment.state.panic is None
    assert {d.reason for d in decisions} == {Reason.steady}


def test_a_development_deployment_with_two_replicas_loses_one_at_once() -> None:
    deployment = Deployment(policy=DEVELOPMENT, replicas=2)

    decision = deployment.tick(500)

    assert (decision.desired, decision.reason) == (1, Reason.scale_down)


def test_no_load_keeps_the_minimum() -> None:
    policy = replace(PRODUCTION, min_replicas=2)

    decisions = Deployment(policy=policy, replicas=2).run(0, 300)

    assert set(counts(decisions)) == {2}
    assert decisions[-1].stable_concurrency == 0


def test_the_most_replicas_is_max_however_heavy_the_load() -> None:
    deployment = Deployment()

    deployment.run(10_000, 120)

    assert deployment.replicas == PRODUCTION.max_replicas


def test_a_max_lowered_below_what_runs_scales_down_at_once() -> None:
    deployment = Deployment()
    deployment.run(80, 120)
    assert deployment.replicas == 8

    deployment.policy = replace(PRODUCTION, max_replicas=3)
    decision = deployment.tick(80)

    assert (decision.actual, decision.desired, decision.reason) == (8, 3, Reason.scale_down)


def test_a_min_raised_above_what_runs_scales_up() -> None:
    deployment = Deployment().settled(0)

    deployment.policy = replace(PRODUCTION, min_replicas=3)
    decision = deployment.tick(0)

    assert (decision.actual, decision.desired, decision.reason) == (1, 3, Reason.scale_up)


def test_when_every_replica_died_the_count_asked_for_is_brought_back() -> None:
    deployment = Deployment()
    deployment.run(35, 120)
    deployment.replicas = 0

    decision = deployment.tick(0)

    assert (decision.actual, decision.desired, decision.reason) == (0, 4, Reason.scale_up)


def test_with_no_replica_ready_a_burst_is_measured_against_one_replicas_capacity() -> None:
    decision = Deployment(replicas=0).tick(25)

    assert decision.desired == 3
    assert decision.reason is Reason.scale_up


# Samples and windows.


def test_without_any_sample_what_runs_is_held() -> None:
    deployment = Deployment(replicas=3)

    decision = deployment.tick(None)

    assert (decision.desired, decision.reason) == (3, Reason.no_samples)
    assert decision.stable_concurrency is None and decision.panic_concurrency is None


def test_without_any_sample_and_no_replica_the_minimum_is_started() -> None:
    decision = Deployment(replicas=0).tick(None)

    assert (decision.desired, decision.reason) == (1, Reason.scale_up)


def test_missed_samples_do_not_drop_replicas_during_a_scale_down() -> None:
    deployment = Deployment()
    deployment.run(35, 120)

    outage = deployment.run(None, 120)

    assert set(counts(outage)) == {4}
    assert outage[-1].reason is Reason.no_samples


def test_the_stable_average_is_over_the_samples_in_its_window_only() -> None:
    deployment = Deployment()
    deployment.run(100, 60)
    deployment.run(10, 60)

    decision = deployment.tick(10)

    assert decision.stable_concurrency == pytest.approx(10)
    assert decision.panic_concurrency == pytest.approx(10)


def test_with_few_samples_the_average_is_of_those() -> None:
    deployment = Deployment()

    first = deployment.tick(20)
    second = deployment.tick(40)

    assert first.stable_concurrency == pytest.approx(20)
    assert second.stable_concurrency == pytest.approx(30)


def test_exactly_the_target_per_replica_needs_no_extra_replica() -> None:
    assert sum([0.1] * 200) > 20, "a float sum a little over 20"
    assert replicas_for(sum([0.1] * 200), 10) == 2
    assert replicas_for(20.01, 10) == 3
    assert replicas_for(0, 10) == 0


def test_a_clock_set_back_holds_nothing_longer_than_a_window() -> None:
    deployment = Deployment()
    deployment.run(80, 120)
    deployment.now -= 3600

    deployment.run(0, PRODUCTION.scale_down_delay_seconds + PRODUCTION.stable_window_seconds)

    assert deployment.replicas == 1
    assert all(s.at <= deployment.now for s in deployment.state.samples)


def test_the_state_stays_small_over_10000_ticks() -> None:
    deployment = Deployment()
    loads = [0, 5, 35, 80, 200, 12, 0, 60]
    longest = 0
    for i in range(10_000):
        deployment.tick(loads[(i // 97) % len(loads)] + (i % 7))
        longest = max(longest, len(deployment.state.to_json()))

    state = deployment.state
    assert len(state.samples) <= PRODUCTION.stable_window_seconds / TICK
    assert len(state.peaks) <= PRODUCTION.max_replicas
    assert len(state.decisions) == MAX_DECISIONS
    assert longest < 16_000
    assert len({d.reason for d in deployment.decisions}) >= 4


# The history.


def test_a_run_of_identical_decisions_is_kept_as_its_first_and_latest() -> None:
    deployment = Deployment()
    deployment.run(35, 120)
    deployment.run(0, 300)

    history = deployment.state.decisions

    waiting = [d for d in history if d.reason is Reason.waiting_for_delay]
    assert len(waiting) == 2
    assert waiting[-1].at - waiting[0].at == pytest.approx(300 - 10, abs=2 * TICK)
    assert history[-1] == deployment.decisions[-1]


def test_the_reconciler_records_a_replica_that_died() -> None:
    deployment = Deployment()
    deployment.run(35, 60)

    died = Decision(deployment.now, None, None, desired=4, actual=3, reason=Reason.replica_died)
    deployment.state = record(deployment.state, died)
    deployment.replicas = 3
    next_tick = deployment.tick(35)

    assert deployment.state.decisions[-2:] == (died, next_tick)
    assert (next_tick.desired, next_tick.reason) == (4, Reason.scale_up)


# Storing the state in one TEXT column.


def test_the_state_survives_json() -> None:
    deployment = Deployment()
    deployment.run(5, 60)
    deployment.run(60, 6)
    state = deployment.state
    assert state.panic is not None and state.peaks and state.samples

    text = state.to_json()

    assert ScalerState.from_json(text) == state
    assert json.loads(text)["decisions"][-1]["reason"] in {r.value for r in Reason}


def test_a_restored_state_decides_as_the_original_would() -> None:
    kept, restored = Deployment(), Deployment()
    for load in [5] * 30 + [60] * 3 + [5] * 40:
        kept.tick(load)
        restored.state = ScalerState.from_json(restored.state.to_json())
        restored.tick(load)

    assert counts(restored.decisions) == counts(kept.decisions)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[]",
        "null",
        '{"samples": 3}',
        '{"samples": [{"at": 1, "concurrency": -1, "replicas": 1}]}',
        '{"samples": [{"at": NaN, "concurrency": 1, "replicas": 1}]}',
        '{"decisions": [{"at": 1, "stable_concurrency": null, "panic_concurrency": null, '
        '"desired": 1, "actual": 1, "reason": "bored"}]}',
        '{"peaks": [{"at": 1, "replicas": -4}]}',
        b"\xff\xfe",
    ],
)
def test_an_unreadable_state_starts_fresh(text: str | bytes | None) -> None:
    assert ScalerState.from_json(text) == ScalerState()


def test_a_fresh_state_decides_from_the_sample_alone() -> None:
    state = ScalerState.from_json("garbage")

    _, decision = decide(PRODUCTION, state, Sample(START, 35, 1), actual=1, now=START)

    assert decision.desired == 4


# The policy: platform settings narrowed by the repository's [scale].


def test_a_production_deployment_scales_by_the_platform_settings() -> None:
    policy = scaling_policy(DeploymentType.production, DEFAULTS, None)

    assert (policy.min_replicas, policy.max_replicas, policy.target_concurrency) == (1, 10, 10)
    assert (policy.stable_window_seconds, policy.panic_window_seconds) == (60, 6)
    assert policy.scale_down_delay_seconds == 1800
    assert policy.panic_threshold == 2
    assert policy.notes == ()


def test_a_repositorys_scale_narrows_the_platform_settings() -> None:
    scale = ScaleConfig(min=2, max=5, target=25)

    policy = scaling_policy(DeploymentType.production, DEFAULTS, scale)

    assert (policy.min_replicas, policy.max_replicas, policy.target_concurrency) == (2, 5, 25)
    assert policy.notes == ()


def test_a_scale_with_some_keys_leaves_the_others_to_the_platform() -> None:
    policy = scaling_policy(DeploymentType.production, DEFAULTS, ScaleConfig(min=3))

    assert (policy.min_replicas, policy.max_replicas, policy.target_concurrency) == (3, 10, 10)


def test_more_replicas_than_the_platform_allows_get_its_most_and_a_note() -> None:
    policy = scaling_policy(DeploymentType.production, DEFAULTS, ScaleConfig(min=12, max=20))

    assert (policy.min_replicas, policy.max_replicas) == (10, 10)
    assert len(policy.notes) == 2
    assert "[scale] max = 20" in policy.notes[0]
    assert "SLIPWAY_AUTOSCALE_MAX_REPLICAS = 10" in policy.notes[0]
    assert "[scale] min = 12" in policy.notes[1]


def test_a_development_deployment_ignores_scale_and_says_so() -> None:
    policy = scaling_policy(DeploymentType.development, DEFAULTS, ScaleConfig(min=3, max=6))

    assert (policy.min_replicas, policy.max_replicas) == (1, 1)
    assert policy.fixed
    assert "production" in policy.notes[0]
    assert scaling_policy(DeploymentType.development, DEFAULTS, ScaleConfig()).notes == ()


def test_the_narrowed_policy_decides_with_its_own_target() -> None:
    policy = scaling_policy(DeploymentType.production, DEFAULTS, ScaleConfig(max=3, target=5))

    deployment = Deployment(policy=policy)
    deployment.run(12, 120)
    assert deployment.replicas == 3  # 12 / 5 asks for 3
    deployment.run(100, 120)
    assert deployment.replicas == 3


def test_the_defaults_are_the_settings() -> None:
    settings = Settings.model_construct(
        autoscale_target_concurrency=7.5,
        autoscale_max_replicas=4,
        autoscale_stable_window_seconds=30.0,
        autoscale_panic_window_seconds=3.0,
        autoscale_scale_down_delay_seconds=90.0,
    )

    assert autoscale_defaults(settings) == AutoscaleDefaults(7.5, 4, 30.0, 3.0, 90.0)


@pytest.mark.parametrize(
    "nonsense",
    [
        {"min_replicas": 0},
        {"min_replicas": 11},
        {"target_concurrency": 0},
        {"target_concurrency": math.inf},
        {"stable_window_seconds": 0},
        {"panic_window_seconds": -1},
        {"scale_down_delay_seconds": -1},
        {"panic_threshold": 0.5},
    ],
)
def test_a_nonsense_policy_is_refused(nonsense: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(PRODUCTION, **nonsense)


def test_a_negative_sample_or_actual_is_refused() -> None:
    with pytest.raises(ValueError):
        Sample(START, -1, 1)
    with pytest.raises(ValueError):
        decide(PRODUCTION, ScalerState(), None, actual=-1, now=START)
