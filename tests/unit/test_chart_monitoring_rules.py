"""The chart's alerts and Grafana dashboard read only metrics featurekube exports: the
names are collected from the operator's and the feature server's own registries, so a
renamed metric fails here rather than silently in someone's Prometheus; no I/O beyond
reading the chart's files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from featurekube_operator import metrics as operator_metrics
from featurekube_server import metrics as server_metrics
from promql_names import dashboard_expressions, exported_names, metric_names

CHART = Path(__file__).parents[2] / "charts" / "featurekube"
DASHBOARD = CHART / "dashboards" / "featurekube.json"
RULES = CHART / "templates" / "prometheusrule.yaml"


def _exported() -> set[str]:
    return exported_names(
        [operator_metrics.Metrics().registry, server_metrics.ServerMetrics("any").registry]
    )


def _rule_expressions() -> list[str]:
    """The expr of each rule in the template, its Helm actions left in."""
    found = re.findall(r"expr: >-\n((?:            .*\n)+)", RULES.read_text())
    return [" ".join(line.strip() for line in block.splitlines()) for block in found]


def test_the_exported_names_come_from_the_registries() -> None:
    names = _exported()
    assert {
        "featurekube_feature_view_freshness_seconds",
        "featurekube_feature_view_freshness_objective_seconds",
        "featurekube_windows_failed_total",
        "featurekube_expectation_violation_rows",
        "featurekube_expectation_violating_windows_total",
        "featurekube_feature_drift_psi",
        "featurekube_server_request_seconds_bucket",
        "featurekube_server_errors_total",
    } <= names


def test_every_alert_reads_exported_metrics() -> None:
    expressions = _rule_expressions()
    assert len(expressions) == 6
    exported = _exported()
    for expression in expressions:
        names = metric_names(expression)
        assert names, expression
        assert names <= exported, f"{sorted(names - exported)} are not exported: {expression}"


def test_the_dashboard_parses_and_reads_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["uid"] == "featurekube" and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    expressions = list(dashboard_expressions(dashboard))
    assert len(expressions) > 10
    exported = _exported()
    read: set[str] = set()
    for expression in expressions:
        names = metric_names(expression)
        assert names, expression
        assert names <= exported, f"{sorted(names - exported)} are not exported: {expression}"
        read |= names
    # The dashboard shows each view's health and each server's traffic.
    assert {
        "featurekube_feature_view_freshness_objective_seconds",
        "featurekube_expectation_violation_rows",
        "featurekube_feature_drift_psi",
        "featurekube_server_request_seconds_bucket",
        "featurekube_server_errors_total",
    } <= read


def test_a_name_that_is_not_exported_is_caught() -> None:
    assert metric_names('sum(rate(featurekube_windows_failed[5m])) > 0 and on (a) b{c="d"}') == {
        "featurekube_windows_failed",
        "b",
    }
    assert "featurekube_windows_failed" not in _exported()


def test_the_values_name_every_threshold_the_rules_use() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]
    rule = values["prometheusRule"]
    used = set(re.findall(r"\{\{ \.(\w+)\.(\w+) \}\}", RULES.read_text()))
    for group, key in used:
        assert key in rule[group], f"values.yaml has no monitoring.prometheusRule.{group}.{key}"
    assert values["grafanaDashboard"]["enabled"] is False
