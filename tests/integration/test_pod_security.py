"""Every pod featurekube creates passes Pod Security's "restricted" profile, judged by the
real API server's PodSecurity admission in a namespace that enforces it."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from featurekube.spec import v1alpha1
from featurekube_operator import desired
from featurekube_operator.settings import OperatorSettings
from featurekube_operator.windows import Window

SETTINGS = OperatorSettings(offline_uri="s3://lake/offline/", table_prefix="fk.")
OWNER = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "X",
    "metadata": {"name": "o", "uid": "u"},
}
VIEW = v1alpha1.FeatureView.model_validate(
    {
        "metadata": {"name": "driver-profile", "namespace": "rides"},
        "spec": {
            "owner": "o",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": "s3://raw/drivers/"}},
            "features": [{"name": "rating", "type": "float64"}],
        },
    }
)
SERVICE = v1alpha1.FeatureService.model_validate(
    {
        "metadata": {"name": "eta-model", "namespace": "rides"},
        "spec": {
            "owner": "o",
            "features": [{"featureView": "driver-profile", "features": ["rating"]}],
        },
    }
)


@pytest.fixture
def restricted(kube_api: kubernetes.client.ApiClient, namespace: str) -> str:
    """The test's namespace, enforcing the restricted profile."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    kubernetes.client.CoreV1Api(kube_api).patch_namespace(
        namespace, {"metadata": {"labels": labels}}
    )
    return namespace


def _dry_run(api: kubernetes.client.ApiClient, namespace: str, spec: dict[str, Any]) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": spec}
    kubernetes.client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")


def _driver_pod(app: dict[str, Any], role: str) -> dict[str, Any]:
    """The pod the Spark Operator makes of a SparkApplication's driver or executor spec:
    its pod and container security contexts, the image, the service account."""
    part = app["spec"][role]
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": f"spark-kubernetes-{role}",
                "image": app["spec"]["image"],
                "securityContext": copy.deepcopy(part["securityContext"]),
            }
        ],
        "securityContext": copy.deepcopy(part["podSecurityContext"]),
    }
    return spec


def test_a_pod_without_the_settings_is_refused_here(
    kube_api: kubernetes.client.ApiClient, restricted: str
) -> None:
    """The namespace really enforces the profile: a bare pod does not pass."""
    with pytest.raises(ApiException) as refused:
        _dry_run(kube_api, restricted, {"containers": [{"name": "c", "image": "busybox"}]})
    assert refused.value.status == 403
    assert "restricted" in refused.value.body


def test_feature_server_pods_pass_the_restricted_profile(
    kube_api: kubernetes.client.ApiClient, restricted: str
) -> None:
    deployment = desired.render_deployment(SERVICE, {"featureViews": []}, SETTINGS, OWNER)

    _dry_run(kube_api, restricted, deployment["spec"]["template"]["spec"])


@pytest.mark.parametrize("role", ["driver", "executor"])
def test_spark_pods_pass_the_restricted_profile(
    kube_api: kubernetes.client.ApiClient, restricted: str, role: str
) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    app = desired.render_spark_application(
        VIEW, 1, Window(start, start + dt.timedelta(hours=1)), SETTINGS, OWNER
    )

    _dry_run(kube_api, restricted, _driver_pod(app, role))


def test_python_job_pods_pass_the_restricted_profile(
    kube_api: kubernetes.client.ApiClient, restricted: str
) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    job = desired.render_materialize_job(
        VIEW, 1, Window(start, start + dt.timedelta(hours=1)), SETTINGS, OWNER
    )
    body = {**job, "metadata": {**job["metadata"], "namespace": restricted, "ownerReferences": []}}

    # The Job as created (its pod template included), and the pod the job controller
    # makes of its template.
    kubernetes.client.BatchV1Api(kube_api).create_namespaced_job(restricted, body, dry_run="All")
    _dry_run(kube_api, restricted, job["spec"]["template"]["spec"])
