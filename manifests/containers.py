"""Container specs: what the runtime starts for a revision, with the deployment type's limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.models import DeploymentType


@dataclass(frozen=True)
class Limits:
    cpus: float
    memory_bytes: int
    max_replicas: int


GIB = 1024**3

LIMITS: dict[DeploymentType, Limits] = {
    DeploymentType.development: Limits(cpus=1.0, memory_bytes=1 * GIB, max_replicas=1),
    DeploymentType.production: Limits(cpus=2.0, memory_bytes=2 * GIB, max_replicas=10),
}
"""The deployment types users choose from (as LangGraph Cloud offers them)."""


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    port: int
    """Port the app listens on inside the container; published on 127.0.0.1 at a free port."""
    limits: Limits
    env: dict[str, str] = field(repr=False)
    """Includes secrets (DATABASE_URI, user env): never logged, hence repr=False."""
    labels: dict[str, str] = field(default_factory=dict)
    extra_hosts: dict[str, str] = field(default_factory=dict)
