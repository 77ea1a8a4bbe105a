"""The local platform's Kubernetes API is a real one: CEL, RBAC, watches, controllers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import pytest
from kubernetes.client.exceptions import ApiException

from featurekube._platform.platform import Endpoints
from support import eventually as _eventually

GROUP = "smoke.featurekube.dev"
RULE_MESSAGE = "minReplicas must not exceed maxReplicas"


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


@pytest.fixture(scope="module")
def widget_crd(kube_api: kubernetes.client.ApiClient) -> Iterator[str]:
    """A CRD whose schema carries a CEL rule, installed for this module."""
    ext = kubernetes.client.ApiextensionsV1Api(kube_api)
    name = f"widgets.{GROUP}"
    ext.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {
                                            "minReplicas": {"type": "integer"},
                                            "maxReplicas": {"type": "integer"},
                                        },
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "self.minReplicas <= self.maxReplicas",
                                                "message": RULE_MESSAGE,
                                            }
                                        ],
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    _eventually(established, 30, f"CRD {name} established")
    yield name
    ext.delete_custom_resource_definition(name)


def _widget(name: str, low: int, high: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"minReplicas": low, "maxReplicas": high},
    }


def test_cel_rule_rejects_an_invalid_object(
    kube_api: kubernetes.client.ApiClient, widget_crd: str, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets", _widget("ok", 1, 3))

    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            GROUP, "v1", namespace, "widgets", _widget("bad", 5, 2)
        )

    assert refused.value.status == 422
    assert RULE_MESSAGE in str(refused.value.body)
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "bad")
    assert missing.value.status == 404


def test_rbac_refuses_the_unprivileged_user_until_a_role_allows(
    platform: Endpoints, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    user = kubernetes.config.new_client_from_config(
        config_file=str(platform.kubeconfig_unprivileged)
    )
    as_user = kubernetes.client.CoreV1Api(user)

    with pytest.raises(ApiException) as refused:
        as_user.list_namespaced_config_map(namespace)
    assert refused.value.status == 403

    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "read-configmaps"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-configmaps",
            },
            "subjects": [{"kind": "User", "name": "featurekube-dev-unprivileged"}],
        },
    )

    # RBAC decisions come from the API server's informer cache: allowed shortly after.
    def allowed() -> bool:
        try:
            as_user.list_namespaced_config_map(namespace)
        except ApiException as exc:
            if exc.status == 403:
                return False
            raise
        return True

    _eventually(allowed, 15, "the bound role takes effect")
    with pytest.raises(ApiException) as still_refused:
        as_user.list_namespaced_secret(namespace)
    assert still_refused.value.status == 403


def test_a_watch_sees_an_update(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    created = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "watched"}, "data": {"v": "1"}}
    )
    core.patch_namespaced_config_map("watched", namespace, {"data": {"v": "2"}})

    seen = []
    for event in kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=created.metadata.resource_version,
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"].data))
        if event["type"] == "MODIFIED":
            break

    assert ("MODIFIED", {"v": "2"}) in seen


def test_deleting_an_owner_garbage_collects_what_it_owns(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "owned", "ownerReferences": [reference]}}
    )
    core.create_namespaced_secret(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    _eventually(
        lambda: _gone(lambda: core.read_namespaced_secret("owned", namespace)),
        90,
        "the garbage collector deletes the owned Secret",
    )
    assert core.read_namespaced_secret("bystander", namespace).metadata.name == "bystander"


def test_a_deployment_gets_a_replicaset_and_pods(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    apps = kubernetes.client.AppsV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "featurekube/none"}]},
                },
            },
        },
    )
    core = kubernetes.client.CoreV1Api(kube_api)

    def pods_created() -> bool:
        return len(core.list_namespaced_pod(namespace, label_selector="app=web").items) == 2

    _eventually(pods_created, 60, "the deployment and replicaset controllers create 2 pods")
    (replicaset,) = apps.list_namespaced_replica_set(namespace).items
    assert replicaset.metadata.owner_references[0].name == "web"


def test_deleting_a_namespace_removes_it_and_its_contents(
    kube_api: kubernetes.client.ApiClient, request: pytest.FixtureRequest
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    name = f"doomed-{int(time.time() * 1000) % 10**9}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "inside"}})

    core.delete_namespace(name)

    _eventually(
        lambda: _gone(lambda: core.read_namespace(name)),
        90,
        "the namespace controller finishes deleting the namespace",
    )


def test_spark_operator_crds_are_served_with_a_status_subresource(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    app = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "pi"},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "sparkVersion": "4.2.0",
            "image": "featurekube/spark:dev",
            "mainApplicationFile": "local:///opt/featurekube/job.py",
            "arguments": ["--window", "2026-01-01T00:00:00Z/2026-01-02T00:00:00Z"],
            "sparkConf": {"spark.sql.session.timeZone": "UTC"},
            "restartPolicy": {"type": "Never"},
            "driver": {"cores": 1, "memory": "1g", "serviceAccount": "spark"},
            "executor": {"cores": 1, "instances": 1, "memory": "1g"},
        },
    }
    custom.create_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications", app
    )

    custom.patch_namespaced_custom_object_status(
        "sparkoperator.k8s.io",
        "v1beta2",
        namespace,
        "sparkapplications",
        "pi",
        {
            "status": {
                "applicationState": {"state": "COMPLETED"},
                "driverInfo": {"podName": "pi-driver"},
            }
        },
    )

    stored = custom.get_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications", "pi"
    )
    assert stored["status"]["applicationState"]["state"] == "COMPLETED"
    assert stored["spec"]["arguments"] == app["spec"]["arguments"]
    scheduled = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "ScheduledSparkApplication",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "@daily", "concurrencyPolicy": "Forbid", "template": app["spec"]},
    }
    custom.create_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "scheduledsparkapplications", scheduled
    )
    # The schema is enforced: an application type Spark does not know is refused.
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            "sparkoperator.k8s.io",
            "v1beta2",
            namespace,
            "sparkapplications",
            {**app, "metadata": {"name": "bad"}, "spec": {**app["spec"], "type": "Ruby"}},
        )
    assert refused.value.status == 422
    assert "spec.type" in str(refused.value.body)
