"""What a deployment's scaling looks like now, for the API: counts, policy, samples, decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from app.kernel.models import Deployment, Revision
from app.replicas.autoscaler import AutoscaleDefaults, ScalerState, ScalingPolicy, scaling_policy
from app.replicas.replica_set import ready_count
from manifests.config import ScaleConfig
from manifests.run import RunConfig


@dataclass(frozen=True)
class ScalingReport:
    deployment: Deployment
    current: int
    """Ready replicas of the live revision (those the router sends requests to)."""
    policy: ScalingPolicy
    state: ScalerState


def scaling_report(
    session: Session, deployment: Deployment, defaults: AutoscaleDefaults
) -> ScalingReport:
    scale: ScaleConfig | None = None
    if deployment.live_revision_id is not None:
        revision = session.get(Revision, deployment.live_revision_id)
        if revision is not None and revision.run_config:
            scale = RunConfig.from_json(revision.run_config).scale_config()
    return ScalingReport(
        deployment=deployment,
        current=ready_count(session, deployment.live_revision_id),
        policy=scaling_policy(deployment.type, defaults, scale),
        state=ScalerState.from_json(deployment.scaler_state),
    )


def moment(seconds: float) -> datetime:
    """The autoscaler keeps times as Unix seconds; the API shows them as UTC datetimes."""
    return datetime.fromtimestamp(seconds, tz=UTC)
