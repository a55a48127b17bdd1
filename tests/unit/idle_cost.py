"""What the reconciler costs at rest: K idle deployments on the fakes, each tick's statements,
writes, engine calls and router calls counted.

Used by tests/unit/test_reconciler.py (flat in K) and runnable alone for the numbers:

    PYTHONPATH=$PWD .venv/bin/python -m tests.unit.idle_cost 1 100
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event

from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.models import RevisionState
from tests.support.fake_github import FakeGitHub
from tests.support.keys import new_private_key_pem
from tests.unit.world import INSTALLATION, Platform, world_platform

TICK_SECONDS = 2.0
WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass
class TickCost:
    statements: int = 0
    writes: int = 0
    commits: int = 0
    engine_calls: int = 0
    router_calls: int = 0
    calls: dict[str, int] = field(default_factory=dict)


def add_idle_deployments(platform: Platform, count: int) -> list[str]:
    """`count` production deployments, each pushed, built and live with one replica (their
    repositories share the platform's git objects)."""
    ids = []
    for _ in range(count):
        name = f"idle-{uuid.uuid4().hex[:8]}"
        platform.repository = platform.github.add_repository(
            INSTALLATION, "octo", name, platform.commits.path
        )
        revision_id = platform.push()
        assert platform.pipeline.run(revision_id) is RevisionState.live
        ids.append(platform.revision(revision_id).deployment_id)
    return ids


@contextmanager
def counting(platform: Platform) -> Iterator[TickCost]:
    """Counts what the platform's ports and control plane are asked while inside."""
    cost = TickCost()
    engine = platform.sessions.engine

    def on_statement(*args: Any) -> None:
        statement = str(args[2]).lstrip().upper()
        cost.statements += 1
        cost.writes += statement.startswith(WRITES)

    def on_commit(*_args: Any) -> None:
        cost.commits += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    saved: list[tuple[object, str, Any]] = []
    depth = [0]

    def wrap(target: object, name: str, kind: str) -> None:
        original = getattr(target, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                if depth[0] == 1:  # the fake's `statuses` calls its `status`: one listing
                    cost.calls[name] = cost.calls.get(name, 0) + 1
                    if kind == "engine":
                        cost.engine_calls += 1
                    else:
                        cost.router_calls += 1
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1

        saved.append((target, name, original))
        setattr(target, name, counted)

    for name in ("statuses", "status", "start", "remove", "ensure_network", "ensure_service"):
        wrap(platform.runtime, name, "engine")
    for name in ("in_flight", "apply"):
        wrap(platform.router, name, "router")
    try:
        yield cost
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
        for target, name, _original in saved:
            delattr(target, name)


def tick_costs(platform: Platform, ticks: int, tick: Callable[[], None]) -> list[TickCost]:
    costs = []
    for _ in range(ticks):
        with counting(platform) as cost:
            tick()
        costs.append(cost)
    return costs


def measure(count: int, seconds: float = 120.0) -> list[TickCost]:
    """The cost of each 2 s tick over `seconds` at rest, with `count` idle deployments."""
    with tempfile.TemporaryDirectory(prefix="idle-cost-") as tmp:
        tmp_path = Path(tmp)
        url = f"sqlite:///{tmp_path / 'control-plane.db'}"
        migrate(url, tmp_path / "locks")
        engine = make_engine(url)
        github = FakeGitHub(private_key_pem=new_private_key_pem())
        try:
            platform = world_platform(SessionFactory(engine), github, tmp_path)
            add_idle_deployments(platform, count)

            def tick() -> None:
                platform.wall[0] += TICK_SECONDS
                platform.reconciler.reconcile()

            for _ in range(5):  # the first ticks after going live record the steady state
                tick()
            return tick_costs(platform, int(seconds / TICK_SECONDS), tick)
        finally:
            github.stop()
            engine.dispose()


def main(levels: list[int]) -> None:
    """Per minute at rest (30 ticks), and the dearest tick (a resync's)."""
    print("K     per minute: statements  writes  commits  engine calls  router calls | dearest")
    for count in levels:
        costs = measure(count)
        minutes = len(costs) * TICK_SECONDS / 60
        worst = max(costs, key=lambda c: c.statements)
        steady = sorted(c.statements for c in costs)[len(costs) // 2]
        print(
            f"{count:<5} {sum(c.statements for c in costs) / minutes:>21.0f} "
            f"{sum(c.writes for c in costs) / minutes:>7.0f} "
            f"{sum(c.commits for c in costs) / minutes:>8.0f} "
            f"{sum(c.engine_calls for c in costs) / minutes:>13.0f} "
            f"{sum(c.router_calls for c in costs) / minutes:>13.0f} | "
            f"{worst.statements} statements, {worst.engine_calls} engine, "
            f"{worst.router_calls} router (median tick: {steady} statements)"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 100])
