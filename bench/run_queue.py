"""What reading LangGraph deployments' run queues costs a reconciler tick (issue 25 §4).

Run with `python -m bench.run_queue [--deployments 20] [--ticks 100] [--runs 5000]`: an
embedded Postgres cluster with N deployment databases, each with langgraph-runtime-pg's `runs`
table (its index on status, created_at) holding `--runs` finished runs and a few pending and
running ones; then N reads per tick as the reconciler makes them
(`PostgresRunQueues.run_counts`, one connection per deployment kept between ticks), and the
same with a new connection for every read (what keeping them saves). Reported: the wall time
of a tick's reads and the CPU the platform's process spent on them (median, p99), and the
server's CPU is not counted (it runs in its own processes). No Docker.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from app.adapters.postgres import PostgresProvisioner
from app.adapters.run_queue import PostgresRunQueues
from app.kernel.names import database_identifier
from app.kernel.ports import DatabaseLogin
from app.server.embedded import EmbeddedPostgres

RUNS_TABLE = """
CREATE TABLE runs (
    run_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id uuid,
    assistant_id uuid NOT NULL DEFAULT gen_random_uuid(),
    status varchar(32) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_runs_status_created_at ON runs (status, created_at);
"""


def databases(cluster: EmbeddedPostgres, count: int, finished: int) -> dict[str, DatabaseLogin]:
    provisioner = PostgresProvisioner(cluster.admin_url, "127.0.0.1")
    logins = {}
    for i in range(count):
        deployment_id = f"dep_bench{i:04d}"
        name = database_identifier(deployment_id)
        password = secrets.token_urlsafe(16)
        provisioner.ensure(name, name, password, connection_limit=10)
        login = DatabaseLogin(name=name, role=name, password=password)
        with psycopg.connect(
            host="127.0.0.1",
            port=cluster.port,
            user=name,
            password=password,
            dbname=name,
            autocommit=True,
        ) as conn:
            conn.execute(RUNS_TABLE)
            conn.execute(
                "INSERT INTO runs (status) SELECT 'success' FROM generate_series(1, %s)",
                (finished,),
            )
            conn.execute("INSERT INTO runs (status) VALUES ('pending'), ('running'), ('running')")
            conn.execute("ANALYZE runs")
        logins[deployment_id] = login
    return logins


def ticks(
    reader: PostgresRunQueues, logins: dict[str, DatabaseLogin], count: int, *, reopen: bool
) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(count):
        if reopen:
            reader.keep_only([])
        wall, cpu = time.perf_counter(), time.process_time()
        for deployment_id, login in logins.items():
            assert reader.run_counts(deployment_id, login) == (1, 2)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EmbeddedPostgres(Path(tmp) / "postgres", ["127.0.0.1"])
        cluster.start()
        try:
            logins = databases(cluster, args.deployments, args.runs)
            kept = PostgresRunQueues(cluster.admin_url)
            ticks(kept, logins, 1, reopen=False)  # connections opened once
            rows = [
                ("kept connections", *ticks(kept, logins, args.ticks, reopen=False)),
                ("a new connection per read", *ticks(kept, logins, args.ticks, reopen=True)),
            ]
            kept.keep_only([])
        finally:
            cluster.stop()
    print(
        f"{args.deployments} LangGraph deployments, {args.runs} finished runs each, "
        f"{args.ticks} ticks\n"
    )
    print("| reads | tick wall median | tick wall p99 | platform CPU median | CPU p99 |")
    print("| --- | --- | --- | --- | --- |")
    for name, walls, cpus in rows:
        print(
            f"| {name} | {statistics.median(walls) * 1000:.1f} ms | {p99(walls) * 1000:.1f} ms "
            f"| {statistics.median(cpus) * 1000:.1f} ms | {p99(cpus) * 1000:.1f} ms |"
        )


if __name__ == "__main__":
    main()
