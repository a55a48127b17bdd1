"""docs/grafana-dashboard.json asks only for what Slipway exports: every metric an expression
(or the deployment variable's query) names is one /metrics serves, with the labels it selects
and groups by; a renamed metric fails here rather than as an empty panel."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.api.metrics import PrometheusExposition
from app.kernel.db import SessionFactory
from app.kernel.models import MetricPoint, Replica, ReplicaMetricPoint, ReplicaState
from tests.support.rows import add_web_revision

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"and", "or", "unless", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?")


def metric_names_and_labels(expr: str) -> tuple[set[str], set[str]]:
    """The metrics an expression reads and the labels it matches or groups by."""
    labels = {
        matcher.split("=")[0].split("!")[0].strip()
        for body in _MATCHERS.findall(expr)
        for matcher in body.split(",")
        if matcher.strip()
    }
    labels |= {label.strip() for body in _GROUPING.findall(expr) for label in body.split(",")}
    bare = _GROUPING.sub(" ", _MATCHERS.sub(" ", _STRING.sub(" ", expr)))
    names = {
        name for name, call in _NAME.findall(bare) if not call and name.lower() not in PROMQL_WORDS
    }
    return names, labels - {""}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
        assert found, f"the variable {variable['name']} queries {text!r}"
        queries.append(f"{found[1]}{{{found[2]}!=''}}")
    return queries


def exported(sessions: SessionFactory) -> dict[str, set[str]]:
    """Each metric /metrics serves, with its labels, on a control plane that has one of each
    (and a worker that finished its passes, every part up)."""
    at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    with sessions() as session:
        add_web_revision(session)
        session.add(
            Replica(
                id="rep_1",
                revision_id="rev_1",
                container_name="web-1",
                container_id="a" * 64,
                container_port=8000,
                state=ReplicaState.ready,
            )
        )
        session.add(
            MetricPoint(
                deployment_id="dep_web",
                at=at,
                step_seconds=60,
                requests=60,
                errors=6,
                p50_ms=5.0,
                p95_ms=9.0,
                p99_ms=10.0,
                replicas=1,
            )
        )
        session.add(
            ReplicaMetricPoint(
                deployment_id="dep_web",
                replica_id="rep_1",
                at=at,
                step_seconds=60,
                cpu_cores=0.1,
                memory_bytes=1024,
            )
        )
        session.commit()
    parts = ("control-plane database", "redis", "router", "docker engine")
    passes = {"reconcile": at.timestamp(), "sample_metrics": at.timestamp()}
    text = PrometheusExposition(sessions).render(parts, frozenset(), passes).decode()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def test_every_expression_of_the_dashboard_names_a_metric_slipway_exports(
    sessions: SessionFactory,
) -> None:
    metrics = exported(sessions)
    queries = dashboard_queries()
    read: set[str] = set()
    for expr in queries:
        names, labels = metric_names_and_labels(expr)
        assert names, f"no metric in {expr!r}"
        for name in names:
            assert name in metrics, f"{expr!r} reads {name}, which /metrics does not serve"
            assert labels <= metrics[name], f"{expr!r}: {name} has only {sorted(metrics[name])}"
        read |= names
    # The list: requests, errors, latency quantiles, replicas, CPU and memory.
    assert {
        "slipway_deployment_requests_per_second",
        "slipway_deployment_errors_per_second",
        "slipway_deployment_latency_seconds",
        "slipway_deployment_replicas",
        "slipway_replica_cpu_cores",
        "slipway_replica_memory_bytes",
        # The platform's own health.
        "slipway_part_up",
        "slipway_builds_queued",
        "slipway_notifications_pending",
        "slipway_reconcile_last_pass_timestamp_seconds",
        "slipway_metrics_last_sample_timestamp_seconds",
    } <= read


def test_the_expression_reader_finds_metrics_not_functions_labels_or_strings() -> None:
    names, labels = metric_names_and_labels(
        'sum by (deployment) (rate(a_total{deployment=~"x(y)"}[5m])) / on (deployment) b > 0'
    )
    assert names == {"a_total", "b"} and labels == {"deployment"}
