"""How a built image runs, recorded on its revision: the reconciler starts replicas from it.

Pure data: what the build learned from the commit (slipway.toml's [deploy] and [scale], the
LangGraph recipe) that starting one more replica needs, without the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from manifests.config import ScaleConfig, scale_config_of


@dataclass(frozen=True)
class RunConfig:
    port: int
    health_path: str = "/"
    langgraph_runtime: str | None = None
    """Set for a LangGraph Server: it needs the deployment's own Redis."""
    scale: dict[str, Any] = field(default_factory=dict)
    """slipway.toml's [scale] table as written (min, max, target), checked at build time."""
    state_dir: str | None = None
    """A directory kept on the deployment's own volume across replicas and revisions."""

    def scale_config(self) -> ScaleConfig | None:
        """The [scale] table checked again (it was at build time); None when none was set or
        a stored one no longer reads."""
        if not self.scale:
            return None
        try:
            return ScaleConfig.model_validate(self.scale)
        except ValidationError:
            return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "port": self.port,
                "health_path": self.health_path,
                "langgraph_runtime": self.langgraph_runtime,
                "scale": self.scale,
                "state_dir": self.state_dir,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        raw = json.loads(text)
        return cls(
            port=int(raw["port"]),
            health_path=str(raw.get("health_path") or "/"),
            langgraph_runtime=raw.get("langgraph_runtime"),
            scale=dict(raw.get("scale") or {}),
            state_dir=raw.get("state_dir"),
        )


def scale_table(labels: dict[str, str]) -> dict[str, Any]:
    """The image's [scale] as a run config records it: only the keys the repository set."""
    scale = scale_config_of(labels)
    return scale.model_dump(exclude_none=True) if scale is not None else {}
