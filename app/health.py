"""Health checks of a new replica, dialled at its endpoint (as the router will dial it)."""

from __future__ import annotations

import httpx

from app.ports import Endpoint

PROBE_TIMEOUT_SECONDS = 2.0
"""One probe's patience; the overall deadline is SLIPWAY_HEALTH_TIMEOUT_SECONDS."""


class HttpHealthProbe:
    def answers(self, endpoint: Endpoint, path: str) -> bool:
        """Any status below 500 means the app is up and routing requests."""
        try:
            response = httpx.get(
                f"http://{endpoint.address}{path}",
                timeout=PROBE_TIMEOUT_SECONDS,
                headers={"User-Agent": "Slipway-HealthCheck"},
                trust_env=False,  # a probe of a replica must never go through a proxy
            )
        except httpx.HTTPError:
            return False
        return response.status_code < 500
