"""Health checks of a new replica, from the host, on its published port."""

from __future__ import annotations

import httpx

PROBE_TIMEOUT_SECONDS = 2.0
"""One probe's patience; the overall deadline is SLIPWAY_HEALTH_TIMEOUT_SECONDS."""


class HttpHealthProbe:
    def answers(self, host_port: int, path: str) -> bool:
        """Any status below 500 means the app is up and routing requests."""
        try:
            response = httpx.get(
                f"http://127.0.0.1:{host_port}{path}",
                timeout=PROBE_TIMEOUT_SECONDS,
                headers={"User-Agent": "Slipway-HealthCheck"},
                trust_env=False,  # a loopback probe must never go through a proxy
            )
        except httpx.HTTPError:
            return False
        return response.status_code < 500
