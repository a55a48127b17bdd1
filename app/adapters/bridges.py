"""The host's route to a deployment's network acknowledges at once (`quickack`).

Many app servers write a response's headers and its body in two small writes and leave Nagle's
algorithm on (Python's `http.server`, which every framework's development server is built on,
and several WSGI servers): the body leaves only once the headers are acknowledged. Linux delays
that acknowledgement by up to 40 ms on a connection that looks interactive, which a kept-alive
connection from the router (or from Docker's own port relay) soon does. Measured with such an
app behind Caddy: about one request in a hundred took 40-47 ms instead of 4 (p99 6.6x direct);
with `quickack 1` on the bridge's route, 6-8 ms. The app cannot be changed by the platform; the
host's side of the connection can, for the deployment's subnet only.

Best effort: without `ip` (iproute2) or the right to change routes, replicas work as before and
a warning says what is lost.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

IP_TIMEOUT_SECONDS = 5.0

Run = Callable[[Sequence[str]], str]
"""Runs a command and returns its standard output; raises OSError or CalledProcessError."""


def run_ip(argv: Sequence[str]) -> str:
    completed = subprocess.run(
        ["ip", *argv], capture_output=True, text=True, check=True, timeout=IP_TIMEOUT_SECONDS
    )
    return completed.stdout


def has_quick_acks(route: dict[str, Any]) -> bool:
    """Whether `route`, one entry of `ip -json route show`, has `quickack 1`."""
    return any(metric.get("quickack") == 1 for metric in route.get("metrics", []))


def quick_ack_arguments(route: dict[str, Any]) -> list[str] | None:
    """`ip route change` arguments that keep the route as it is and add `quickack 1`; None when
    it already has it. `route` is one entry of `ip -json route show`."""
    if has_quick_acks(route):
        return None
    argv = ["route", "change", str(route["dst"]), "dev", str(route["dev"])]
    for key, word in (("protocol", "proto"), ("scope", "scope"), ("prefsrc", "src")):
        if key in route:
            argv += [word, str(route[key])]
    return [*argv, "quickack", "1"]


def enable_quick_acks(subnet: ipaddress.IPv4Network, run: Run = run_ip) -> bool:
    """Have the host acknowledge at once on the route to `subnet`; True when it does."""
    try:
        routes = json.loads(run(["-json", "route", "show", "exact", str(subnet)]) or "[]")
        if not routes:
            log.warning("no route to the deployment network", extra={"subnet": str(subnet)})
            return False
        argv = quick_ack_arguments(routes[0])
        if argv is not None:
            run(argv)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        log.warning(
            "quick ACKs not enabled on the deployment network: replies of apps that write in "
            "small pieces may wait up to 40 ms behind the router",
            extra={"subnet": str(subnet), "error": str(detail)},
        )
        return False
    return True
