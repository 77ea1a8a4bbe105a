"""The operator as it runs: kopf handlers in-process (kopf.testing.KopfRunner) against
the real API server and moto's DynamoDB."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import kubernetes.client
import pytest

from featurekube._platform import processes
from operator_support import running_operator
from support import eventually

_eventually = functools.partial(eventually, ignore=(kubernetes.client.exceptions.ApiException,))

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trip-stats"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/trips/"}},
        "aggregations": [
            {"name": "trips_1h", "column": "trip_id", "function": "count", "window": "1h"}
        ],
        "aggregationInterval": "10m",
        "materialization": {"schedule": "@daily", "startTime": "2026-01-01T00:00:00Z"},
        "deletionPolicy": "Delete",
    },
}


@pytest.fixture
def operator(namespace: str, table_prefix: str) -> Iterator[int]:
    port = processes.free_port()
    env = {
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "1",
        "FEATUREKUBE_TABLE_PREFIX": table_prefix,
        "FEATUREKUBE_METRICS_PORT": str(port),
        "FEATUREKUBE_BACKFILL_WINDOW_SECONDS": str(400 * 86400),
    }
    with running_operator(namespace, env):
        yield port


def test_the_operator_materializes_reports_and_cleans_up_a_view(
    operator: int, kube_api: kubernetes.client.ApiClient, namespace: str, table_prefix: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", VIEW
    )

    def view() -> dict[str, Any]:
        body: dict[str, Any] = custom.get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-trip-stats"
        )
        return body

    apps = _eventually(
        lambda: custom.list_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
        )["items"],
        30,
        "the operator starts the backfill",
    )
    assert "featurekube.dev/finalizer" in view()["metadata"]["finalizers"]
    # One window from startTime up to the last daily tick (backfill windows may span 400 days).
    (app,) = apps
    custom.patch_namespaced_custom_object_status(
        "sparkoperator.k8s.io",
        "v1beta2",
        namespace,
        "sparkapplications",
        app["metadata"]["name"],
        {"status": {"applicationState": {"state": "COMPLETED"}, "driverInfo": {}}},
    )

    def ready() -> bool:
        conditions = (view().get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    _eventually(ready, 30, "the view becomes Ready")
    status = view()["status"]
    assert status["observedGeneration"] == 1
    table = status["onlineTable"]
    assert table.startswith(table_prefix)
    events = kubernetes.client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    assert any(
        e.reason == "Serving" and e.involved_object.name == "driver-trip-stats" for e in events
    )
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{operator}/metrics", timeout=5).read().decode()
    )
    assert (
        f'featurekube_feature_view_freshness_seconds{{feature_view="driver-trip-stats",namespace="{namespace}"}}'
        in metrics
    )
    # No driver report here, so the engine that ran the window is not known.
    labels = f'{{engine="unknown",feature_view="driver-trip-stats",namespace="{namespace}"}}'
    assert f"featurekube_windows_succeeded_total{labels} 1.0" in metrics

    # A backfill asked for by annotation runs, and is recorded as handled.
    request = "2026-01-01T00:00:00Z/2026-01-02T00:00:00Z # again"
    custom.patch_namespaced_custom_object(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        "driver-trip-stats",
        {"metadata": {"annotations": {"featurekube.dev/backfill": request}}},
    )
    _eventually(
        lambda: view()["status"].get("backfillRequest") == request,
        30,
        "the operator takes up the backfill",
    )
    (rerun,) = custom.list_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
    )["items"]
    assert rerun["metadata"]["annotations"]["featurekube.dev/run"]

    custom.delete_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-trip-stats"
    )

    def gone() -> bool:
        try:
            view()
        except kubernetes.client.exceptions.ApiException as exc:
            return exc.status == 404
        return False

    _eventually(gone, 30, "the finalizer runs and the view is deleted")
    dynamodb = boto3.client("dynamodb")
    assert table not in dynamodb.list_tables()["TableNames"]
