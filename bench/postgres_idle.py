"""What idle deployment databases cost the embedded Postgres in memory (issue 22).

Run with `python -m bench.postgres_idle [--databases 100] [--rest-seconds 60]
[--setting "shared_buffers = 128MB"]...`: an EmbeddedPostgres in a temporary directory, the
settings given appended to its slipway.conf (so they override Slipway's), PSS of the postmaster
and its children (from /proc/<pid>/smaps_rollup) at 0 databases, then after creating N
databases with the provisioner the platform uses (a role and a database each), and every 30 s
while they idle; then the cluster's CPU over that rest (children it reaped included). No
Docker, no network policy: only the cluster, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from app.adapters.postgres import PostgresProvisioner
from app.server.embedded import EmbeddedPostgres
from bench.scale import parse_smaps_rollup, parse_stat

MIB = 1024 * 1024


class TunedPostgres(EmbeddedPostgres):
    """Slipway's cluster with extra settings after its own."""

    extra: Sequence[str] = ()

    def _write_settings(self, port: int) -> bool:
        changed = super()._write_settings(port)
        path = self.pgdata / "slipway.conf"
        text = path.read_text()
        lines = [line for line in self.extra if line not in text.splitlines()]
        if lines:
            path.write_text(text + "\n".join(lines) + "\n")
            return True
        return changed


def cluster_pss(cluster: EmbeddedPostgres) -> tuple[float, dict[str, float]]:
    """PSS in bytes of the postmaster and its children, in all and by process title."""
    postmaster = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    parts: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pid = int(entry.name)
            if pid != postmaster and parse_stat((entry / "stat").read_text()).ppid != postmaster:
                continue
            pss, _ = parse_smaps_rollup((entry / "smaps_rollup").read_text())
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, ValueError):
            continue
        name = "postmaster" if pid == postmaster else title.split(":")[-1].strip()
        parts[name] = parts.get(name, 0.0) + pss
    return sum(parts.values()), parts


def cluster_ticks(cluster: EmbeddedPostgres) -> int:
    """CPU ticks of the postmaster (with the children it reaped: autovacuum workers, backends)
    and of its live children."""
    postmaster = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError):
            continue
        if int(entry.name) == postmaster:
            ticks += stat.ticks + stat.child_ticks
        elif stat.ppid == postmaster:
            ticks += stat.ticks
    return ticks


def report(label: str, cluster: EmbeddedPostgres) -> None:
    total, parts = cluster_pss(cluster)
    biggest = ", ".join(
        f"{name} {pss / MIB:.1f}" for name, pss in sorted(parts.items(), key=lambda p: -p[1])[:4]
    )
    print(f"{label}: {total / MIB:.1f} MiB PSS ({biggest})", flush=True)


def connect_once(admin_url: str, database: str) -> None:
    """One statement in the database, as an app's first connection: Postgres keeps statistics
    of a database from then on, and its autovacuum launcher visits only such databases."""
    import psycopg

    url = urlsplit(admin_url)._replace(path=f"/{database}").geturl()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres_idle", description=__doc__)
    parser.add_argument("--databases", type=int, default=100)
    parser.add_argument("--rest-seconds", type=float, default=60.0)
    parser.add_argument("--setting", action="append", default=[], help="e.g. 'work_mem = 1MB'")
    parser.add_argument(
        "--connect-each",
        action="store_true",
        help="connect once to every new database, as its app would (autovacuum then visits it)",
    )
    args = parser.parse_args(argv)
    TunedPostgres.extra = tuple(args.setting)
    with tempfile.TemporaryDirectory(prefix="pg-idle-") as tmp:
        cluster = TunedPostgres(Path(tmp) / "postgres")
        admin_url = cluster.start()
        try:
            print(f"settings: {list(args.setting) or 'Slipway defaults'}")
            time.sleep(5)
            report("0 databases", cluster)
            provisioner = PostgresProvisioner(admin_url, "127.0.0.1")
            for number in range(args.databases):
                name = f"bench_{number}"
                provisioner.ensure(name, name, "bench-password", connection_limit=10)
                if args.connect_each:
                    connect_once(admin_url, name)
            report(f"{args.databases} databases, just created", cluster)
            started = time.monotonic()
            ticks = cluster_ticks(cluster)
            while (left := args.rest_seconds - (time.monotonic() - started)) > 0:
                time.sleep(min(30.0, left))
                waited = time.monotonic() - started
                report(f"{args.databases} databases, idle {waited:.0f} s", cluster)
            spent = (cluster_ticks(cluster) - ticks) / os.sysconf("SC_CLK_TCK")
            idle = time.monotonic() - started
            print(f"CPU at rest: {100 * spent / idle:.2f} % of one core over {idle:.0f} s")
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
