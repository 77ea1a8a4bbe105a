"""The feature server's TLS, token checking and NetworkPolicy, as the operator renders
them; pure."""

from __future__ import annotations

from typing import Any

import pytest

from featurekube import serving_plan
from featurekube.spec import v1alpha1
from featurekube_operator import desired, serving_security
from featurekube_operator.settings import OperatorSettings

OWNER = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model", "uid": "u-2"},
}


def _service(access: dict[str, Any] | None = None) -> v1alpha1.FeatureService:
    spec: dict[str, Any] = {
        "owner": "eta",
        "features": [{"featureView": "stats"}],
        "server": {"port": 50052},
    }
    if access is not None:
        spec["access"] = access
    return v1alpha1.FeatureService.model_validate(
        {"metadata": {"name": "eta-model", "namespace": "rides"}, "spec": spec}
    )


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_a_secured_server_serves_tls_from_the_secret_and_checks_tokens() -> None:
    service = _service()
    plain = desired.render_deployment(service, {"featureViews": []}, OperatorSettings(), OWNER)

    secured = serving_security.secure_deployment(plain, "serving-tls", "tokenreview")

    container = _container(secured)
    assert container["args"][-8:] == [
        "--tls-cert",
        "/etc/featurekube/tls/tls.crt",
        "--tls-key",
        "/etc/featurekube/tls/tls.key",
        "--health-port",
        "9091",
        "--auth",
        "tokenreview",
    ]
    # The kubelet's gRPC probes speak plaintext: they call the health-only port.
    assert {"name": "health", "containerPort": 9091} in container["ports"]
    assert container["readinessProbe"]["grpc"] == {"port": 9091}
    assert container["livenessProbe"]["grpc"] == {"port": 9091}
    assert {"name": "tls", "mountPath": "/etc/featurekube/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "tls", "secret": {"secretName": "serving-tls"}} in secured["spec"]["template"][
        "spec"
    ]["volumes"]
    assert secured["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert "--tls-cert" not in _container(plain)["args"], "the rendered body is left as it was"


def test_an_open_server_is_asked_for_explicitly() -> None:
    plain = desired.render_deployment(_service(), {"featureViews": []}, OperatorSettings(), OWNER)

    opened = serving_security.secure_deployment(plain, None, "none")

    assert _container(opened)["args"][-2:] == ["--auth", "none"]
    assert "--tls-cert" not in _container(opened)["args"]
    assert _container(opened)["readinessProbe"]["grpc"] == {"port": 50052}
    assert len(opened["spec"]["template"]["spec"]["volumes"]) == 1
    assert "automountServiceAccountToken" not in opened["spec"]["template"]["spec"]
    with pytest.raises(ValueError, match="server auth 'mtls' is not one of tokenreview, none"):
        serving_security.secure_deployment(plain, None, "mtls")


def test_the_network_policy_lets_in_the_namespaces_of_the_access_lists_only() -> None:
    service = _service({"read": ["fraud/scorer", "rides/*"], "push": ["ingest/writer"]})
    plan = serving_plan.render_serving_plan(service, [])

    policy = serving_security.render_network_policy(service, plan, OWNER, ["monitoring"])

    assert policy["metadata"]["name"] == "eta-model"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "u-2"
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"featurekube.dev/feature-service": "eta-model"}
    }
    grpc_rule, metrics_rule = policy["spec"]["ingress"]
    assert [p["namespaceSelector"]["matchLabels"] for p in grpc_rule["from"]] == [
        {"kubernetes.io/metadata.name": n} for n in ("fraud", "ingest", "rides")
    ]
    assert grpc_rule["ports"] == [{"protocol": "TCP", "port": 50052}]
    assert metrics_rule == {
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "ports": [{"protocol": "TCP", "port": 9090}],
    }


def test_a_namespace_taken_out_of_access_leaves_the_network_policy() -> None:
    before = _service({"read": ["fraud/scorer"]})
    after = _service({"read": []})

    def namespaces(service: v1alpha1.FeatureService) -> list[str]:
        plan = serving_plan.render_serving_plan(service, [])
        return serving_security.allowed_namespaces(plan)

    assert namespaces(before) == ["fraud", "rides"]  # push defaults to its own namespace
    assert namespaces(after) == ["rides"]
    nobody = _service({"read": [], "push": []})
    plan = serving_plan.render_serving_plan(nobody, [])
    assert serving_security.render_network_policy(nobody, plan, OWNER)["spec"]["ingress"] == []


def test_the_operator_reads_as_a_monitor_beside_the_access_list_and_through_the_policy() -> None:
    operator = "system:serviceaccount:featurekube:featurekube-operator"
    service = _service({"read": ["fraud/scorer"]})

    plan = serving_plan.render_serving_plan(service, [], monitors=[operator])

    assert plan["access"]["read"] == ["system:serviceaccount:fraud:scorer", operator]
    assert "featurekube" in serving_security.allowed_namespaces(plan)
    # Listed already: not twice.
    listed = _service({"read": ["featurekube/featurekube-operator"]})
    assert serving_plan.render_serving_plan(listed, [], [operator])["access"]["read"] == [operator]
