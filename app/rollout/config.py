"""What the revision pipeline and its phases are configured with (from settings, in bootstrap)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.kernel.addresses import deployment_url, route_hostname
from app.kernel.models import Revision
from app.replicas.autoscaler import AutoscaleDefaults
from builders.source import UnpackLimits
from manifests.recipes import Recipe, default_recipes


@dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path
    build_timeout_seconds: float
    base_domain: str
    router_port: int
    """Where users reach deployments: the HTTPS port with automatic HTTPS, else the HTTP one."""
    autoscale: AutoscaleDefaults
    """The platform's scaling bounds, which a revision's `[scale]` narrows."""
    unpack_limits: UnpackLimits = field(default_factory=UnpackLimits)
    max_download_bytes: int = 1024**3
    recipes: tuple[Recipe, ...] = field(default_factory=default_recipes)
    """How a commit becomes an image, in order of precedence (see manifests/recipes.py)."""
    platform_secrets: tuple[str, ...] = field(default=(), repr=False)
    https: bool = False
    """Automatic HTTPS is on (ACME_EMAIL): deployment URLs are https://."""
    """Secrets of the platform's own a log could show (index credentials): redacted too."""

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def server_logs_dir(self) -> Path:
        """Removed replicas' output (`app.replicas.server_logs`)."""
        return self.data_dir / "server-logs"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def log_path(self, revision: Revision) -> Path:
        return self.logs_dir / revision.deployment_id / f"{revision.id}.log"

    def hostname(self, slug: str) -> str:
        return route_hostname(slug, self.base_domain)

    def url(self, slug: str) -> str:
        return deployment_url(slug, self.base_domain, self.router_port, https=self.https)
