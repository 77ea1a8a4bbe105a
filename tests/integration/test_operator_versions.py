"""Pinned versions and the retention of retired ones, against the real API server,
moto's DynamoDB and S3, with a clock the test moves. SparkApplications are completed
by writing their status, as the Spark Operator would."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from urllib.parse import urlparse

import boto3
import kubernetes.client
import pytest
import yaml

from featurekube_operator import naming, reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings
from operator_support import Clock

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
GROUP = ("featurekube.dev", "v1alpha1")
SPARK = ("sparkoperator.k8s.io", "v1beta2")
NAME = "driver-profile"

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": NAME},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "features": [{"name": "rating", "type": "float64"}],
        "materialization": {"schedule": "@hourly", "startTime": "2026-01-01T00:00:00Z"},
        "deletionPolicy": "Delete",
        "versionRetention": "1h",
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {
        "owner": "eta-team",
        "features": [{"featureView": NAME, "version": 1}],
        "server": {"replicas": 1},
    },
}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 3 * H + dt.timedelta(minutes=5))


@pytest.fixture
def ctx(
    kube_api: kubernetes.client.ApiClient, table_prefix: str, s3_prefix: str, clock: Clock
) -> reconcile.Context:
    settings = OperatorSettings(
        table_prefix=table_prefix,
        offline_uri=f"{s3_prefix}offline",
        backfill_window_seconds=3600,
        server_image="featurekube/server:test",
    )
    return reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics(), clock
    )


def _custom(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api)


def _apply(kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    plural = "featureviews" if doc["kind"] == "FeatureView" else "featureservices"
    api = _custom(kube_api)
    try:
        current = api.get_namespaced_custom_object(
            *GROUP, namespace, plural, doc["metadata"]["name"]
        )
    except kubernetes.client.exceptions.ApiException:
        api.create_namespaced_custom_object(*GROUP, namespace, plural, doc)
        return
    meta = {**doc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
    api.replace_namespaced_custom_object(
        *GROUP, namespace, plural, doc["metadata"]["name"], {**doc, "metadata": meta}
    )


def _step(ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str) -> Any:
    """One reconcile of the view, its status written back as kopf would."""
    api = _custom(kube_api)
    body = api.get_namespaced_custom_object(*GROUP, namespace, "featureviews", NAME)
    outcome = reconcile.reconcile_feature_view(ctx, body)
    api.patch_namespaced_custom_object_status(
        *GROUP, namespace, "featureviews", NAME, {"status": outcome.status}
    )
    return outcome.status


def _step_service(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> Any:
    api = _custom(kube_api)
    body = api.get_namespaced_custom_object(*GROUP, namespace, "featureservices", "eta-model")
    outcome = reconcile.reconcile_feature_service(ctx, body)
    api.patch_namespaced_custom_object_status(
        *GROUP, namespace, "featureservices", "eta-model", {"status": outcome.status}
    )
    return outcome.status


def _run_until_idle(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> Any:
    """Reconcile, completing every new application, until nothing new starts."""
    status: Any = {}
    for _ in range(12):
        status = _step(ctx, kube_api, namespace)
        items = _custom(kube_api).list_namespaced_custom_object(
            *SPARK, namespace, "sparkapplications"
        )["items"]
        fresh = [a["metadata"]["name"] for a in items if not a.get("status")]
        if not fresh:
            return status
        for name in fresh:
            _custom(kube_api).patch_namespaced_custom_object_status(
                *SPARK,
                namespace,
                "sparkapplications",
                name,
                {
                    "status": {
                        "applicationState": {"state": "COMPLETED"},
                        "driverInfo": {"podName": f"{name}-driver"},
                        "terminationTime": ctx.clock().isoformat().replace("+00:00", "Z"),
                    }
                },
            )
    return status


def _with_feature(doc: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    changed["spec"]["features"].append({"name": "trips", "type": "int64"})
    return changed


def _write_delta(ctx: reconcile.Context, namespace: str, version: int) -> None:
    """Objects where a version's Delta table lives, as its jobs would leave them."""
    uri = urlparse(naming.offline_uri(ctx.settings, namespace, NAME, version))
    s3 = boto3.client("s3")
    for key in ("_delta_log/00000000000000000000.json", "event_date=2026-01-01/part-0.parquet"):
        s3.put_object(Bucket=uri.netloc, Key=f"{uri.path.strip('/')}/{key}", Body=b"x")


def _delta_objects(ctx: reconcile.Context, namespace: str, version: int) -> int:
    uri = urlparse(naming.offline_uri(ctx.settings, namespace, NAME, version))
    found = boto3.client("s3").list_objects_v2(Bucket=uri.netloc, Prefix=uri.path.strip("/") + "/")
    return int(found.get("KeyCount", 0))


def _table(ctx: reconcile.Context, namespace: str, version: int) -> str:
    return naming.online_table(ctx.settings, namespace, NAME, version)


def _serve_two_versions(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> Any:
    """Version 1 serves, then a new feature makes version 2, which backfills and serves."""
    _apply(kube_api, namespace, VIEW)
    assert _run_until_idle(ctx, kube_api, namespace)["version"] == 1
    _write_delta(ctx, namespace, 1)
    _apply(kube_api, namespace, _with_feature(VIEW))
    status = _run_until_idle(ctx, kube_api, namespace)
    assert status["version"] == 2
    _write_delta(ctx, namespace, 2)
    return status


def test_a_retired_versions_table_and_delta_data_go_after_the_retention_period(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    status = _serve_two_versions(ctx, clock, kube_api, namespace)
    retired_at = clock.now.isoformat().replace("+00:00", "Z")
    assert status["retiredVersions"] == [{"version": 1, "since": retired_at}]

    clock.now += 30 * dt.timedelta(minutes=1)
    _step(ctx, kube_api, namespace)
    assert ctx.tables.exists(_table(ctx, namespace, 1)), "kept within the retention period"
    assert _delta_objects(ctx, namespace, 1) == 2

    clock.now += 31 * dt.timedelta(minutes=1)
    status = _step(ctx, kube_api, namespace)

    assert not ctx.tables.exists(_table(ctx, namespace, 1))
    assert _delta_objects(ctx, namespace, 1) == 0
    assert status["retiredVersions"] == [{"version": 1, "since": retired_at, "deleted": True}]
    # The serving version is untouched.
    assert ctx.tables.exists(_table(ctx, namespace, 2))
    assert _delta_objects(ctx, namespace, 2) == 2

    # A restarted operator finds the record and deletes nothing more.
    restarted = reconcile.Context(ctx.settings, ctx.kube, OnlineTables(), Metrics(), clock)
    clock.now += H
    again = _step(restarted, kube_api, namespace)
    assert again["retiredVersions"] == status["retiredVersions"]
    assert again["version"] == 2 and ctx.tables.exists(_table(ctx, namespace, 2))


def test_retain_keeps_a_retired_versions_data(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    retained = copy.deepcopy(VIEW)
    retained["spec"]["deletionPolicy"] = "Retain"
    _apply(kube_api, namespace, retained)
    _run_until_idle(ctx, kube_api, namespace)
    _write_delta(ctx, namespace, 1)
    _apply(kube_api, namespace, _with_feature(retained))
    _run_until_idle(ctx, kube_api, namespace)

    clock.now += 48 * H
    status = _step(ctx, kube_api, namespace)

    assert [r["version"] for r in status["retiredVersions"]] == [1]
    assert not status["retiredVersions"][0].get("deleted")
    assert ctx.tables.exists(_table(ctx, namespace, 1))
    assert _delta_objects(ctx, namespace, 1) == 2


def test_a_pinned_version_goes_on_serving_and_keeps_its_data_until_unpinned(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply(kube_api, namespace, VIEW)
    _run_until_idle(ctx, kube_api, namespace)
    _apply(kube_api, namespace, SERVICE)
    _serve_two_versions(ctx, clock, kube_api, namespace)

    clock.now += 3 * H
    status = _run_until_idle(ctx, kube_api, namespace)
    service = _step_service(ctx, kube_api, namespace)

    assert status["servingVersions"] == [1, 2]
    assert status.get("retiredVersions") == []
    # Version 1 keeps materializing: its record follows the clock like version 2's.
    until = {p["version"]: p.get("materializedUntil") for p in status["progress"]}
    assert until == {1: "2026-01-01T06:00:00Z", 2: "2026-01-01T06:00:00Z"}
    assert ctx.tables.exists(_table(ctx, namespace, 1)) and _delta_objects(ctx, namespace, 1) == 2
    # The service reads version 1's table with version 1's features.
    plan = kubernetes.client.CoreV1Api(kube_api).read_namespaced_config_map(
        "eta-model-plan", namespace
    )
    (view_plan,) = yaml.safe_load(plan.data["plan.yaml"])["featureViews"]
    assert view_plan["onlineTable"] == _table(ctx, namespace, 1)
    assert [f["name"] for f in view_plan["features"]] == ["rating"]
    assert service["servedVersions"] == [
        {"featureView": NAME, "namespace": namespace, "version": 1}
    ]
    ready = next(c for c in service["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ServerUnavailable", ready  # waits for pods only, not the view

    unpinned = copy.deepcopy(SERVICE)
    del unpinned["spec"]["features"][0]["version"]
    _apply(kube_api, namespace, unpinned)
    assert _step_service(ctx, kube_api, namespace)["servedVersions"][0]["version"] == 2
    status = _step(ctx, kube_api, namespace)
    assert [r["version"] for r in status["retiredVersions"]] == [1]
    clock.now += H
    _step(ctx, kube_api, namespace)
    assert not ctx.tables.exists(_table(ctx, namespace, 1))
    assert _delta_objects(ctx, namespace, 1) == 0


def test_a_version_a_services_plan_still_reads_is_kept(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply(kube_api, namespace, VIEW)
    _run_until_idle(ctx, kube_api, namespace)
    unpinned = copy.deepcopy(SERVICE)
    del unpinned["spec"]["features"][0]["version"]
    _apply(kube_api, namespace, unpinned)
    assert _step_service(ctx, kube_api, namespace)["servedVersions"][0]["version"] == 1
    _serve_two_versions(ctx, clock, kube_api, namespace)

    # The service has not been reconciled since version 2 took over: its plan reads 1.
    clock.now += 2 * H
    status = _step(ctx, kube_api, namespace)

    assert status["retiredVersions"] == []
    assert ctx.tables.exists(_table(ctx, namespace, 1))


def test_a_service_pinning_a_version_waits_for_it_and_refuses_one_that_does_not_exist(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply(kube_api, namespace, VIEW)
    _run_until_idle(ctx, kube_api, namespace)
    _apply(kube_api, namespace, _with_feature(VIEW))
    _step(ctx, kube_api, namespace)  # version 2 starts backfilling
    pinned = copy.deepcopy(SERVICE)
    pinned["spec"]["features"][0]["version"] = 2
    _apply(kube_api, namespace, pinned)

    service = _step_service(ctx, kube_api, namespace)

    ready = next(c for c in service["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "FeatureViewsNotReady")
    assert f"{namespace}/{NAME} version 2 (pinned; not serving yet" in ready["message"]
    assert [f["name"] for f in service["resolvedFeatures"]] == ["rating", "trips"]

    pinned["spec"]["features"][0]["version"] = 7
    _apply(kube_api, namespace, pinned)
    service = _step_service(ctx, kube_api, namespace)
    ready = next(c for c in service["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "VersionNotFound"
    assert (
        f"FeatureView {namespace}/{NAME} has no version 7 (its versions: 1, 2)"
        in (ready["message"])
    )


class _NoClusterWideList(Kube):
    """An operator identity that may not list FeatureServices in every namespace."""

    def find_everywhere(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        raise kubernetes.client.exceptions.ApiException(status=403, reason="Forbidden")


def test_nothing_is_deleted_while_a_service_that_may_use_the_view_cannot_be_seen(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    shared = copy.deepcopy(VIEW)
    shared["spec"]["sharedWith"] = ["*"]
    limited = reconcile.Context(
        ctx.settings, _NoClusterWideList(kube_api), ctx.tables, Metrics(), clock
    )
    _apply(kube_api, namespace, shared)
    _run_until_idle(limited, kube_api, namespace)
    _apply(kube_api, namespace, _with_feature(shared))
    assert _run_until_idle(limited, kube_api, namespace)["version"] == 2

    clock.now += 3 * H
    status = _step(limited, kube_api, namespace)

    assert [r["version"] for r in status["retiredVersions"]] == [1]
    assert not status["retiredVersions"][0].get("deleted")
    assert ctx.tables.exists(_table(ctx, namespace, 1))
