"""Namespaces the operator leaves alone, against the real API server: Kubernetes' own
and, watching all namespaces, the operator's; their FeatureViews and FeatureServices
are refused and nothing is created there."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import boto3
import kubernetes.client
import pytest

from featurekube_operator import reconcile
from operator_support import GROUP, SERVICE, context

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "features": [{"name": "rating", "type": "float64"}],
        "materialization": {"schedule": "@daily", "startTime": "2026-01-01T00:00:00Z"},
    },
}


@pytest.fixture
def ctx(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> reconcile.Context:
    return context(kube_api, table_prefix)


def _plural(doc: dict[str, Any]) -> str:
    return "featureviews" if doc["kind"] == "FeatureView" else "featureservices"


@pytest.fixture
def in_kube_system(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> Iterator[str]:
    """A view and a service in kube-system, named after the test's table prefix."""
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    name = table_prefix.strip("-.").lower()[:40]
    made = []
    for doc in (VIEW, SERVICE):
        body = copy.deepcopy(doc)
        body["metadata"]["name"] = name
        custom.create_namespaced_custom_object(*GROUP, "kube-system", _plural(doc), body)
        made.append(_plural(doc))
    yield name
    for plural in made:
        custom.delete_namespaced_custom_object(*GROUP, "kube-system", plural, name)


def _reconcile(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str, doc: str
) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    plural, name = doc.split("/")
    body = custom.get_namespaced_custom_object(*GROUP, namespace, plural, name)
    step = (
        reconcile.reconcile_feature_view
        if plural == "featureviews"
        else reconcile.reconcile_feature_service
    )
    (ready,) = [c for c in step(ctx, body).status["conditions"] if c["type"] == "Ready"]
    return dict(ready)


def _made_by_featurekube(kube_api: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    core = kubernetes.client.CoreV1Api(kube_api)
    apps = kubernetes.client.AppsV1Api(kube_api)
    selector = "app.kubernetes.io/managed-by=featurekube"
    # Every namespace has the cluster's CA bundle, from the controller manager.
    found = [
        m.metadata.name
        for m in core.list_namespaced_config_map(namespace).items
        if m.metadata.name != "kube-root-ca.crt"
    ]
    found += [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items]
    found += [
        d.metadata.name
        for d in core.list_namespaced_service(namespace, label_selector=selector).items
    ]
    apps_ = kubernetes.client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
    )["items"]
    return found + [a["metadata"]["name"] for a in apps_]


def test_objects_in_kube_system_are_refused_and_nothing_is_made_there(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, in_kube_system: str
) -> None:
    before = _made_by_featurekube(kube_api, "kube-system")

    for plural in ("featureviews", "featureservices"):
        ready = _reconcile(ctx, kube_api, "kube-system", f"{plural}/{in_kube_system}")
        assert (ready["status"], ready["reason"]) == ("False", reconcile.NOT_MANAGED)
        assert ready["message"].startswith("namespace kube-system is not one featurekube manages")

    assert _made_by_featurekube(kube_api, "kube-system") == before
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith(ctx.settings.table_prefix)]


def test_the_operators_own_namespace_is_no_tenant_when_it_watches_all(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    # As the chart configures an operator installed in `namespace`, watching all.
    ctx.settings = dataclasses.replace(
        ctx.settings, excluded_namespaces=f"kube-system,kube-public,kube-node-lease,{namespace}"
    )
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    for doc in (VIEW, SERVICE):
        custom.create_namespaced_custom_object(*GROUP, namespace, _plural(doc), doc)

    view = _reconcile(ctx, kube_api, namespace, "featureviews/driver-profile")
    service = _reconcile(ctx, kube_api, namespace, "featureservices/eta-model")

    assert view["reason"] == service["reason"] == reconcile.NOT_MANAGED
    assert _made_by_featurekube(kube_api, namespace) == []
