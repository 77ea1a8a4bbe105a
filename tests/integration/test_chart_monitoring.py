"""The chart's PrometheusRule and Grafana dashboard as helm renders them (helm built
from its Go module by ``hack/helm/build.sh``, cached): every rule and the dashboard
read only the metrics featurekube exports, and the values set the thresholds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import helm_binary
from featurekube_operator import metrics as operator_metrics
from featurekube_server import metrics as server_metrics
from promql_names import dashboard_expressions, exported_names, metric_names

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "featurekube"


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def _render(helm: Path, tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    env = {"HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [str(helm), "template", "fk", str(CHART), "-n", "featurekube", "-f", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_rules_and_the_dashboard_render_and_read_exported_metrics(
    helm: Path, tmp_path: Path
) -> None:
    values = {
        "monitoring": {
            "prometheusRule": {
                "enabled": True,
                "servingLatency": {"p99Seconds": 0.02},
                "servingErrors": {"ratio": 0.05, "codes": "UNAVAILABLE|INTERNAL"},
            },
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "grafana",
                "annotations": {"grafana_folder": "featurekube"},
            },
        }
    }
    docs = _render(helm, tmp_path, values)
    exported = exported_names(
        [operator_metrics.Metrics().registry, server_metrics.ServerMetrics("any").registry]
    )

    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert len(alerts) == 6
    for name, alert in alerts.items():
        assert "{{ ." not in alert["expr"], name  # every value filled in
        names = metric_names(alert["expr"])
        assert names and names <= exported, f"{name}: {sorted(names - exported)}"
    assert alerts["FeaturekubeServingSlow"]["expr"].rstrip().endswith("> 0.02")
    assert 'code=~"UNAVAILABLE|INTERNAL"' in alerts["FeaturekubeServingErrors"]["expr"]
    assert "objective" in alerts["FeaturekubeFeatureViewStale"]["expr"]
    # Prometheus' own templates reach Prometheus untouched.
    assert "{{ $labels.feature }}" in alerts["FeaturekubeFeatureDrifted"]["annotations"]["summary"]

    (config,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fk-featurekube-dashboard"
    ]
    assert config["metadata"]["namespace"] == "grafana"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "featurekube"}
    dashboard = json.loads(config["data"]["featurekube.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "featurekube.json").read_text())
    for expression in dashboard_expressions(dashboard):
        assert metric_names(expression) <= exported, expression


def test_by_default_neither_is_rendered(helm: Path, tmp_path: Path) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _render(helm, tmp_path, {})}
    assert not any(kind == "PrometheusRule" for kind, _ in kinds)
    assert ("ConfigMap", "fk-featurekube-dashboard") not in kinds
