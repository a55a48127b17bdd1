"""What metrics cost on the push path: the route switch with and without the read of the
router's counts that comes before it (issue 24).

Run with `.venv/bin/python -m bench.metrics_push_path [--routes 20] [--switches 60]`.

There is no setting that turns metrics or log collection off, so the push is not run twice;
what metrics add to it is measured piece by piece instead. On a push, metrics touch one step:
the route switch (`CaddyRouter.apply`), which first reads Caddy's `/metrics` (Caddy starts its
counts again at every configuration load, and the sampler adds up the reads made before each
load). The sampler's own tick runs every 10 s on the worker, beside pushes, not in their path:
`bench/metrics_idle.py` measures it. Log collection has nothing on the path (the engine's
json-file keeps the output; the old replica's output is copied out when it is removed, after
the new one is live: `bench/server_logs.py`).

An embedded Caddy holds `--routes` routes to a small local backend, each host having had
traffic (so the metrics text carries every host's histogram, as on a platform in use); then
`--switches` route switches (one route's upstreams change), alternately with the read before
the load and without it (`_keep_counts` replaced by nothing): wall time of `apply`, median and
p99, and Caddy's CPU per switch (utime+stime from /proc). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from app.adapters.caddy import CaddyRouter
from app.kernel.addresses import Route
from app.server.embedded import Caddy, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=20)
    parser.add_argument("--switches", type=int, default=60)
    args = parser.parse_args()
    backends = [ThreadingHTTPServer(("127.0.0.1", 0), Backend) for _ in range(2)]
    for server in backends:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    upstreams = [f"127.0.0.1:{server.server_address[1]}" for server in backends]
    with tempfile.TemporaryDirectory() as folder:
        caddy = Caddy(Path(folder) / "caddy")
        caddy.start()
        try:
            router_port = free_port()
            router = CaddyRouter(
                caddy.admin_url,
                listen=f"127.0.0.1:{router_port}",
                storage_dir=Path(folder) / "storage",
            )
            routes = [
                Route(
                    deployment_id=f"dep_{i}",
                    hostname=f"d{i}.localhost",
                    upstreams=(upstreams[0],),
                )
                for i in range(args.routes)
            ]
            router.apply(routes)
            with httpx.Client(base_url=f"http://127.0.0.1:{router_port}") as client:
                for route in routes:  # 20 requests a host, 2 of them 5xx
                    for n in range(20):
                        client.get("/fail" if n < 2 else "/", headers={"Host": route.hostname})
            text = router.metrics_text()
            keep_counts = router._keep_counts
            assert caddy._proc is not None
            pid = caddy._proc.pid
            walls: dict[str, list[float]] = {"with the read": [], "without": []}
            cpu: dict[str, float] = {"with the read": 0.0, "without": 0.0}
            for n in range(args.switches):
                mode = "with the read" if n % 2 == 0 else "without"
                router._keep_counts = keep_counts if mode == "with the read" else lambda: None  # type: ignore[method-assign]
                routes[0] = Route(
                    deployment_id="dep_0",
                    hostname="d0.localhost",
                    upstreams=(upstreams[n % 2],),
                )
                before_cpu, started = cpu_seconds(pid), time.perf_counter()
                router.apply(routes)
                walls[mode].append(time.perf_counter() - started)
                cpu[mode] += cpu_seconds(pid) - before_cpu
                router.metrics_reads()  # the sampler takes the kept reads, as every 10 s
        finally:
            caddy.stop()
            for server in backends:
                server.shutdown()
    print(
        f"{args.routes} routes with traffic (router metrics text {len(text) // 1024} KiB), "
        f"{args.switches} route switches alternating"
    )
    print("| route switch | median ms | p99 ms | Caddy CPU ms per switch |")
    print("| --- | --- | --- | --- |")
    for mode, values in walls.items():
        print(
            f"| {mode} | {statistics.median(values) * 1000:.1f} | {p99(values) * 1000:.1f} | "
            f"{cpu[mode] / len(values) * 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
