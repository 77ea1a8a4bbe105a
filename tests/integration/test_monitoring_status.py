"""What on-call and data scientists see of a view, with the operator running as it
does (kopf handlers in-process, kopf.testing.KopfRunner) against the real API server:
a Warn expectation broken by a window, and a feature's drift over the threshold, show
in status, a condition, an event and a metric; tags become labels; and ``featurekube
list`` and ``describe`` find the view. The Spark Operator and the kubelet are played by
writing the application's status and its driver pod with the job's report as
termination message."""

from __future__ import annotations

import functools
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from featurekube._platform import processes, runtime
from featurekube.cli import main as cli_main
from operator_support import running_operator
from support import eventually

_eventually = functools.partial(eventually, ignore=(kubernetes.client.exceptions.ApiException,))

GROUP = ("featurekube.dev", "v1alpha1")
SPARK = ("sparkoperator.k8s.io", "v1beta2")
NAME = "driver-trip-stats"
VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": NAME, "labels": {"app": "eta"}},
    "spec": {
        "owner": "eta-team",
        "tags": {"team": "rides", "cost center": "42"},
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/trips/"}},
        "aggregations": [
            {"name": "trips_1h", "column": "trip_id", "function": "count", "window": "1h"}
        ],
        "aggregationInterval": "10m",
        "materialization": {
            "schedule": "@daily",
            "startTime": "2026-01-01T00:00:00Z",
            "engine": "spark",
        },
        "expectations": [
            {"feature": "trips_1h", "notNull": True, "max": 40, "onViolation": "Warn"},
        ],
        "monitoring": {
            "freshnessObjective": "400d",
            "drift": {"reference": {"trainingPull": "eta-2026-01"}, "threshold": 0.2},
        },
        "deletionPolicy": "Delete",
    },
}
REPORT = {
    "published": True,
    "engine": "spark",
    "rows": {"read": 90, "offline": 30, "online": 4},
    "violations": [
        {
            "feature": "trips_1h",
            "check": "max",
            "rows": 2,
            "onViolation": "Warn",
            "message": "2 rows of trips_1h are above max 40",
        }
    ],
    "drift": {"trips_1h": 0.35},
}


@pytest.fixture
def operator(namespace: str, table_prefix: str) -> Iterator[int]:
    port = processes.free_port()
    env = {
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "1",
        "FEATUREKUBE_TABLE_PREFIX": table_prefix,
        "FEATUREKUBE_METRICS_PORT": str(port),
        "FEATUREKUBE_BACKFILL_WINDOW_SECONDS": str(4000 * 86400),
    }
    with running_operator(namespace, env):
        yield port


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (body.get("status") or {}).get("conditions") or ()
    return next((c for c in conditions if c["type"] == kind), None)


def test_a_broken_warn_expectation_tags_and_discovery(
    operator: int,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(*GROUP, namespace, "featureviews", VIEW)

    def view() -> dict[str, Any]:
        body: dict[str, Any] = custom.get_namespaced_custom_object(
            *GROUP, namespace, "featureviews", NAME
        )
        return body

    # Tags that are valid labels become labels, beside the view's own; the others are
    # explained in an event.
    labels = _eventually(
        lambda: (view()["metadata"].get("labels") or {}).get("team") and view()["metadata"],
        30,
        "the operator mirrors the view's tags as labels",
    )["labels"]
    assert labels == {"app": "eta", "team": "rides"}
    selected = custom.list_namespaced_custom_object(
        *GROUP, namespace, "featureviews", label_selector="team=rides"
    )["items"]
    assert [v["metadata"]["name"] for v in selected] == [NAME]

    # The one backfill window completes with a report of a broken Warn check.
    (app,) = _eventually(
        lambda: custom.list_namespaced_custom_object(*SPARK, namespace, "sparkapplications")[
            "items"
        ],
        30,
        "the operator starts the backfill",
    )
    runtime.record_driver_pod(kube_api, app, 0, json.dumps(REPORT))
    custom.patch_namespaced_custom_object_status(
        *SPARK,
        namespace,
        "sparkapplications",
        app["metadata"]["name"],
        {
            "status": {
                "applicationState": {"state": "COMPLETED"},
                "driverInfo": {"podName": f"{app['metadata']['name']}-driver"},
            }
        },
    )
    status = _eventually(
        lambda: view()["status"].get("expectations") and view()["status"],
        30,
        "the window's expectation verdicts reach the view's status",
    )
    window_start = "2026-01-01T00:00:00Z"
    assert status["expectations"] == [
        {
            "feature": "trips_1h",
            "check": "notNull",
            "onViolation": "Warn",
            "rows": 0,
            "windowStart": window_start,
        },
        {
            "feature": "trips_1h",
            "check": "max",
            "onViolation": "Warn",
            "rows": 2,
            "message": "2 rows of trips_1h are above max 40",
            "windowStart": window_start,
        },
    ]
    met = _condition(view(), "ExpectationsMet")
    assert met is not None and (met["status"], met["reason"]) == ("False", "WarnViolations")
    assert "trips_1h" in met["message"]
    assert status["drift"] == [
        {"feature": "trips_1h", "psi": 0.35, "drifted": True, "windowStart": window_start}
    ]
    drifted = _condition(view(), "Drifted")
    assert drifted is not None and (drifted["status"], drifted["reason"]) == (
        "True",
        "DriftOverThreshold",
    )
    fresh = _condition(view(), "Fresh")
    assert fresh is not None and fresh["status"] == "True"
    assert view()["status"]["freshness"]["objective"] == "400d"

    def events() -> list[Any]:
        return [
            e
            for e in kubernetes.client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
            if e.involved_object.name == NAME
        ]

    violated = _eventually(
        lambda: [e for e in events() if e.reason == "ExpectationViolated"],
        30,
        "a Warning event for the broken expectation",
    )
    assert len(violated) == 1 and violated[0].type == "Warning"
    assert "2 rows of trips_1h are above max 40 (onViolation: Warn)" in violated[0].message
    (untagged,) = [e for e in events() if e.reason == "TagNotLabelled"]
    (drift_event,) = _eventually(
        lambda: [e for e in events() if e.reason == "DriftOverThreshold"],
        30,
        "a Warning event for the drifted feature",
    )
    assert drift_event.type == "Warning" and "trips_1h (0.350)" in drift_event.message
    assert "cost center" in untagged.message and untagged.type == "Warning"

    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{operator}/metrics", timeout=5).read().decode()
    )
    labels_text = (
        f'check="max",feature="trips_1h",feature_view="{NAME}",namespace="{namespace}",'
        'on_violation="Warn"'
    )
    assert f"featurekube_expectation_violation_rows{{{labels_text}}} 2.0" in metrics
    assert f"featurekube_expectation_violating_windows_total{{{labels_text}}} 1.0" in metrics
    view_labels = f'feature_view="{NAME}",namespace="{namespace}"'
    assert f'featurekube_feature_drift_psi{{feature="trips_1h",{view_labels}}} 0.35' in metrics
    assert f"featurekube_feature_drift_threshold{{{view_labels}}} 0.2" in metrics
    assert (
        f'featurekube_feature_view_freshness_objective_seconds{{feature_view="{NAME}",'
        f'namespace="{namespace}"}} 3.456e+07'
    ) in metrics

    # Found from the command line: by tag, and described.
    assert cli_main.main(["list", "-n", namespace, "--tag", "team=rides"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:3] == ["NAMESPACE", "NAME", "OWNER"]
    assert listed[1].split()[:4] == [namespace, f"fv/{NAME}", "eta-team", "driver_id"]
    assert cli_main.main(["list", "-A", "--tag", "team=maps", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli_main.main(["describe", NAME, "-n", namespace, "-o", "json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["expectations"][1]["rows"] == 2
    assert described["freshness"]["met"] is True
    assert cli_main.main(["describe", f"fv/{NAME}", "-n", namespace]) == 0
    text = capsys.readouterr().out
    assert "ExpectationsMet  False" in text and "WarnViolations" in text
    assert "trips_1h  max" in text
    assert cli_main.main(["describe", "fs/nothing", "-n", namespace]) == 1
    assert "no FeatureService 'nothing'" in capsys.readouterr().err

    # A tag removed takes its label with it; the view's own label stays.
    custom.patch_namespaced_custom_object(
        *GROUP, namespace, "featureviews", NAME, {"spec": {"tags": None}}
    )
    _eventually(
        lambda: view()["metadata"].get("labels") == {"app": "eta"},
        30,
        "the operator removes the label of the removed tag",
    )
