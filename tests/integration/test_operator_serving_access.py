"""A FeatureService's access, reconciled against the real API server: the feature
server's TLS and token checking, its NetworkPolicy, and an access entry revoked within
one reconcile."""

from __future__ import annotations

import copy
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
        "features": [{"name": "rating", "type": "float64"}],
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {"owner": "eta-team", "features": [{"featureView": "driver-profile"}]},
}


@pytest.fixture
def ctx(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> reconcile.Context:
    settings = OperatorSettings(
        table_prefix=table_prefix,
        server_image="featurekube/server:test",
        server_tls_secret="featurekube-serving-tls",
        server_auth="tokenreview",
        server_metrics_namespaces="monitoring",
    )
    return reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics()
    )


def _step(ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    api = kubernetes.client.CustomObjectsApi(kube_api)
    body = api.get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureservices", "eta-model"
    )
    reconcile.reconcile_feature_service(ctx, body)


def _state(kube_api: kubernetes.client.ApiClient, namespace: str) -> dict[str, Any]:
    """The plan's access, the NetworkPolicy's ingress and the pod template, as stored."""
    core = kubernetes.client.CoreV1Api(kube_api)
    plan = yaml.safe_load(
        core.read_namespaced_config_map("eta-model-plan", namespace).data["plan.yaml"]
    )
    policy = kubernetes.client.NetworkingV1Api(kube_api).read_namespaced_network_policy(
        "eta-model", namespace
    )
    deployment = kubernetes.client.AppsV1Api(kube_api).read_namespaced_deployment(
        "eta-model", namespace
    )
    ingress = {
        rule.ports[0].port: sorted(
            p.namespace_selector.match_labels["kubernetes.io/metadata.name"] for p in rule._from
        )
        for rule in policy.spec.ingress or ()
    }
    return {"access": plan["access"], "ingress": ingress, "pod": deployment.spec.template}


def test_a_served_service_takes_tls_and_tokens_and_lets_in_only_its_access_namespaces(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", VIEW
    )
    service = copy.deepcopy(SERVICE)
    service["spec"]["access"] = {"read": ["fraud/scorer", f"{namespace}/*"], "push": []}
    custom.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureservices", service
    )

    _step(ctx, kube_api, namespace)

    state = _state(kube_api, namespace)
    sa = "system:serviceaccount:"
    assert state["access"] == {"read": [f"{sa}fraud:scorer", f"{sa}{namespace}:*"], "push": []}
    assert state["ingress"] == {50051: sorted(["fraud", namespace]), 9090: ["monitoring"]}
    pod = state["pod"].spec
    (container,) = pod.containers
    assert container.args[container.args.index("--auth") + 1] == "tokenreview"
    assert container.args[container.args.index("--tls-cert") + 1] == "/etc/featurekube/tls/tls.crt"
    assert [v.secret.secret_name for v in pod.volumes if v.secret] == ["featurekube-serving-tls"]
    assert pod.automount_service_account_token is True


def test_an_access_entry_revoked_leaves_plan_and_network_policy_in_one_reconcile(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", VIEW
    )
    service = copy.deepcopy(SERVICE)
    service["spec"]["access"] = {"read": ["fraud/scorer"], "push": []}
    custom.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureservices", service
    )
    _step(ctx, kube_api, namespace)
    before = _state(kube_api, namespace)
    assert before["ingress"][50051] == ["fraud"]

    custom.patch_namespaced_custom_object(
        "featurekube.dev",
        "v1alpha1",
        namespace,
        "featureservices",
        "eta-model",
        {"spec": {"access": {"read": [], "push": []}}},
    )
    _step(ctx, kube_api, namespace)

    after = _state(kube_api, namespace)
    assert after["access"] == {"read": [], "push": []}
    assert after["ingress"] == {9090: ["monitoring"]}, "no namespace reaches the gRPC port"
    assert after["pod"].metadata.annotations != before["pod"].metadata.annotations, (
        "the pods roll to the plan without the entry"
    )
