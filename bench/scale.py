"""Scale: what N idle deployments cost the platform, and whether pushes and the router stay flat.

Run with `make bench-scale` or `.venv/bin/python -m bench.scale [--levels 1,100]
[--rest-seconds 60]` (`--levels 1,10 --rest-seconds 20` for a quick run).

One `slipway up` with a fake GitHub, in a temporary directory. The levels are reached one after the
other on the same platform: at each, the new deployments (each its own repository with
tests.support.apps.static_site, a busybox httpd page: one image recipe, so every build after the
first is BuildKit's cache) are pushed at once and awaited until all are live. Then, at that level:

* at rest for --rest-seconds: the platform's processes (the supervisor and its descendants:
  API, worker, Valkey, Caddy; and the embedded Postgres, which `pg_ctl` detaches, found by its
  data directory's postmaster.pid) sampled every few seconds: PSS and RSS from
  /proc/<pid>/smaps_rollup (mean of the samples), CPU as % of one core from utime+stime
  (and the reaped children's cutime+cstime) between the window's first and last sample;
* Slipway's containers: those labelled with one of this run's deployments, as apps, holders
  (names ending in `-holder`) and Redis services;
* a one-line push to live on the first deployment (median of --pushes), from just before the
  webhook's POST to the first 200 of the new page through the router;
* the router's p50/p99: `hey` at a fixed rate (10 workers x 20 requests/s for 10 s: 2000
  requests) at the first deployment through Caddy with its Host header, --router-rounds times
  (default 3); the medians of the rounds' p50 and p99.

The goals are issue 22's; each is judged against the same run's level 1. Everything talks to
127.0.0.1 and to containers this bench started; the platform and the containers, images,
networks and volumes of its deployments are removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import redis
from arq.constants import result_key_prefix

from app.kernel.orders import revision_job_id
from app.kernel.settings import Settings
from bench.push_to_live import (
    ACCOUNT,
    INSTALLATION_ID,
    BenchError,
    Deadline,
    describe_machine,
    docker,
    first_answer,
    log,
    redis_url,
    router_host,
    router_url,
)
from manifests import containers
from manifests.containers import DEPLOYMENT_LABEL, HOLDER_SUFFIX, LABEL_PREFIX
from tests.support.apps import static_site
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github.payloads import ZERO_SHA, installation_payload
from tests.support.git_repos import GitRepo
from tests.support.images import ensure_busybox_image
from tests.support.load import start_load
from tests.support.platform import RunningPlatform, remove_docker_objects, start_platform, wait_for

MAX_CONCURRENT_BUILDS: int = Settings.model_fields["max_concurrent_builds"].default
"""The platform's build slots (the bench runs it with the default)."""

DEFAULT_LEVELS = (1, 100)
MAX_LEVEL = 200
DEFAULT_REST_SECONDS = 60.0
SAMPLE_SECONDS = 5.0
"""Between two samples of the platform's processes at rest."""
SETTLE_SECONDS = 15.0
"""After the last deployment of a level went live, before the rest window: the worker finishes
its jobs (reports, holders' spares, image pruning)..."""
SETTLE_STABLE_SECONDS = 10.0
"""...and then Slipway's containers unchanged over this long..."""
SETTLE_MAX_SECONDS = 180.0
"""...but no longer than this in all."""
DEPLOY_SECONDS = 60.0
DEPLOY_SECONDS_EACH = 12.0
"""A level's new deployments must all be live within DEPLOY_SECONDS + this per deployment."""
POLL_LIVE_SECONDS = 3.0
FAILURE_CHECK_SECONDS = 15.0
PUSH_DEADLINE_SECONDS = 180.0
DEFAULT_PUSHES = 3
DEFAULT_ROUTER_ROUNDS = 3
PUSH_PHASES = (
    ("webhook to revision", "sent", "created_at"),
    ("queued", "created_at", "build_started_at"),
    ("build", "build_started_at", "build_finished_at"),
    ("to deploy", "build_finished_at", "deploy_started_at"),
    ("database", "deploy_started_at", "database_ready_at"),
    ("replica start", "database_ready_at", "replica_started_at"),
    ("health check", "replica_started_at", "healthy_at"),
    ("route switch", "healthy_at", "live_at"),
    ("first 200 after live", "live_at", "seen"),
)
"""A push cut at its revision's timestamps (and the bench's own send and first 200), so a
level's extra time shows where it went."""
LOAD_SECONDS = 10.0
LOAD_CONCURRENCY = 10
LOAD_RATE_PER_WORKER = 20.0
"""10 workers x 20 requests/s x 10 s: 2000 requests at a rate the 2-core machine keeps."""
SERVICE_LABEL = f"{LABEL_PREFIX}.service"
RESERVE_LABEL = f"{LABEL_PREFIX}.reserve"
"""On a spare holder of a platform's host-wide reserve (manifests.containers on main)."""
MIB = 1024 * 1024

GOAL_PSS_AT_1_MIB = 200.0
GOAL_PSS_MIB = 300.0
GOAL_CPU_PERCENT = 2.0
GOAL_PUSH_RATIO = 1.1
GOAL_ROUTER_RATIO = 1.2
GOAL_HOST_RESERVE = 4
"""Issue 22's "bounded host-wide reserve, default small": today each deployment keeps 3 spares."""

CATEGORIES = ("supervisor", "api+worker", "api", "worker", "postgres", "valkey", "caddy", "other")
"""api+worker: `slipway combined`, both in one process (the default); api and worker: split."""
SPLIT_OR_COMBINED = ("api+worker", "api", "worker")


# -- /proc, pure parts ------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """What /proc/<pid>/stat says of a process, times in clock ticks."""

    ppid: int
    ticks: int
    """utime + stime."""
    child_ticks: int
    """cutime + cstime: the children it has reaped (a Postgres backend, a docker CLI call)."""
    start_ticks: int
    """When it started, in ticks since boot (tells a pid reused within the window apart)."""


def parse_stat(text: str) -> Stat:
    """/proc/<pid>/stat; the command name (in parentheses) may hold spaces and parentheses."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5).
    return Stat(
        ppid=int(fields[1]),
        ticks=int(fields[11]) + int(fields[12]),
        child_ticks=int(fields[13]) + int(fields[14]),
        start_ticks=int(fields[19]),
    )


def parse_smaps_rollup(text: str) -> tuple[int, int]:
    """(PSS, RSS) in bytes from /proc/<pid>/smaps_rollup (its values are in kB)."""
    values = {"Pss:": 0, "Rss:": 0}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in values:
            values[parts[0]] = int(parts[1]) * 1024
    return values["Pss:"], values["Rss:"]


def category(argv: Sequence[str], *, supervisor: bool, in_postgres: bool) -> str:
    """Which of the platform's parts a process is, from its command line."""
    if supervisor:
        return "supervisor"
    if in_postgres:
        return "postgres"
    program = Path(argv[0]).name if argv else ""
    if "app.cli" in argv:
        if "combined" in argv:
            return "api+worker"
        for part in ("api", "worker"):
            if part in argv:
                return part
    if "caddy" in program:
        return "caddy"
    if "redis" in program or "valkey" in program:
        return "valkey"
    return "other"


def worker_cpu(level: Level) -> str:
    """The process that runs the worker, named, with its CPU: the combined one or the worker."""
    if level.pss.get("api+worker") or level.cpu.get("api+worker"):
        return f"api+worker {level.cpu.get('api+worker', 0.0):.1f}"
    return f"worker {level.cpu.get('worker', 0.0):.1f}"


def descendants(parents: Mapping[int, int], roots: Sequence[int]) -> set[int]:
    """The roots and every process below them, from a pid -> ppid map."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root for root in roots if root in parents]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


@dataclass(frozen=True)
class Proc:
    pid: int
    category: str
    stat: Stat
    pss: int
    rss: int


@dataclass(frozen=True)
class Snapshot:
    at_ticks: float
    """Ticks since boot when it was taken."""
    procs: dict[int, Proc]


def cpu_ticks(first: Snapshot, last: Snapshot) -> dict[str, int]:
    """Ticks spent per category between two snapshots.

    A process alive in both counts its own delta and that of the children it reaped meanwhile;
    one born in between counts all it has spent; one that died in between is counted by its
    parent's cutime once reaped (a pid reused in between is a new process: its start differs).
    """
    spent = dict.fromkeys(CATEGORIES, 0)
    for pid, proc in last.procs.items():
        now = proc.stat.ticks + proc.stat.child_ticks
        before = first.procs.get(pid)
        if before is not None and before.stat.start_ticks == proc.stat.start_ticks:
            spent[proc.category] += max(0, now - before.stat.ticks - before.stat.child_ticks)
        elif proc.stat.start_ticks >= first.at_ticks:
            spent[proc.category] += now
    return spent


def memory(snapshots: Sequence[Snapshot]) -> dict[str, tuple[float, float]]:
    """Mean (PSS, RSS) in bytes per category over the snapshots."""
    result: dict[str, tuple[float, float]] = {}
    for name in CATEGORIES:
        pss = [sum(p.pss for p in s.procs.values() if p.category == name) for s in snapshots]
        rss = [sum(p.rss for p in s.procs.values() if p.category == name) for s in snapshots]
        result[name] = (statistics.fmean(pss), statistics.fmean(rss))
    return result


# -- /proc, reading ---------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def uptime_ticks() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * CLOCK_TICKS


def postmaster_pid(platform: RunningPlatform) -> int | None:
    pid_file = platform.data_dir / "postgres" / "pgdata" / "postmaster.pid"
    with suppress(OSError, ValueError, IndexError):
        return int(pid_file.read_text().splitlines()[0])
    return None


def snapshot(platform: RunningPlatform) -> Snapshot:
    """The platform's processes now: the supervisor's tree and the postmaster's."""
    at = uptime_ticks()
    stats: dict[int, Stat] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, ValueError, IndexError):
                stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
    parents = {pid: stat.ppid for pid, stat in stats.items()}
    postmaster = postmaster_pid(platform)
    postgres = descendants(parents, [postmaster] if postmaster else [])
    platform_pids = descendants(parents, [platform.process.pid]) | postgres
    procs: dict[int, Proc] = {}
    for pid in platform_pids:
        with suppress(OSError):
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            pss, rss = parse_smaps_rollup((Path("/proc") / str(pid) / "smaps_rollup").read_text())
            name = category(
                [part.decode(errors="replace") for part in argv if part],
                supervisor=pid == platform.process.pid,
                in_postgres=pid in postgres,
            )
            procs[pid] = Proc(pid, name, stats[pid], pss, rss)
    return Snapshot(at, procs)


# -- one level's measurements -----------------------------------------------------------------
@dataclass
class Level:
    deployments: int
    pss: dict[str, float] = field(default_factory=dict)
    """Mean bytes per category at rest."""
    rss: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    """% of one core per category at rest."""
    processes: int = 0
    pushes: list[float] = field(default_factory=list)
    """Seconds from the webhook to the first 200 of the new page."""
    push_phases: list[dict[str, float]] = field(default_factory=list)
    """Each push's phases in seconds (PUSH_PHASES), from its revision's timestamps."""
    router_p50_ms: float = 0.0
    router_p99_ms: float = 0.0
    router_rounds: list[tuple[float, float]] = field(default_factory=list)
    """Each round's (p50, p99) in ms."""
    router_requests: int = 0
    router_failed: int = 0
    apps: int = 0
    holders: int = 0
    redis: int = 0
    burst: int = 0
    """Pushes of new deployments sent at once to reach this level."""
    burst_seconds: float = 0.0
    """From the first of those webhooks until all of them were live."""
    burst_failed: int = 0
    burst_errors: list[str] = field(default_factory=list)
    burst_overtaken: int = 0
    """The most later pushes any one push's build was overtaken by (arrival order: 0)."""
    build_slots: int = MAX_CONCURRENT_BUILDS
    load_average: str = ""
    settle_seconds: float = 0.0

    @property
    def pss_total(self) -> float:
        return sum(self.pss.values())

    @property
    def rss_total(self) -> float:
        return sum(self.rss.values())

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())

    @property
    def push_median(self) -> float:
        return statistics.median(self.pushes)


def rest(platform: RunningPlatform, seconds: float, level: Level) -> None:
    """Sample the platform's processes for `seconds`, touching nothing of it."""
    snapshots = [snapshot(platform)]
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        time.sleep(min(SAMPLE_SECONDS, left))
        snapshots.append(snapshot(platform))
    first, last = snapshots[0], snapshots[-1]
    window = (last.at_ticks - first.at_ticks) or 1.0
    level.cpu = {k: 100.0 * v / window for k, v in cpu_ticks(first, last).items()}
    for name, (pss, rss) in memory(snapshots).items():
        level.pss[name] = pss
        level.rss[name] = rss
    level.processes = len(last.procs)
    level.load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])


def settle(platform: RunningPlatform, deployment_ids: set[str], level: Level) -> None:
    """Wait SETTLE_SECONDS, then until Slipway's containers stop changing (spare holders are
    started after live), at most SETTLE_MAX_SECONDS in all."""
    started = time.monotonic()
    time.sleep(SETTLE_SECONDS)
    count_containers(platform, deployment_ids, level)
    seen = (level.apps, level.holders, level.redis)
    while time.monotonic() - started < SETTLE_MAX_SECONDS:
        time.sleep(SETTLE_STABLE_SECONDS)
        count_containers(platform, deployment_ids, level)
        now = (level.apps, level.holders, level.redis)
        if now == seen:
            break
        log(f"  still changing: {now[0]} apps + {now[1]} holders")
        seen = now
    level.settle_seconds = time.monotonic() - started


def containers_by_kind(
    listing: str, deployment_ids: set[str], reserve: str | None
) -> tuple[int, int, int]:
    """(apps, holders, Redis services) among `docker ps` lines of name, deployment label,
    service label and reserve label: those of this run's deployments and of its platform's
    host-wide reserve of spare holders (where the platform has one)."""
    apps = holders = services = 0
    for line in listing.splitlines():
        name, deployment, service, owner = [*line.split("\t"), "", "", ""][:4]
        if deployment not in deployment_ids and not (reserve and owner == reserve):
            continue
        if name.endswith(HOLDER_SUFFIX):
            holders += 1
        elif service == "redis":
            services += 1
        else:
            apps += 1
    return apps, holders, services


def reserve_of(platform: RunningPlatform) -> str | None:
    """The label value of the platform's own reserve of spare holders, on a Slipway that keeps
    one per host (issue 22); None on one whose spares are per deployment (labelled with it)."""
    reserve_id = getattr(containers, "reserve_id", None)
    if reserve_id is None:
        return None
    return str(reserve_id(str((platform.data_dir.resolve() / "run").resolve())))


def count_containers(platform: RunningPlatform, deployment_ids: set[str], level: Level) -> None:
    """Running containers of this run's deployments and of its platform's reserve, by kind."""
    fields = (DEPLOYMENT_LABEL, SERVICE_LABEL, RESERVE_LABEL)
    listing = docker(
        "ps",
        "--format",
        "\t".join(["{{.Names}}", *(f'{{{{.Label "{label}"}}}}' for label in fields)]),
    )
    level.apps, level.holders, level.redis = containers_by_kind(
        listing, deployment_ids, reserve_of(platform)
    )


# -- the deployments --------------------------------------------------------------------------
@dataclass
class Site:
    repo: GitRepo
    repository: dict[str, Any]
    head: str
    deployment_id: str = ""
    slug: str = ""
    version: int = 0


RUN_TOKEN = uuid.uuid4().hex[:12]


def page_text(name: str, version: int) -> str:
    """Version 0 is the same in every run (its build may come from an earlier run's cache);
    later versions carry this run's token, so every timed push builds its change anew."""
    return f"site={name} version={version}" + (f" run={RUN_TOKEN}" if version else "")


def page(name: str, version: int) -> dict[str, str | bytes]:
    """The same Dockerfile for every site: after the first build, BuildKit's cache."""
    return static_site(page_text(name, version))


def add_sites(
    platform: RunningPlatform, github: FakeGitHub, work: Path, sites: list[Site], level: Level
) -> None:
    """Connect and push `level.burst` new repositories at once and wait until all are live.

    A deployment whose first revision fails is counted (with its error) and pushed once more,
    as its user would, so the level still has all its deployments.
    """
    new: list[Site] = []
    for number in range(len(sites) + 1, len(sites) + level.burst + 1):
        name = f"site-{number:03d}"
        repo = GitRepo(work / "repos" / name)
        head = repo.commit(page(name, 0), "first commit")
        repository = github.add_repository(INSTALLATION_ID, ACCOUNT, name, repo.path)
        new.append(Site(repo, repository, head))
    response = platform.send(
        "installation",
        installation_payload(
            "created",
            INSTALLATION_ID,
            ACCOUNT,
            [site.repository for site in new],
            app_id=github.app_id,
        ),
    )
    if response.status_code != 202:
        raise BenchError(f"installation webhook answered {response.status_code}: {response.text}")
    sites.extend(new)
    started = time.perf_counter()
    for site in new:
        response = platform.push(site.repository, INSTALLATION_ID, ZERO_SHA, site.head)
        if response.status_code != 202:
            raise BenchError(f"push webhook answered {response.status_code}: {response.text}")
    failed = wait_live(platform, new, f"{level.burst} deployments")
    level.burst_seconds = time.perf_counter() - started
    level.burst_failed = len(failed)
    level.burst_overtaken = most_overtaken([build_started(platform, site) for site in new])
    level.burst_errors = sorted({error for _, error in failed})
    if failed:
        log(f"  {len(failed)} failed ({level.burst_errors}): pushing them once more")
        for site, _ in failed:
            before = site.head
            site.version += 1
            site.head = site.repo.commit(page(site.repository["name"], site.version), "again")
            platform.push(site.repository, INSTALLATION_ID, before, site.head)
        if again := wait_live(platform, [site for site, _ in failed], "the failed ones again"):
            errors = [f"{site.repository['name']}: {error}" for site, error in again]
            raise BenchError(f"{len(again)} deployments failed twice: {errors}")


def most_overtaken(starts: Sequence[float | None]) -> int:
    """Builds in order of arrival, within the build slots: for each push (in the order the
    webhooks were sent), how many pushes sent after it started building before it; the most.
    With N build slots a fair queue keeps this under N (the ones admitted with it may start a
    hair sooner); a queue that lets newcomers jump it makes it grow with the burst. A build
    that never started (failed first) overtakes nobody and is overtaken by none."""
    known = [(index, start) for index, start in enumerate(starts) if start is not None]
    return max(
        (
            sum(1 for later, other in known if later > index and other < start)
            for index, start in known
        ),
        default=0,
    )


def build_started(platform: RunningPlatform, site: Site) -> float | None:
    """When the build of the site's head revision started (seconds since the epoch)."""
    if not site.deployment_id:
        return None
    for revision in platform.api(f"/api/deployments/{site.deployment_id}/revisions"):
        if revision["commit_sha"] == site.head and revision.get("build_started_at"):
            return datetime.fromisoformat(revision["build_started_at"]).timestamp()
    return None


def wait_live(
    platform: RunningPlatform, sites: Sequence[Site], what: str
) -> list[tuple[Site, str]]:
    """Wait until each site is live or its head revision failed; the failed ones, with why.

    A site here has no revision but its head's and failed ones: any live revision is the head.
    Revisions are read for failures only every FAILURE_CHECK_SECONDS, to load the API little.
    """
    wanted = {site.repository["full_name"]: site for site in sites}
    deadline = Deadline(DEPLOY_SECONDS + DEPLOY_SECONDS_EACH * len(sites), what)
    failed: dict[str, tuple[Site, str]] = {}
    next_check = time.monotonic() + FAILURE_CHECK_SECONDS
    while True:
        live: set[str] = set()
        for deployment in platform.api("/api/deployments"):
            site = wanted.get(deployment["repository"])
            if site is None:
                continue
            site.deployment_id, site.slug = deployment["id"], deployment["slug"]
            if deployment["live_revision_id"]:
                live.add(deployment["repository"])
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + FAILURE_CHECK_SECONDS
            for name, site in wanted.items():
                if name in live or name in failed or not site.deployment_id:
                    continue
                for revision in platform.api(f"/api/deployments/{site.deployment_id}/revisions"):
                    if revision["commit_sha"] == site.head and revision["state"] in {
                        "failed",
                        "cancelled",
                    }:
                        failed[name] = (site, f"{revision['state']}: {revision['error']}")
        log(f"  {len(live)}/{len(sites)} live, {len(failed)} failed")
        if len(live) + len(failed) == len(sites):
            return list(failed.values())
        time.sleep(min(POLL_LIVE_SECONDS, deadline.remaining()))


def push_to_live(
    platform: RunningPlatform, site: Site, client: httpx.Client, level: Level | None = None
) -> float:
    """A one-line change of the first site, from the webhook to its first 200 via the router;
    its phases go to `level.push_phases`."""
    site.version += 1
    name = site.repository["name"]
    before = site.head
    site.head = site.repo.commit(page(name, site.version), f"version {site.version}")
    deadline = Deadline(PUSH_DEADLINE_SECONDS, f"push {site.version} of {name} to go live")

    def failed_yet() -> None:
        for revision in platform.api(f"/api/deployments/{site.deployment_id}/revisions"):
            if revision["commit_sha"] == site.head and revision["state"] in {"failed", "cancelled"}:
                raise BenchError(f"push of {name} ended {revision['state']}: {revision['error']}")

    sent = time.perf_counter()
    sent_wall = time.time()
    response = platform.push(site.repository, INSTALLATION_ID, before, site.head)
    if response.status_code != 202:
        raise BenchError(f"push webhook answered {response.status_code}: {response.text}")
    seen = first_answer(
        client,
        router_url(platform),
        {"Host": router_host(platform, site.slug)},
        page_text(name, site.version) + "\n",
        deadline,
        failed_yet,
    )
    # The worker goes on after live (retiring the old replica, reporting): let its job end
    # before anything else is measured.
    seen_wall = sent_wall + (seen - sent)
    revision = platform.revision_for(site.deployment_id, site.head, timeout=deadline.remaining())
    if level is not None:
        level.push_phases.append(phases_of(revision, sent_wall, seen_wall))
    with redis.Redis.from_url(redis_url(platform)) as queue:
        wait_for(
            f"the job of revision {revision['id']} to finish",
            lambda: bool(queue.exists(result_key_prefix + revision_job_id(revision["id"]))),
            timeout=deadline.remaining(),
            every=0.1,
        )
    return seen - sent


def utc_seconds(text: str) -> float:
    """An API timestamp as seconds since the epoch (one without a zone is UTC, as stored)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def phases_of(revision: dict[str, Any], sent: float, seen: float) -> dict[str, float]:
    """PUSH_PHASES of one push in seconds; a phase whose timestamp is missing is left out."""
    moments: dict[str, float | None] = {"sent": sent, "seen": seen}
    for _, start, end in PUSH_PHASES:
        for name in (start, end):
            if name not in moments:
                text = revision.get(name)
                moments[name] = utc_seconds(text) if text else None
    phases: dict[str, float] = {}
    for phase, start, end in PUSH_PHASES:
        began, ended = moments[start], moments[end]
        if began is not None and ended is not None:
            phases[phase] = ended - began
    return phases


def router_latency(platform: RunningPlatform, site: Site, level: Level, rounds: int) -> None:
    """`rounds` loads of LOAD_SECONDS each; the level's p50 and p99 are the medians of the
    rounds' own. One round's p99 of a few milliseconds moves by half between back-to-back runs
    on a 2-core machine (docs/benchmarks/scale.md): the median of rounds says more."""
    host = router_host(platform, site.slug)
    start_load(platform.router_port, host, seconds=2, concurrency=2).wait()  # warm-up
    p50s: list[float] = []
    p99s: list[float] = []
    for _ in range(rounds):
        load = start_load(
            platform.router_port,
            host,
            seconds=LOAD_SECONDS,
            concurrency=LOAD_CONCURRENCY,
            rate_per_worker=LOAD_RATE_PER_WORKER,
        ).wait()
        if not load.latency:
            raise BenchError(f"hey reported no latencies: {load.output[-1500:]}")
        p50s.append(load.latency[50] * 1000)
        p99s.append(load.latency[99] * 1000)
        level.router_requests += load.requests
        level.router_failed += load.failed
    level.router_p50_ms = statistics.median(p50s)
    level.router_p99_ms = statistics.median(p99s)
    level.router_rounds = [(a, b) for a, b in zip(p50s, p99s, strict=True)]


def measure(
    platform: RunningPlatform,
    sites: list[Site],
    level: Level,
    rest_seconds: float,
    pushes: int,
    client: httpx.Client,
    router_rounds: int = 1,
) -> None:
    log(f"level {level.deployments}: settling")
    settle(platform, {site.deployment_id for site in sites}, level)
    log(f"level {level.deployments}: at rest for {rest_seconds:.0f} s")
    rest(platform, rest_seconds, level)
    count_containers(platform, {site.deployment_id for site in sites}, level)
    log(
        f"  PSS {level.pss_total / MIB:.0f} MiB, CPU {level.cpu_total:.1f} %, "
        f"{level.apps} apps + {level.holders} holders, load {level.load_average}"
    )
    for number in range(1, pushes + 1):
        level.pushes.append(push_to_live(platform, sites[0], client, level))
        log(f"  push {number}/{pushes}: {level.pushes[-1]:.2f} s")
    router_latency(platform, sites[0], level, router_rounds)
    rounds = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in level.router_rounds)
    log(
        f"  router p50 {level.router_p50_ms:.1f} ms, p99 {level.router_p99_ms:.1f} ms "
        f"(median of rounds p50/p99: {rounds})"
    )


# -- the report -------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def ratio(value: float, base: float) -> float:
    return value / base if base else float("inf")


def render(levels: Sequence[Level], machine: Sequence[str], command: str) -> str:
    """The issue's table (one column per level), the goals judged, and the parts at rest."""
    base = levels[0]
    header = ["", *(f"{lv.deployments} deployment{'s' * (lv.deployments > 1)}" for lv in levels)]
    rows = [
        [
            "platform PSS (RSS) at rest",
            *(f"{lv.pss_total / MIB:.0f} MiB ({lv.rss_total / MIB:.0f})" for lv in levels),
        ],
        [
            "platform CPU at rest, % of one core",
            *(f"{lv.cpu_total:.1f} ({worker_cpu(lv)})" for lv in levels),
        ],
        [
            "one-line push to live (median)",
            *(
                f"{lv.push_median:.2f} s ({ratio(lv.push_median, base.push_median):.2f}x)"
                for lv in levels
            ),
        ],
        [
            "router p50 / p99",
            *(f"{lv.router_p50_ms:.1f} / {lv.router_p99_ms:.1f} ms" for lv in levels),
        ],
        [
            "Slipway's containers",
            *(
                f"{lv.apps} apps + {lv.holders} holders"
                + (f" + {lv.redis} redis" if lv.redis else "")
                for lv in levels
            ),
        ],
        [
            "new deployments pushed at once: all live in",
            *(f"{lv.burst}: {lv.burst_seconds:.0f} s, {lv.burst_failed} failed" for lv in levels),
        ],
        [
            "settled after live (containers unchanged)",
            *(f"{lv.settle_seconds:.0f} s" for lv in levels),
        ],
        ["load average at rest (1/5/15 min)", *(lv.load_average for lv in levels)],
    ]
    lines = [*machine, f"command: {command}", "", *markdown(header, rows), ""]
    for lv in levels:
        lines += [
            f"failed at {lv.deployments} (pushed again): {error}" for error in lv.burst_errors
        ]
    lines += ["Goals (issue 22), each level against this run's level 1:"]
    for lv in levels:
        limit = GOAL_PSS_AT_1_MIB if lv.deployments == 1 else GOAL_PSS_MIB
        goals = [
            (
                f"PSS at rest <= {limit:.0f} MiB",
                f"{lv.pss_total / MIB:.0f} MiB",
                lv.pss_total / MIB <= limit,
            ),
            (
                f"CPU at rest <= {GOAL_CPU_PERCENT:.0f} % of a core",
                f"{lv.cpu_total:.1f} %",
                lv.cpu_total <= GOAL_CPU_PERCENT,
            ),
            (
                f"containers of its own <= replicas + {GOAL_HOST_RESERVE}",
                f"{lv.holders} holders for {lv.apps} replicas",
                lv.holders <= lv.apps + GOAL_HOST_RESERVE,
            ),
        ]
        if lv is not base:
            push = ratio(lv.push_median, base.push_median)
            p50 = ratio(lv.router_p50_ms, base.router_p50_ms)
            p99 = ratio(lv.router_p99_ms, base.router_p99_ms)
            goals += [
                (f"push <= {GOAL_PUSH_RATIO}x level 1", f"{push:.2f}x", push <= GOAL_PUSH_RATIO),
                (
                    f"router p50 and p99 <= {GOAL_ROUTER_RATIO}x level 1",
                    f"{p50:.2f}x / {p99:.2f}x",
                    max(p50, p99) <= GOAL_ROUTER_RATIO,
                ),
            ]
        if lv.burst > 1:
            goals += [
                (
                    f"{lv.burst} pushes at once all live",
                    f"{lv.burst_failed} failed, {lv.burst_seconds:.0f} s",
                    lv.burst_failed == 0,
                ),
                (
                    f"their builds in order of arrival within the {lv.build_slots} build slots",
                    f"overtaken by at most {lv.burst_overtaken} later pushes",
                    lv.burst_overtaken < lv.build_slots,
                ),
            ]
        for goal, value, ok in goals:
            lines.append(f"- {lv.deployments:>3}: {goal}: {value} -> {verdict(ok)}")
    if any(lv.push_phases for lv in levels):
        lines += ["", "The one-line push, by phase: median ms (from the revision's timestamps)", ""]
        phase_rows = [
            [
                phase,
                *(
                    f"{1000 * statistics.median(values):.0f}"
                    if (values := [p[phase] for p in lv.push_phases if phase in p])
                    else "-"
                    for lv in levels
                ),
            ]
            for phase, _, _ in PUSH_PHASES
        ]
        lines += markdown(["phase", *(str(lv.deployments) for lv in levels)], phase_rows)
    lines += ["", "At rest, per part: PSS MiB (RSS) / CPU % of one core", ""]
    header = ["part", *(str(lv.deployments) for lv in levels)]
    rows = [
        [
            name,
            *(
                f"{lv.pss.get(name, 0) / MIB:.0f} ({lv.rss.get(name, 0) / MIB:.0f})"
                f" / {lv.cpu.get(name, 0):.2f}"
                for lv in levels
            ),
        ]
        for name in CATEGORIES
        # The API and the worker run either combined or split: the other rows would be zeros.
        if name not in SPLIT_OR_COMBINED or any(lv.pss.get(name) for lv in levels)
    ]
    rows.append(["processes", *(str(lv.processes) for lv in levels)])
    rows.append(
        [
            "router requests (failed)",
            *(f"{lv.router_requests} ({lv.router_failed})" for lv in levels),
        ]
    )
    lines += markdown(header, rows)
    return "\n".join(lines)


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


# -- the run ----------------------------------------------------------------------------------
def remove_volumes(deployment_ids: Sequence[str]) -> None:
    for deployment_id in deployment_ids:
        with suppress(BenchError):
            volumes = docker(
                "volume", "ls", "-q", "--filter", f"label={DEPLOYMENT_LABEL}={deployment_id}"
            ).split()
            if volumes:
                docker("volume", "rm", "-f", *volumes)


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the cleanup runs."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    levels: Sequence[int],
    rest_seconds: float,
    pushes: int,
    command: str,
    router_rounds: int = 1,
    settings: Mapping[str, str] | None = None,
) -> str:
    log("making sure the base image exists")
    ensure_busybox_image()
    machine = describe_machine()
    measured: list[Level] = []
    with (
        tempfile.TemporaryDirectory(prefix="slipway-bench-scale-") as tmp,
        terminated_as_interrupt(),
    ):
        work = Path(tmp)
        github = FakeGitHub(app_id=31337, app_slug="slipway-bench")
        github.start()
        github.add_installation(INSTALLATION_ID, ACCOUNT)
        platform: RunningPlatform | None = None
        sites: list[Site] = []
        try:
            log("starting slipway up")
            extra: dict[str, Any] = dict(settings or {})  # SLIPWAY_<NAME> in its environment
            platform = start_platform(work / "platform", github, **extra)
            with httpx.Client(trust_env=False) as client:
                for deployments in levels:
                    level = Level(deployments, burst=deployments - len(sites))
                    log(f"level {deployments}: pushing {level.burst} new deployments at once")
                    add_sites(platform, github, work, sites, level)
                    log(f"  all live in {level.burst_seconds:.1f} s")
                    measure(platform, sites, level, rest_seconds, pushes, client, router_rounds)
                    measured.append(level)
        finally:
            log("cleaning up")
            ids = {site.deployment_id for site in sites if site.deployment_id}
            try:
                if platform is not None:
                    with suppress(httpx.HTTPError, OSError):
                        ids |= {d["id"] for d in platform.api("/api/deployments")}
                    platform.stop()
            finally:  # the deployments' objects go even when the platform's stop failed
                github.stop()
                remove_docker_objects(sorted(ids))
                remove_volumes(sorted(ids))
    return render(measured, machine, command)


def parse_levels(text: str) -> tuple[int, ...]:
    levels = tuple(int(part) for part in text.split(",") if part.strip())
    if not levels or levels[0] != 1 or list(levels) != sorted(set(levels)):
        raise ValueError("levels start at 1 and grow, e.g. 1,100")
    if levels[-1] > MAX_LEVEL:
        raise ValueError(f"at most {MAX_LEVEL} deployments")
    return levels


def parse_setting(text: str) -> tuple[str, str]:
    """`--setting metrics=false`: a platform setting (SLIPWAY_METRICS) for this run, to compare
    runs with and without what it turns on."""
    name, equals, value = text.partition("=")
    name = name.strip().lower().removeprefix("slipway_")
    if not equals or name not in Settings.model_fields:
        raise ValueError(f"{text!r}: give NAME=VALUE with a setting's name, e.g. metrics=false")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--levels",
        default=",".join(map(str, DEFAULT_LEVELS)),
        help="numbers of deployments, growing from 1 (default 1,100; quick: 1,10)",
    )
    parser.add_argument(
        "--rest-seconds",
        type=float,
        default=DEFAULT_REST_SECONDS,
        help=f"sampling window at rest (default {DEFAULT_REST_SECONDS:.0f})",
    )
    parser.add_argument(
        "--pushes",
        type=int,
        default=DEFAULT_PUSHES,
        help=f"one-line pushes to live per level, median (default {DEFAULT_PUSHES})",
    )
    parser.add_argument(
        "--router-rounds",
        type=int,
        default=DEFAULT_ROUTER_ROUNDS,
        help=f"router loads per level, median of each's p50 and p99 "
        f"(default {DEFAULT_ROUTER_ROUNDS})",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a platform setting for this run (repeatable), e.g. metrics=false",
    )
    args = parser.parse_args(argv)
    try:
        levels = parse_levels(args.levels)
    except ValueError as exc:
        parser.error(f"--levels: {exc}")
    try:
        settings = dict(parse_setting(text) for text in args.setting)
    except ValueError as exc:
        parser.error(f"--setting: {exc}")
    if not 5 <= args.rest_seconds <= 600:
        parser.error("--rest-seconds must be between 5 and 600")
    if not 1 <= args.pushes <= 20:
        parser.error("--pushes must be between 1 and 20")
    if not 1 <= args.router_rounds <= 10:
        parser.error("--router-rounds must be between 1 and 10")
    command = "python -m bench.scale " + " ".join(
        [f"--levels {','.join(map(str, levels))}", f"--rest-seconds {args.rest_seconds:g}"]
        + ([f"--pushes {args.pushes}"] if args.pushes != DEFAULT_PUSHES else [])
        + (
            [f"--router-rounds {args.router_rounds}"]
            if args.router_rounds != DEFAULT_ROUTER_ROUNDS
            else []
        )
        + [f"--setting {name}={value}" for name, value in settings.items()]
    )
    try:
        print(
            run(levels, args.rest_seconds, args.pushes, command, args.router_rounds, settings),
            flush=True,
        )
    except (BenchError, AssertionError) as exc:  # AssertionError: the harness's waits
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
