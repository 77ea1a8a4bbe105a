"""What validate refuses runs nothing, however the object got into the API server:
the operator's own check of SQL and expressions, against the real API server."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

import boto3
import kubernetes.client
import pytest
import yaml
from kopf.testing import KopfRunner

from featurekube_operator import reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings
from support import eventually

_eventually = functools.partial(eventually, ignore=(kubernetes.client.exceptions.ApiException,))
GROUP = ("featurekube.dev", "v1alpha1")
HANDLERS = "featurekube_operator.handlers"
"""Imported by kopf when it starts, not here: the module reads the reconcile interval
from the environment at import."""
STEAL_SECRET = (
    "SELECT driver_id, event_timestamp, "
    "reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') AS rating FROM source"
)
VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-profile"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "features": [{"name": "rating", "type": "string"}],
        "materialization": {"schedule": "@daily", "startTime": "2026-01-01T00:00:00Z"},
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
    settings = OperatorSettings(table_prefix=table_prefix, server_image="featurekube/server:test")
    return reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics()
    )


def _custom(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api)


def _create(kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    plural = "featureviews" if doc["kind"] == "FeatureView" else "featureservices"
    _custom(kube_api).create_namespaced_custom_object(*GROUP, namespace, plural, doc)


def _get(
    kube_api: kubernetes.client.ApiClient, namespace: str, plural: str, name: str
) -> dict[str, Any]:
    body: dict[str, Any] = _custom(kube_api).get_namespaced_custom_object(
        *GROUP, namespace, plural, name
    )
    return body


def _step(
    ctx: reconcile.Context,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    plural: str,
    name: str,
) -> dict[str, Any]:
    """One reconcile, its status written back as kopf would."""
    step = (
        reconcile.reconcile_feature_view
        if plural == "featureviews"
        else reconcile.reconcile_feature_service
    )
    outcome = step(ctx, _get(kube_api, namespace, plural, name))
    _custom(kube_api).patch_namespaced_custom_object_status(
        *GROUP, namespace, plural, name, {"status": outcome.status}
    )
    return outcome.status


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return found


def _plan(kube_api: kubernetes.client.ApiClient, namespace: str) -> dict[str, Any] | None:
    core = kubernetes.client.CoreV1Api(kube_api)
    try:
        config = core.read_namespaced_config_map("eta-model-plan", namespace)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    plan: dict[str, Any] = yaml.safe_load(config.data["plan.yaml"])
    return plan


# -- SQL outside the allowlist ----------------------------------------------------------


def _owned_objects(kube_api: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    """The SparkApplications, Jobs and ConfigMaps a view's reconcile would make."""
    selector = "featurekube.dev/feature-view=driver-profile"
    apps = _custom(kube_api).list_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications"
    )["items"]
    jobs = kubernetes.client.BatchV1Api(kube_api).list_namespaced_job(
        namespace, label_selector=selector
    )
    maps = kubernetes.client.CoreV1Api(kube_api).list_namespaced_config_map(
        namespace, label_selector=selector
    )
    return [a["metadata"]["name"] for a in apps] + [
        item.metadata.name for item in [*jobs.items, *maps.items]
    ]


def test_a_view_whose_sql_reads_the_environment_is_invalid_and_runs_nothing(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    view = copy.deepcopy(VIEW)
    view["spec"]["transformation"] = {"sql": STEAL_SECRET}
    # Straight to the API server, as a client that never ran `featurekube validate`.
    _create(kube_api, namespace, view)

    status = _step(ctx, kube_api, namespace, "featureviews", "driver-profile")

    ready = _ready(status)
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("spec.transformation.sql: uses function reflect")
    assert "latestVersion" not in status
    assert _owned_objects(kube_api, namespace) == []


def test_a_view_reading_a_path_through_identifier_is_invalid(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    view = copy.deepcopy(VIEW)
    view["spec"]["transformation"] = {
        "sql": "SELECT * FROM IDENTIFIER('parquet.`s3a://other-team/private/`')"
    }
    _create(kube_api, namespace, view)

    ready = _ready(_step(ctx, kube_api, namespace, "featureviews", "driver-profile"))

    assert ready["reason"] == "InvalidSpec"
    assert "function identifier" in ready["message"]
    assert _owned_objects(kube_api, namespace) == []


def test_a_service_whose_expression_is_refused_by_validate_is_invalid(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _create(kube_api, namespace, VIEW)
    service = copy.deepcopy(SERVICE)
    service["spec"]["transformations"] = [
        {"name": "leak", "type": "string", "expression": "SELECT rating FROM source"}
    ]
    _create(kube_api, namespace, service)

    ready = _ready(_step(ctx, kube_api, namespace, "featureservices", "eta-model"))

    assert ready["reason"] == "InvalidSpec"
    assert ready["message"].startswith("spec.transformations[0].expression: is a SELECT")
    assert _plan(kube_api, namespace) is None


@pytest.fixture
def operator(namespace: str, table_prefix: str) -> Iterator[None]:
    env = {
        "FEATUREKUBE_RECONCILE_INTERVAL_SECONDS": "1",
        "FEATUREKUBE_TABLE_PREFIX": table_prefix,
        "FEATUREKUBE_METRICS_PORT": "0",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        args = ["run", "--standalone", "--namespace", namespace, "-m", HANDLERS]
        with KopfRunner(args, timeout=60) as runner:
            yield
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None


def test_the_running_operator_reports_refused_sql_in_status_and_an_event(
    operator: None, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    view = copy.deepcopy(VIEW)
    view["spec"]["transformation"] = {"sql": STEAL_SECRET}
    _create(kube_api, namespace, view)

    def refused() -> dict[str, Any] | None:
        conditions = (
            _get(kube_api, namespace, "featureviews", "driver-profile").get("status") or {}
        ).get("conditions") or []
        return next((c for c in conditions if c["reason"] == "InvalidSpec"), None)

    condition = _eventually(refused, 30, "the view is reported InvalidSpec")
    assert "uses function reflect" in condition["message"]

    def event() -> list[Any]:
        events = kubernetes.client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
        return [
            e
            for e in events
            if e.reason == "InvalidSpec" and e.involved_object.name == "driver-profile"
        ]

    (found, *_) = _eventually(event, 30, "an InvalidSpec event is posted")
    assert found.type == "Warning"
    assert "spec.transformation.sql: uses function reflect" in found.message
    assert _owned_objects(kube_api, namespace) == []
