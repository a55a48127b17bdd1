"""The webhook receiver under a burst, as GitHub sends one: T threads x N signed deliveries.

Run with `.venv/bin/python -m bench.webhook_burst [--threads 20] [--deliveries 20]`.

One `slipway up` with a fake GitHub; every thread has its own kept-alive connection and sends
its signed `ping` deliveries back to back, each with its own delivery id, while the worker
applies them (both processes write to the SQLite control plane). The table gives the answer
time of every POST (send → 202). Everything talks to 127.0.0.1; the platform is stopped at the
end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.push_to_live import Samples, describe_machine, log
from tests.fake_github import FakeGitHub
from tests.fake_github.payloads import headers, ping_payload
from tests.platform import WEBHOOK_SECRET, start_platform

TARGET_P99_MS = 50.0
MAX_THREADS = 64
MAX_DELIVERIES = 200
REQUEST_TIMEOUT_SECONDS = 30.0


def burst(api_url: str, app_id: int, threads: int, deliveries: int) -> tuple[Samples, int]:
    samples = Samples()
    failures: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def sender() -> None:
        with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT_SECONDS) as client:
            start.wait()
            for _ in range(deliveries):
                body = json.dumps(ping_payload(app_id=app_id)).encode()
                hdrs = headers("ping", str(uuid.uuid4()), body, WEBHOOK_SECRET, app_id=app_id)
                sent = time.perf_counter()
                response = client.post(
                    f"{api_url}/webhooks/github",
                    content=body,
                    headers={k: v for k, v in hdrs.items() if v},
                )
                answered = time.perf_counter() - sent
                with lock:
                    samples.add("answered", answered)
                    if response.status_code != 202:
                        failures.append(response.status_code)

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=REQUEST_TIMEOUT_SECONDS * deliveries)
    return samples, len(failures)


def run(threads: int, deliveries: int) -> str:
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="slipway-bench-burst-") as tmp:
        github = FakeGitHub(app_id=31337, app_slug="slipway-bench").start()
        platform = None
        try:
            log("starting slipway up")
            platform = start_platform(Path(tmp) / "platform", github)
            log("warm-up: one round")
            burst(platform.api_url, github.app_id, threads, 1)
            log(f"burst: {threads} threads x {deliveries} deliveries")
            samples, failures = burst(platform.api_url, github.app_id, threads, deliveries)
        finally:
            if platform is not None:
                platform.stop()
            github.stop()
    median, p99 = samples.median_ms("answered"), samples.p99_ms("answered")
    return "\n".join(
        [
            *machine,
            "",
            f"{threads} threads x {deliveries} signed ping deliveries, each POST -> answer",
            f"  n {samples.count('answered')}, not 202: {failures}",
            f"  median {median:.1f} ms, p99 {p99:.1f} ms (nearest rank)",
            f"target p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'NOT met'}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_burst")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--deliveries", type=int, default=20)
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be between 1 and {MAX_THREADS}")
    if not 1 <= args.deliveries <= MAX_DELIVERIES:
        parser.error(f"--deliveries must be between 1 and {MAX_DELIVERIES}")
    print(run(args.threads, args.deliveries), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
