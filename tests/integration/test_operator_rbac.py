"""The operator as deployed: separate processes, running as a ServiceAccount bound to
exactly the ClusterRole in operator/manifests/rbac.yaml, two replicas peering so that
only one acts."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from featurekube._platform import runtime
from featurekube._platform.platform import Endpoints
from support import eventually as _eventually

REPO = Path(__file__).parents[2]
MANIFESTS = REPO / "operator" / "manifests"
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
        "deletionPolicy": "Delete",
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {
        "owner": "eta-team",
        "features": [{"featureView": "driver-profile"}],
        "server": {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}, "podDisruptionBudget": {}},
    },
}


@pytest.fixture(scope="module")
def peering_crds(kube_api: kubernetes.client.ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(kube_api)
    for crd in yaml.safe_load_all((MANIFESTS / "kopf-peering-crds.yaml").read_text()):
        try:
            ext.create_custom_resource_definition(crd)
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition("kopfpeerings.kopf.dev")
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    _eventually(established, 30, "kopf's peering CRDs are established")


@pytest.fixture
def service_account_kubeconfig(
    platform: Endpoints, kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """A kubeconfig for a ServiceAccount bound to the operator's ClusterRole only."""
    core = kubernetes.client.CoreV1Api(kube_api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(
        namespace, {"metadata": {"name": "featurekube-operator"}}
    )
    role = yaml.safe_load((MANIFESTS / "rbac.yaml").read_text())
    role_name = f"featurekube-operator-{namespace}"[:63]
    role["metadata"]["name"] = role_name
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role_name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "featurekube-operator", "namespace": namespace}
            ],
        }
    )
    token = core.create_namespaced_service_account_token(
        "featurekube-operator", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(platform.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}
        ],
        "current-context": "operator",
    }
    path = tmp_path / "kubeconfig-operator"
    path.write_text(yaml.safe_dump(config))
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"])
    yield path
    rbac.delete_cluster_role_binding(role_name)
    rbac.delete_cluster_role(role_name)


def _start_operator(
    kubeconfig: Path, namespace: str, table_prefix: str, priority: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "FEATUREKUBE_TABLE_PREFIX": table_prefix,
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "1",
        "FEATUREKUBE_METRICS_PORT": "0",
        # The whole backfill as one window, so the test completes one job.
        "FEATUREKUBE_BACKFILL_WINDOW_SECONDS": str(400 * 86400),
    }
    argv = [
        sys.executable,
        "-m",
        "featurekube_operator",
        "--namespace",
        namespace,
        "--peering",
        "featurekube",
        "--priority",
        str(priority),
        "--liveness",
        "",
        "--log-format",
        "plain",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_two_replicas_under_least_privilege_one_acts(
    peering_crds: None,
    service_account_kubeconfig: Path,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    table_prefix: str,
    tmp_path: Path,
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        namespace,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "featurekube"}},
    )
    logs = [tmp_path / "operator-low.log", tmp_path / "operator-high.log"]
    # The first replica acts alone; a second with a higher priority takes over.
    operators = [_start_operator(service_account_kubeconfig, namespace, table_prefix, 10, logs[0])]
    try:
        _eventually(
            lambda: "Resuming operations" in logs[0].read_text(), 60, "the first replica acts"
        )
        operators.append(
            _start_operator(service_account_kubeconfig, namespace, table_prefix, 20, logs[1])
        )
        _eventually(
            lambda: "Pausing operations in favour of" in logs[0].read_text(),
            60,
            "the first replica pauses for the higher one",
        )
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", copy.deepcopy(VIEW)
        )
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureservices", copy.deepcopy(SERVICE)
        )
        # Its twin on the python engine: a Job, and its pod's report, under the same rights.
        python_view = copy.deepcopy(VIEW)
        python_view["metadata"]["name"] = "driver-profile-python"
        python_view["spec"]["materialization"]["engine"] = "python"
        custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", python_view
        )

        apps = _eventually(
            lambda: custom.list_namespaced_custom_object(
                "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
            )["items"],
            60,
            "the acting replica starts the backfill",
        )
        for app in apps:
            custom.patch_namespaced_custom_object_status(
                "sparkoperator.k8s.io",
                "v1beta2",
                namespace,
                "sparkapplications",
                app["metadata"]["name"],
                {"status": {"applicationState": {"state": "COMPLETED"}, "driverInfo": {}}},
            )

        batch = kubernetes.client.BatchV1Api(kube_api)
        (job,) = _eventually(
            lambda: batch.list_namespaced_job(namespace).items, 60, "the python view's Job"
        )
        report = {"published": True, "rows": {"read": 3, "offline": 3, "online": 2}}
        runtime.record_job_pod(
            kube_api, kube_api.sanitize_for_serialization(job), 0, json.dumps(report)
        )

        def view_ready(name: str = "driver-profile") -> bool:
            view = custom.get_namespaced_custom_object(
                "featurekube.dev", "v1alpha1", namespace, "featureviews", name
            )
            return any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (view.get("status") or {}).get("conditions", [])
            )

        _eventually(view_ready, 60, "the view becomes Ready")
        _eventually(
            lambda: view_ready("driver-profile-python"), 60, "the python view becomes Ready"
        )
        python_status = custom.get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-profile-python"
        )["status"]
        assert python_status["rows"]["read"] == 3, "its pod's report was read"
        apps_api = kubernetes.client.AppsV1Api(kube_api)
        _eventually(
            lambda: apps_api.list_namespaced_deployment(namespace).items,
            60,
            "the feature server's Deployment",
        )
        hpa = kubernetes.client.AutoscalingV2Api(
            kube_api
        ).read_namespaced_horizontal_pod_autoscaler("eta-model", namespace)
        assert hpa.spec.max_replicas == 4

        custom.delete_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-profile"
        )

        def deleted() -> bool:
            try:
                custom.get_namespaced_custom_object(
                    "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-profile"
                )
            except kubernetes.client.exceptions.ApiException as exc:
                return exc.status == 404
            return False

        _eventually(deleted, 60, "the finalizer runs under the operator's own rights")
        for process in operators:
            assert process.poll() is None, "both replicas keep running"
        high, low = logs[1].read_text(), logs[0].read_text()
        assert "Forbidden" not in high and "403" not in high, high[-3000:]
        assert "Creation is processed" in high
        after_pause = low.split("Pausing operations in favour of", 1)[1]
        assert "Creation is processed" not in after_pause, "the paused replica acted"
        assert "Resuming operations" not in after_pause
    finally:
        for process in operators:
            process.terminate()
        for process in operators:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
