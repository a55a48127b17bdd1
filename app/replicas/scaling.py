"""What a deployment's scaling looks like now, for the API: counts, policy, samples, decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from app.kernel.crypto import SecretBox
from app.kernel.models import Deployment, Revision
from app.replicas.autoscaler import (
    JOBS_PER_WORKER_ENV,
    AutoscaleDefaults,
    ScalerState,
    ScalingPolicy,
    scaling_policy,
)
from app.replicas.replica_set import ready_count
from app.replicas.run_queue import QUEUED_RUNTIME
from manifests.config import ScaleConfig
from manifests.containers import DeploymentType
from manifests.run import RunConfig


@dataclass(frozen=True)
class ScalingReport:
    deployment: Deployment
    current: int
    """Ready replicas of the live revision (those the router sends requests to)."""
    policy: ScalingPolicy
    state: ScalerState


def scaling_report(
    session: Session,
    deployment: Deployment,
    defaults: AutoscaleDefaults,
    secrets: SecretBox | None = None,
) -> ScalingReport:
    """`secrets` reads the live revision's N_JOBS_PER_WORKER, so a LangGraph deployment's
    policy shows the runs per replica its queue is counted at (as the reconciler counts it)."""
    scale: ScaleConfig | None = None
    queue_env: dict[str, str] | None = None
    if deployment.live_revision_id is not None:
        revision = session.get(Revision, deployment.live_revision_id)
        if revision is not None and revision.run_config:
            run = RunConfig.from_json(revision.run_config)
            scale = run.scale_config()
            if (
                secrets is not None
                and run.langgraph_runtime == QUEUED_RUNTIME
                and deployment.type is DeploymentType.production
            ):
                env = secrets.decrypt_env(revision.env_encrypted)
                queue_env = {k: v for k, v in env.items() if k == JOBS_PER_WORKER_ENV}
    return ScalingReport(
        deployment=deployment,
        current=ready_count(session, deployment.live_revision_id),
        policy=scaling_policy(deployment.type, defaults, scale, run_queue_env=queue_env),
        state=ScalerState.from_json(deployment.scaler_state),
    )


def moment(seconds: float) -> datetime:
    """The autoscaler keeps times as Unix seconds; the API shows them as UTC datetimes."""
    return datetime.fromtimestamp(seconds, tz=UTC)
