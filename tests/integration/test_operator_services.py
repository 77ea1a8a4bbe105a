"""FeatureServices reconciled against the real API server: resolution, the feature
server's objects, readiness, and sharing across namespaces."""

from __future__ import annotations

import copy
import datetime
import time
from typing import Any

import boto3
import kubernetes.client
import pytest
import yaml

from featurekube_operator import reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "features": [
            {"name": "rating", "type": "float64"},
            {"name": "vehicle_type", "type": "string"},
        ],
        "ttl": "30d",
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {
        "owner": "eta-team",
        "features": [{"featureView": "driver-profile", "features": ["rating"]}],
        "server": {"replicas": 3, "port": 50051, "podDisruptionBudget": {"minAvailable": 2}},
    },
}


@pytest.fixture
def ctx(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> reconcile.Context:
    settings = OperatorSettings(table_prefix=table_prefix, server_image="featurekube/server:test")
    return reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics()
    )


def _create(kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    plural = "featureviews" if doc["kind"] == "FeatureView" else "featureservices"
    kubernetes.client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, plural, doc
    )


def _step_service(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> dict[str, Any]:
    api = kubernetes.client.CustomObjectsApi(kube_api)
    body = api.get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureservices", "eta-model"
    )
    outcome = reconcile.reconcile_feature_service(ctx, body)
    api.patch_namespaced_custom_object_status(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureservices",
        "eta-model",
        {"status": outcome.status},
    )
    status: dict[str, Any] = outcome.status
    return status


def _run_pods(
    kube_api: kubernetes.client.ApiClient, namespace: str, selector: str, count: int
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    deadline = time.monotonic() + 60
    while len(pods := core.list_namespaced_pod(namespace, label_selector=selector).items) < count:
        assert time.monotonic() < deadline, "the ReplicaSet controller made no pods"
        time.sleep(0.5)
    now = datetime.datetime.now(datetime.UTC).isoformat()
    for pod in pods:
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            namespace,
            {
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                }
            },
        )


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return found


def _mark_view_ready(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        "driver-profile",
        {
            "status": {
                "version": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
            }
        },
    )


def test_a_service_runs_its_feature_server_and_is_ready_when_everything_is(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _create(kube_api, namespace, VIEW)
    _create(kube_api, namespace, SERVICE)

    status = _step_service(ctx, kube_api, namespace)

    assert status["endpoint"] == f"eta-model.{namespace}.svc:50051"
    assert status["resolvedFeatures"] == [
        {
            "name": "rating",
            "type": "float64",
            "featureView": "driver-profile",
            "namespace": namespace,
        }
    ]
    assert _ready(status)["reason"] == "FeatureViewsNotReady"
    core, apps = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.AppsV1Api(kube_api)
    plan = yaml.safe_load(
        core.read_namespaced_config_map("eta-model-plan", namespace).data["plan.yaml"]
    )
    assert plan["featureViews"][0]["ttl"] == "30d"
    deployment = apps.read_namespaced_deployment("eta-model", namespace)
    assert deployment.spec.replicas == 3
    assert deployment.metadata.owner_references[0].kind == "FeatureService"
    assert core.read_namespaced_service("eta-model", namespace).spec.ports[0].port == 50051
    pdb = kubernetes.client.PolicyV1Api(kube_api).read_namespaced_pod_disruption_budget(
        "eta-model", namespace
    )
    assert pdb.spec.min_available == 2

    _mark_view_ready(kube_api, namespace)
    assert _ready(_step_service(ctx, kube_api, namespace))["reason"] == "ServerUnavailable"

    # Act as the kubelet: the pods the ReplicaSet made start and report ready.
    _run_pods(kube_api, namespace, "featurekube.dev/feature-service=eta-model", count=3)
    deadline = time.monotonic() + 60
    while (ready := _ready(_step_service(ctx, kube_api, namespace)))["status"] != "True":
        assert time.monotonic() < deadline, ready
        time.sleep(0.5)
    assert (ready["status"], ready["reason"]) == ("True", "Serving")


def test_a_plan_change_rolls_the_deployment(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _create(kube_api, namespace, VIEW)
    _create(kube_api, namespace, SERVICE)
    _step_service(ctx, kube_api, namespace)
    apps = kubernetes.client.AppsV1Api(kube_api)
    before = apps.read_namespaced_deployment(
        "eta-model", namespace
    ).spec.template.metadata.annotations

    api = kubernetes.client.CustomObjectsApi(kube_api)
    api.patch_namespaced_custom_object(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureservices",
        "eta-model",
        {"spec": {"features": [{"featureView": "driver-profile"}]}},
    )
    status = _step_service(ctx, kube_api, namespace)

    after = apps.read_namespaced_deployment(
        "eta-model", namespace
    ).spec.template.metadata.annotations
    assert after != before
    assert status["featureCount"] == 2


def test_a_missing_view_is_named_in_the_status(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _create(kube_api, namespace, SERVICE)

    ready = _ready(_step_service(ctx, kube_api, namespace))

    assert ready["reason"] == "FeatureViewNotFound"
    assert f"FeatureView {namespace}/driver-profile does not exist" in ready["message"]


def test_a_view_in_another_namespace_is_used_only_once_shared(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    other = f"{namespace[:50]}-views"
    core.create_namespace({"metadata": {"name": other}})
    try:
        _create(kube_api, other, VIEW)
        service = copy.deepcopy(SERVICE)
        service["spec"]["features"][0]["namespace"] = other
        _create(kube_api, namespace, service)

        refused = _ready(_step_service(ctx, kube_api, namespace))
        assert refused["reason"] == "FeatureViewNotShared"
        assert f"add {namespace} to its spec.sharedWith" in refused["message"]

        kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            "featurekube.dev",
            "v1alpha1",
            other,
            "featureviews",
            "driver-profile",
            {"spec": {"sharedWith": [namespace]}},
        )
        allowed = _step_service(ctx, kube_api, namespace)
        assert _ready(allowed)["reason"] == "FeatureViewsNotReady"
        assert allowed["resolvedFeatures"][0]["namespace"] == other
    finally:
        core.delete_namespace(other)


def test_a_new_ttl_reaches_the_feature_servers_without_a_new_version(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _create(kube_api, namespace, VIEW)
    _create(kube_api, namespace, SERVICE)
    _mark_view_ready(kube_api, namespace)
    _step_service(ctx, kube_api, namespace)
    apps, core = kubernetes.client.AppsV1Api(kube_api), kubernetes.client.CoreV1Api(kube_api)
    before = apps.read_namespaced_deployment("eta-model", namespace).spec.template.metadata

    kubernetes.client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        "driver-profile",
        {"spec": {"ttl": "7d"}},
    )
    _step_service(ctx, kube_api, namespace)

    plan = yaml.safe_load(
        core.read_namespaced_config_map("eta-model-plan", namespace).data["plan.yaml"]
    )
    (served,) = plan["featureViews"]
    assert (served["ttl"], served["onlineTable"].rsplit(".", 1)[-1]) == ("7d", "v1")
    after = apps.read_namespaced_deployment("eta-model", namespace).spec.template.metadata
    assert after.annotations != before.annotations, "the servers roll to read the new TTL"


def test_a_service_serves_its_views_serving_version_never_the_live_specs_features(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _create(kube_api, namespace, VIEW)
    api = kubernetes.client.CustomObjectsApi(kube_api)
    view = api.get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-profile"
    )
    reconcile.reconcile_feature_view(ctx, view)  # makes version 1's snapshot
    _mark_view_ready(kube_api, namespace)
    service = copy.deepcopy(SERVICE)
    service["spec"]["features"] = [
        {"featureView": "driver-profile", "features": ["rating", "trips"]}
    ]
    _create(kube_api, namespace, service)

    # Version 2 retypes rating and adds trips; version 1 still serves.
    api.patch_namespaced_custom_object(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureviews",
        "driver-profile",
        {
            "spec": {
                "features": [
                    {"name": "rating", "type": "string"},
                    {"name": "vehicle_type", "type": "string"},
                    {"name": "trips", "type": "int64"},
                ],
                "ttl": "7d",
            }
        },
    )
    status = _step_service(ctx, kube_api, namespace)

    plan = yaml.safe_load(
        kubernetes.client.CoreV1Api(kube_api)
        .read_namespaced_config_map("eta-model-plan", namespace)
        .data["plan.yaml"]
    )
    (served,) = plan["featureViews"]
    assert served["onlineTable"].endswith(".v1")
    assert served["features"] == [{"name": "rating", "source": "rating", "type": "float64"}]
    assert served["storedFeatures"] == ["rating", "vehicle_type"]
    assert served["ttl"] == "7d", "the ttl is not part of the data: it applies at once"
    ready = _ready(status)
    assert (ready["status"], ready["reason"]) == ("False", "FeatureViewsNotReady")
    assert "feature trips arrives with a version after 1" in ready["message"]
