"""How many replicas a deployment should run, decided from the requests it is serving.

Pure code: the reconciler samples the in-flight requests of a deployment's ready replicas every
tick (SLIPWAY_AUTOSCALE_TICK_SECONDS) in which it has requests in flight, remembers load or runs
more than one replica (a quiet one is sampled at each resync), passes the sample, the time and the
state kept from the last sample to `decide`, runs the count it returns and stores the new state
(`ScalerState.to_json`) unless nothing changed.
Nothing here reads a clock, the database or the network.

The rules are Knative's Pod Autoscaler's, in replicas of a deployment:

- **Stable**: the count asked for is ceil(average concurrency over the stable window / target),
  within the policy's [min, max]. A higher count is run at once.
- **Panic**: when the average over the short panic window, or the newest sample alone, reaches
  `panic_threshold` (2) times the current capacity (ready replicas x target), the count jumps at
  once to what that asks for (the newest sample counts in full so a burst is acted on at the
  first tick that sees it, where Knative waits for the window's average to catch up), and
  nothing is removed while the panic lasts. It ends once a whole stable window has passed
  without the panic condition, by which time the burst is in the stable average.
- **Scale-down delay**: the count run is the highest count asked for during the last
  `scale_down_delay_seconds`. So a lower count takes effect only once it has been all that was
  asked for the whole delay, and then in one decision, as far down as the delay allows (4 to 1 if
  only 1 was asked for during it), never one replica per delay. A load that falls off gradually
  steps down the same way after the delay: the stable average took a while to fall, and each
  count it passed through was asked for in its time. Demand rising again restarts the delay.
- **Policy bounds apply at once**: a max lowered below what runs scales down without waiting, a
  min raised scales up, and a development deployment always has exactly one replica.
- **Run queue** (LangGraph deployments on the `pg` runtime): a graph run in the background
  (`runs.create`, crons) holds no request while it works, so the count asked for is the larger
  of the concurrency's and the queue's, ceil((pending + running runs) / (N_JOBS_PER_WORKER x
  0.75)) as LangGraph's own platform counts it: a replica's queue workers kept three-quarters
  busy. The queue is a level, read fresh each tick, so its count is the newest sample's (not a
  window's average); the scale-down delay then holds it like any other count. A tick whose
  queue could not be read goes by concurrency alone (the delay still holds what the queue asked
  for before).

Every decision says why (`Reason`); the state keeps the recent samples and a bounded history of
decisions for the API.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from manifests.containers import DeploymentType

if TYPE_CHECKING:
    from app.kernel.settings import Settings
    from manifests.config import ScaleConfig

MAX_DECISIONS = 50
"""Decisions kept in the state: a run of identical ones is kept as its first and its latest, so
50 entries span hours of a quiet deployment and every change of a busy one's last minutes."""
MAX_SAMPLES = 2000
"""A stable window of over an hour at a 2 s tick would keep more; the newest are kept, so the
stored state stays small whatever SLIPWAY_AUTOSCALE_STABLE_WINDOW_SECONDS says."""
CEIL_TOLERANCE = 1e-9
"""Averages are float sums, so 20 requests at a target of 10 may come out as 2.0000000000000004
replicas; that is 2, not 3."""
JOBS_PER_WORKER_ENV = "N_JOBS_PER_WORKER"
DEFAULT_JOBS_PER_WORKER = 10
"""langgraph-api's default: the queue workers one replica runs."""
QUEUE_UTILISATION = 0.75
"""The share of a replica's queue workers the count aims to keep busy (LangGraph's platform)."""
MAX_JOBS_PER_WORKER = 10_000


class Reason(enum.StrEnum):
    """Why a decision chose its count, worded for the deployment's scaling history."""

    scale_up = "scale-up"
    panic = "panic"
    scale_down = "scale-down"
    waiting_for_delay = "waiting for delay"
    replica_died = "replica died"
    """Recorded by the reconciler (`record`), never by `decide`."""
    steady = "steady"
    no_samples = "no samples"
    """No sample in the stable window (Caddy could not be asked): the count is held."""


@dataclass(frozen=True)
class AutoscaleDefaults:
    """The platform's SLIPWAY_AUTOSCALE_* settings, which a repository's [scale] may narrow."""

    target_concurrency: float
    max_replicas: int
    stable_window_seconds: float
    panic_window_seconds: float
    scale_down_delay_seconds: float


def autoscale_defaults(settings: Settings) -> AutoscaleDefaults:
    return AutoscaleDefaults(
        target_concurrency=settings.autoscale_target_concurrency,
        max_replicas=settings.autoscale_max_replicas,
        stable_window_seconds=settings.autoscale_stable_window_seconds,
        panic_window_seconds=settings.autoscale_panic_window_seconds,
        scale_down_delay_seconds=settings.autoscale_scale_down_delay_seconds,
    )


@dataclass(frozen=True)
class ScalingPolicy:
    """The bounds and windows one deployment scales by; times in seconds."""

    min_replicas: int
    max_replicas: int
    target_concurrency: float
    """In-flight requests one replica is meant to carry."""
    stable_window_seconds: float
    panic_window_seconds: float
    scale_down_delay_seconds: float
    panic_threshold: float = 2.0
    """Panic when the panic window's average reaches this many times the current capacity."""
    jobs_per_worker: int | None = None
    """Runs one replica works at once, for a deployment scaled on its run queue too (a
    LangGraph Server's N_JOBS_PER_WORKER); None: requests only."""
    notes: tuple[str, ...] = ()
    """Where the repository's [scale] asked for more than the platform allows, and what is used
    instead: for the build's check run or the API, so a clamp is never silent."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, not {self}")
        if not (0 < self.target_concurrency < math.inf):
            raise ValueError(f"target_concurrency must be positive, not {self.target_concurrency}")
        if self.stable_window_seconds <= 0 or self.panic_window_seconds <= 0:
            raise ValueError("the stable and panic windows must be positive")
        if self.scale_down_delay_seconds < 0:
            raise ValueError("scale_down_delay_seconds must not be negative")
        if self.panic_threshold < 1:
            raise ValueError("a panic_threshold below 1 would panic at less than capacity")
        if self.jobs_per_worker is not None and self.jobs_per_worker < 1:
            raise ValueError(f"jobs_per_worker must be positive, not {self.jobs_per_worker}")

    @property
    def fixed(self) -> bool:
        """Nothing to decide: the count is min = max (a development deployment's 1)."""
        return self.min_replicas == self.max_replicas

    def bounded(self, replicas: int) -> int:
        return min(max(replicas, self.min_replicas), self.max_replicas)


def scaling_policy(
    deployment_type: DeploymentType,
    defaults: AutoscaleDefaults,
    scale: ScaleConfig | None,
    *,
    run_queue_env: Mapping[str, str] | None = None,
) -> ScalingPolicy:
    """The policy for a deployment: the platform's settings narrowed by the image's [scale].

    A repository asking for more replicas than SLIPWAY_AUTOSCALE_MAX_REPLICAS gets the platform's
    most, with a note saying so; a development deployment (and so a preview) runs one replica
    whatever its [scale] says, which applies to production only. `run_queue_env` is the live
    revision's env for a deployment whose run queue can be read (a LangGraph Server on the `pg`
    runtime): its N_JOBS_PER_WORKER sets how many runs a replica takes.
    """
    windows = (
        defaults.stable_window_seconds,
        defaults.panic_window_seconds,
        defaults.scale_down_delay_seconds,
    )
    asked = scale is not None and any(v is not None for v in (scale.min, scale.max, scale.target))
    if deployment_type is DeploymentType.development:
        notes = (
            ("[scale] applies to production deployments; a development one runs 1 replica",)
            if asked
            else ()
        )
        return ScalingPolicy(1, 1, defaults.target_concurrency, *windows, notes=notes)
    platform_max = defaults.max_replicas
    notes_list: list[str] = []
    max_replicas = platform_max
    min_replicas = 1
    target = defaults.target_concurrency
    jobs: int | None = None
    if run_queue_env is not None:
        jobs, note = jobs_per_worker(run_queue_env)
        if note:
            notes_list.append(note)
    if scale is not None:
        if scale.max is not None:
            max_replicas = min(scale.max, platform_max)
            if scale.max > platform_max:
                notes_list.append(_over_platform_max("max", scale.max, platform_max))
        if scale.min is not None:
            min_replicas = min(scale.min, max_replicas)
            if scale.min > platform_max:
                notes_list.append(_over_platform_max("min", scale.min, platform_max))
        if scale.target is not None:
            target = scale.target
    return ScalingPolicy(
        min_replicas,
        max_replicas,
        target,
        *windows,
        jobs_per_worker=jobs,
        notes=tuple(notes_list),
    )


def jobs_per_worker(env: Mapping[str, str]) -> tuple[int | None, str | None]:
    """Runs one replica works at once (its N_JOBS_PER_WORKER), and a note when the value set is
    not used as written.

    Unset: langgraph-api's 10. A value that is not a whole number from 1 (or absurdly large)
    counts as 10 with a note; the server itself would refuse to start on a non-number, so the
    note is the first a user hears of it. 0 runs no queue worker at all (the replicas serve
    requests only): nothing to scale the queue on, None with a note.
    """
    raw = env.get(JOBS_PER_WORKER_ENV)
    if raw is None:
        return DEFAULT_JOBS_PER_WORKER, None
    text = raw.strip()
    try:
        value = int(text)
    except ValueError:
        value = None
    if value == 0:
        return None, (
            f"{JOBS_PER_WORKER_ENV} = 0: the replicas run no queue workers, so the run queue "
            "does not scale this deployment"
        )
    if value is None or not 1 <= value <= MAX_JOBS_PER_WORKER:
        shown = text if len(text) <= 20 else text[:20] + "…"
        return DEFAULT_JOBS_PER_WORKER, (
            f"{JOBS_PER_WORKER_ENV} = {shown!r} is not a whole number from 1 to "
            f"{MAX_JOBS_PER_WORKER}; the run queue is counted at {DEFAULT_JOBS_PER_WORKER} runs "
            "per replica"
        )
    return value, None


def queue_replicas(queue: RunQueue, jobs: int) -> int:
    """Replicas whose queue workers carry the queue's runs at QUEUE_UTILISATION each."""
    return max(0, math.ceil(queue.total / (jobs * QUEUE_UTILISATION) - CEIL_TOLERANCE))


def _over_platform_max(key: str, asked: int, platform_max: int) -> str:
    return (
        f"[scale] {key} = {asked} is above the platform's most replicas per deployment "
        f"(SLIPWAY_AUTOSCALE_MAX_REPLICAS = {platform_max}); {platform_max} is used"
    )


def _finite(*values: float | None) -> None:
    if any(v is not None and not math.isfinite(v) for v in values):
        raise ValueError("times and concurrencies must be finite numbers")


@dataclass(frozen=True)
class RunQueue:
    """A LangGraph Server's runs waiting for a queue worker and being worked on, as its
    database said at one tick (over all its replicas: they share one queue)."""

    pending: int
    running: int

    def __post_init__(self) -> None:
        if self.pending < 0 or self.running < 0:
            raise ValueError(f"a run queue counts nothing below zero, not {self}")

    @property
    def total(self) -> int:
        return self.pending + self.running


@dataclass(frozen=True)
class Sample:
    """What Caddy's admin API (and, for a LangGraph Server, its run queue) said at one tick."""

    at: float
    """Seconds since the epoch (time.time())."""
    concurrency: float
    """In-flight requests summed over the deployment's ready replicas."""
    replicas: int
    """Ready replicas when sampled, for the history; `decide` goes by its `actual`."""
    queue: RunQueue | None = None
    """The run queue at this tick; None when the deployment has none or it could not be read."""

    def __post_init__(self) -> None:
        _finite(self.at, self.concurrency)
        if self.concurrency < 0 or self.replicas < 0:
            raise ValueError(f"a sample counts nothing below zero, not {self}")


@dataclass(frozen=True)
class Decision:
    """One tick's outcome, as the scaling history shows it."""

    at: float
    stable_concurrency: float | None
    """Average in-flight requests over the stable window; None without samples."""
    panic_concurrency: float | None
    """Average over the panic window; None without samples in it."""
    desired: int
    """Replicas to run."""
    actual: int
    """Ready replicas when deciding."""
    reason: Reason
    queue: RunQueue | None = None
    """The run queue this tick's count went by; None without one (or unread)."""
    queue_replicas: int | None = None
    """What the run queue alone asked for (within the policy's bounds); None without one."""

    def __post_init__(self) -> None:
        _finite(self.at, self.stable_concurrency, self.panic_concurrency)
        if self.desired < 0 or self.actual < 0:
            raise ValueError(f"a decision counts no replicas below zero, not {self}")


@dataclass(frozen=True)
class Peak:
    """A count asked for at `at`, higher than every count asked for since."""

    at: float
    replicas: int

    def __post_init__(self) -> None:
        _finite(self.at)
        if self.replicas < 0:
            raise ValueError(f"a peak counts no replicas below zero, not {self}")


@dataclass(frozen=True)
class Panic:
    """A burst being met: replicas are only added until a stable window passes without one."""

    since: float
    """When this panic began (for the history)."""
    last_burst: float
    """The latest tick that met the panic condition; the panic ends a stable window after it."""
    replicas: int
    """The most replicas asked for during this panic: the floor while it lasts."""

    def __post_init__(self) -> None:
        _finite(self.since, self.last_burst)
        if self.replicas < 0:
            raise ValueError(f"a panic holds no replicas below zero, not {self}")


@dataclass(frozen=True)
class ScalerState:
    """What the autoscaler remembers between ticks, small enough for one TEXT column."""

    samples: tuple[Sample, ...] = ()
    """Oldest first, none older than the longer window."""
    peaks: tuple[Peak, ...] = ()
    """The counts asked for during the scale-down delay that may still be its highest: oldest
    (and highest) first, each lower than the one before, so the first is the count to run and
    there are at most max_replicas entries."""
    panic: Panic | None = None
    decisions: tuple[Decision, ...] = ()
    """Oldest first, at most MAX_DECISIONS."""

    @property
    def latest(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    def to_json(self) -> str:
        return _STATE_JSON.dump_json(self).decode()

    @classmethod
    def from_json(cls, text: str | bytes | None) -> ScalerState:
        """The stored state; a fresh one for a new deployment or for anything unreadable (a
        format from another version, a hand edit): the autoscaler relearns within a window."""
        if not text:
            return cls()
        try:
            return _STATE_JSON.validate_json(text)
        except (ValidationError, ValueError):
            return cls()


_STATE_JSON = TypeAdapter(ScalerState)


def replicas_for(concurrency: float, target: float) -> int:
    """Replicas that carry `concurrency` in-flight requests at `target` each."""
    return max(0, math.ceil(concurrency / target - CEIL_TOLERANCE))


def average_concurrency(samples: tuple[Sample, ...], *, since: float) -> float | None:
    """The mean over the samples taken after `since`; with few samples, the mean of those."""
    window = [s.concurrency for s in samples if s.at > since]
    return sum(window) / len(window) if window else None


def decide(
    policy: ScalingPolicy,
    state: ScalerState,
    sample: Sample | None,
    *,
    actual: int,
    now: float,
) -> tuple[ScalerState, Decision]:
    """The count to run now and the state to pass to the next tick.

    `sample` is None when this tick could not be sampled; `actual` is the ready replicas now
    (0 when all died). After the clock was set back, samples stamped later than `now` are
    dropped and the delay and panic count from `now`, so a clock step holds nothing longer
    than one delay or window.
    """
    if actual < 0:
        raise ValueError(f"actual must not be negative, not {actual}")
    _finite(now)
    state = _no_later_than(state, now)
    samples = state.samples
    if sample is not None:
        samples = (*samples, replace(sample, at=min(sample.at, now)))
    samples = _recent(samples, policy, now)
    stable = average_concurrency(samples, since=now - policy.stable_window_seconds)
    burst = average_concurrency(samples, since=now - policy.panic_window_seconds)
    if sample is not None and burst is not None:
        # The newest sample counts in full: a burst is acted on at the first tick that sees
        # it, not once the window's average has caught up (ticks away: extra replicas should
        # serve within a container start of the burst).
        burst = max(burst, sample.concurrency)

    queue = sample.queue if sample is not None and policy.jobs_per_worker is not None else None
    queue_ask = (
        policy.bounded(queue_replicas(queue, policy.jobs_per_worker))
        if queue is not None and policy.jobs_per_worker is not None
        else None
    )
    peaks = _aged(state.peaks, now, policy.scale_down_delay_seconds)
    panic = None if policy.fixed else _panic(policy, state.panic, burst, actual=actual, now=now)
    if stable is None:
        stable_ask = None
        ask = max((p.replicas for p in peaks), default=actual)
        if panic is not None:
            ask = max(ask, panic.replicas)
    else:
        stable_ask = policy.bounded(
            max(replicas_for(stable, policy.target_concurrency), queue_ask or 0)
        )
        ask = stable_ask
        if panic is not None:
            panic_ask = replicas_for(burst or 0.0, policy.target_concurrency)
            panic = replace(panic, replicas=max(panic.replicas, stable_ask, panic_ask))
            ask = policy.bounded(panic.replicas)
        peaks = _with_peak(peaks, Peak(now, ask))
    desired = policy.bounded(max((p.replicas for p in peaks), default=ask))
    decision = Decision(
        at=now,
        stable_concurrency=stable,
        panic_concurrency=burst,
        desired=desired,
        actual=actual,
        reason=_reason(desired, actual, stable_ask, ask, panicking=panic is not None),
        queue=queue,
        queue_replicas=queue_ask,
    )
    new_state = ScalerState(samples=samples, peaks=peaks, panic=panic, decisions=state.decisions)
    return record(new_state, decision), decision


def _reason(
    desired: int, actual: int, stable_ask: int | None, ask: int, *, panicking: bool
) -> Reason:
    """`stable_ask` is what the stable window alone asks for (None without samples), `ask` that
    with the panic's floor; `desired` adds what the scale-down delay still holds."""
    if stable_ask is None:
        if desired > actual:
            return Reason.scale_up
        return Reason.scale_down if desired < actual else Reason.no_samples
    if desired > actual:
        return Reason.panic if panicking and ask > stable_ask else Reason.scale_up
    if desired < actual:
        return Reason.scale_down
    if panicking and stable_ask < desired:
        return Reason.panic
    return Reason.waiting_for_delay if ask < desired else Reason.steady


def _panic(
    policy: ScalingPolicy, panic: Panic | None, burst: float | None, *, actual: int, now: float
) -> Panic | None:
    """Begins, extends or ends a panic. With no replica ready, capacity counts as one's."""
    capacity = max(actual, 1) * policy.target_concurrency
    if burst is not None and burst >= policy.panic_threshold * capacity:
        if panic is None:
            return Panic(since=now, last_burst=now, replicas=0)
        return replace(panic, last_burst=now)
    if panic is not None and now - panic.last_burst < policy.stable_window_seconds:
        return panic
    return None


def _aged(peaks: tuple[Peak, ...], now: float, delay: float) -> tuple[Peak, ...]:
    """The peaks asked for within the delay (after now - delay)."""
    return tuple(p for p in peaks if p.at > now - delay)


def _with_peak(peaks: tuple[Peak, ...], peak: Peak) -> tuple[Peak, ...]:
    """Adds this tick's count; the peaks it equals or exceeds can never be the highest again."""
    return (*(p for p in peaks if p.replicas > peak.replicas), peak)


def _recent(samples: tuple[Sample, ...], policy: ScalingPolicy, now: float) -> tuple[Sample, ...]:
    longest = max(policy.stable_window_seconds, policy.panic_window_seconds)
    kept = sorted((s for s in samples if s.at > now - longest), key=lambda s: s.at)
    return tuple(kept[-MAX_SAMPLES:])


def _no_later_than(state: ScalerState, now: float) -> ScalerState:
    panic = state.panic
    if not (
        any(s.at > now for s in state.samples)
        or any(p.at > now for p in state.peaks)
        or (panic is not None and panic.last_burst > now)
    ):
        return state
    if panic is not None:
        panic = replace(panic, since=min(panic.since, now), last_burst=min(panic.last_burst, now))
    return replace(
        state,
        samples=tuple(s for s in state.samples if s.at <= now),
        peaks=tuple(replace(p, at=min(p.at, now)) for p in state.peaks),
        panic=panic,
    )


def record(state: ScalerState, decision: Decision) -> ScalerState:
    """Adds a decision to the history, e.g. the reconciler's "replica died".

    A decision repeating the last two (same reason, desired and actual) replaces the last, so a
    long run shows as its first tick and its latest and the history stays MAX_DECISIONS long.
    """
    history = state.decisions

    def key(d: Decision) -> tuple[Reason, int, int]:
        return (d.reason, d.desired, d.actual)

    if len(history) >= 2 and key(history[-1]) == key(history[-2]) == key(decision):
        history = history[:-1]
    return replace(state, decisions=(*history, decision)[-MAX_DECISIONS:])
