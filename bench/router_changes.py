"""The router under route changes: one change with 100 routes, and the p99 during a burst.

Run with `.venv/bin/python -m bench.router_changes [--routes 100] [--changes 50]`.

An embedded Caddy (app.server.embedded.Caddy) holds `--routes` routes, all to one small backend (a
second Caddy answering 200 on two ports). Measured:

* one change: the wall time of `CaddyRouter.apply` when one route's upstreams change, and
  Caddy's CPU (utime+stime from /proc) per change, over `--changes` changes; then the same
  with a forced full `POST /load` (`CaddyRouter.load`, when present);
* the router's latency: `hey` against one route (bounded by `--requests`) at rest, then while
  another route's upstreams are changed `--changes` times.

No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from app.adapters.caddy import CaddyRouter
from app.kernel.addresses import Route
from app.kernel.errors import RouterError
from app.server.embedded import Caddy, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _backend(data: Path, ports: tuple[int, int]) -> Caddy:
    backend = Caddy(data)
    backend.start(
        {
            "apps": {
                "http": {
                    "servers": {
                        "backend": {
                            "listen": [f"127.0.0.1:{port}" for port in ports],
                            "automatic_https": {"disable": True},
                            "routes": [
                                {"handle": [{"handler": "static_response", "body": "ok\n"}]}
                            ],
                        }
                    }
                }
            }
        }
    )
    return backend


def _hey(port: int, host: str, requests: int) -> dict[str, float]:
    """hey's p50/p99 (ms), non-200 answers and failed requests (its error distribution, each
    error's text printed once)."""
    out = subprocess.run(
        [
            "hey",
            "-n",
            str(requests),
            "-c",
            "8",
            "-t",
            "10",
            "-host",
            host,
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = {
        key: float(value) * 1000 for key, value in re.findall(r"\s+(\d+)% in ([\d.]+) secs", out)
    }
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    if errors is not None:
        print("  hey errors:", " | ".join(errors.group(1).strip().splitlines()[:3]))
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    return {
        "p50": found.get("50", -1),
        "p99": found.get("99", -1),
        "non200": sum(int(n) for code, n in codes if code != "200"),
        "errors": 0
        if errors is None
        else sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", errors.group(1), re.M)),
    }


FAILURES: list[str] = []


def _retrying(apply: Any) -> Any:
    """A change the router refused is counted and tried again (main's `/load` was seen reset by
    Caddy replacing its admin server)."""

    def run(routes: list[Route]) -> None:
        for _ in range(5):
            try:
                apply(routes)
                return
            except RouterError as exc:
                FAILURES.append(str(exc))
        raise RuntimeError(FAILURES[-1])

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--routes", type=int, default=100, help="at least 2: one served, one changed"
    )
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    if args.routes < 2:
        parser.error("--routes: at least 2 (one served by hey, one changed)")
    with tempfile.TemporaryDirectory(prefix="slipway-bench-router-") as tmp:
        data = Path(tmp)
        ports = (free_port(), free_port())
        backend = _backend(data / "backend", ports)
        router_caddy = Caddy(data / "router")
        listen_port = free_port()
        try:
            router_caddy.start()
            assert router_caddy._proc is not None
            pid = router_caddy._proc.pid
            router = CaddyRouter(
                router_caddy.admin_url,
                listen=f"127.0.0.1:{listen_port}",
                storage_dir=router_caddy.storage_dir,
            )
            one, two = (
                (f"127.0.0.1:{ports[0]}",),
                (f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"),
            )
            routes = [
                Route(f"app{i:03d}.bench.test", f"dep{i:03d}", one) for i in range(args.routes)
            ]
            router.apply(routes)

            def changed(i: int) -> list[Route]:
                upstreams = two if i % 2 == 0 else one
                return [
                    routes[0],
                    Route(routes[1].hostname, routes[1].deployment_id, upstreams),
                    *routes[2:],
                ]

            def series(apply: Any) -> tuple[list[float], float]:
                times = []
                cpu = _cpu_seconds(pid)
                for i in range(args.changes):
                    started = time.perf_counter()
                    apply(changed(i))
                    times.append((time.perf_counter() - started) * 1000)
                return times, (_cpu_seconds(pid) - cpu) / args.changes * 1000

            def show(name: str, times: list[float], cpu_ms: float) -> None:
                times.sort()
                print(
                    f"{name:<28} median {statistics.median(times):6.1f} ms  "
                    f"p90 {times[int(len(times) * 0.9)]:6.1f} ms  Caddy CPU {cpu_ms:5.1f} ms/change"
                )

            print(f"{args.routes} routes, {args.changes} changes of one route's upstreams")
            show("apply (this checkout)", *series(_retrying(router.apply)))
            if hasattr(router, "load"):
                show("full POST /load", *series(_retrying(router.load)))
            router.apply(routes)
            host = routes[0].hostname
            _hey(listen_port, host, 2000)  # warm up
            rest = _hey(listen_port, host, args.requests)
            done = threading.Event()

            def burst() -> None:
                for i in range(args.changes):
                    _retrying(router.apply)(changed(i))
                    time.sleep(0.05)
                done.set()

            thread = threading.Thread(target=burst)
            thread.start()
            during = _hey(listen_port, host, args.requests)
            thread.join(timeout=120)
            print(
                f"hey -n {args.requests} -c 8 on {host}: at rest"
                f" p50 {rest['p50']:.1f} ms p99 {rest['p99']:.1f} ms"
                f" non-200 {rest['non200']:.0f} errors {rest['errors']:.0f}"
            )
            print(
                f"  during {args.changes} changes:"
                f" p50 {during['p50']:.1f} ms p99 {during['p99']:.1f} ms"
                f" non-200 {during['non200']:.0f} errors {during['errors']:.0f}"
            )
            log = router_caddy.log_path.read_text()
            loads, warnings = log.count('"uri":"/load"'), log.count('"level":"warn"')
            reloads = log.count("load complete")
            print(f"router calls refused and retried: {len(FAILURES)}")
            print(f"caddy.log: {loads} POST /load, {warnings} warnings, {reloads} reloads")
        finally:
            router_caddy.stop()
            backend.stop()


if __name__ == "__main__":
    main()
