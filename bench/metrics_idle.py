"""What sampling deployment metrics costs the worker at rest (issue 24 with issue 22's budget).

Run with `python -m bench.metrics_idle [--deployments 100] [--samples 60]`: a migrated SQLite
control plane in a temporary directory with N deployments, each with one running replica, and
the router's metrics text as Caddy writes it for N hosts with traffic counted (the histogram
of 2 status codes each, Caddy's 14 buckets), then `MetricsSampler.sample()` run as the worker's
cron runs it, every 10 s of a fake clock: the CPU time of each call (median, p99), what it
means per 10 s, and the rows written per minute. No Docker, no Caddy (the text is made to
its shape, with only the series the sampler reads; Caddy's own has more, skipped line by line).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import func, select

from app.kernel.db import SessionFactory, make_engine, migrate
from app.kernel.models import (
    Deployment,
    Installation,
    MetricPoint,
    Replica,
    Repository,
    Revision,
)
from app.replicas.metrics import MetricsSampler

BOUNDS = (
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
)  # fmt: skip


def caddy_text(hosts: int, requests: int) -> str:
    lines = ["# TYPE caddy_http_requests_total counter"]
    lines += [
        f'caddy_http_requests_total{{handler="reverse_proxy",host="d{i}.localhost",server="s"}} '
        f"{requests}"
        for i in range(hosts)
    ]
    lines.append("# TYPE caddy_http_request_duration_seconds histogram")
    for i in range(hosts):
        for code in ("200", "502"):
            labels = f'code="{code}",handler="reverse_proxy",host="d{i}.localhost",method="GET"'
            for bound in BOUNDS:
                lines.append(
                    f'caddy_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{requests}"
                )
            lines.append(f"caddy_http_request_duration_seconds_sum{{{labels}}} 1")
            lines.append(f"caddy_http_request_duration_seconds_count{{{labels}}} {requests}")
    lines.append("# TYPE caddy_http_requests_in_flight gauge")
    lines += [
        f'caddy_http_requests_in_flight{{handler="reverse_proxy",host="d{i}.localhost"}} 0'
        for i in range(hosts)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "control-plane.db"
        migrate(f"sqlite:///{path}", Path(folder))
        sessions = SessionFactory(make_engine(f"sqlite:///{path}"))
        with sessions() as session:
            session.add(Installation(id=1, account_login="octo"))
            session.commit()
            session.add(Repository(id=2, installation_id=1, full_name="octo/web"))
            session.commit()
            for i in range(args.deployments):
                session.add(Deployment(id=f"dep_{i}", repository_id=2, slug=f"d{i}", branch="b"))
            session.commit()
            for i in range(args.deployments):
                session.add(
                    Revision(
                        id=f"rev_{i}",
                        deployment_id=f"dep_{i}",
                        number=1,
                        commit_sha="0" * 40,
                        env_hash="e",
                    )
                )
            session.commit()
            for i in range(args.deployments):
                session.add(
                    Replica(
                        id=f"rep_{i}",
                        revision_id=f"rev_{i}",
                        container_name=f"r{i}",
                        container_port=8000,
                    )
                )
            session.commit()
        text = caddy_text(args.deployments, 1000)  # counted once, then idle: no new requests
        now = [datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)]
        sampler = MetricsSampler(
            sessions=sessions,
            scrape=lambda: [text],
            hostname=lambda slug: f"{slug}.localhost",
            clock=lambda: now[0],
        )
        costs = []
        for _ in range(args.samples):
            started = time.process_time()
            sampler.sample()
            costs.append(time.process_time() - started)
            now[0] += timedelta(seconds=10)
        with sessions() as session:
            rows = session.exec(select(func.count()).select_from(MetricPoint)).one()
        costs.sort()
        median = statistics.median(costs)
        p99 = costs[min(len(costs) - 1, int(len(costs) * 0.99))]
        minutes = args.samples * 10 / 60
        print(
            f"{args.deployments} idle deployments, {args.samples} samples (10 s apart): "
            f"CPU per sample median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
            f"({median / 10 * 100:.2f} % of one core at rest); "
            f"{rows} rows in {minutes:.0f} min ({rows / minutes:.0f} a minute); "
            f"router text {len(text) // 1024} KiB"
        )


if __name__ == "__main__":
    main()
