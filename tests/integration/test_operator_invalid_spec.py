"""What validate refuses runs nothing, however the object got into the API server:
the operator's own check of SQL and expressions, against the real API server."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from featurekube_operator import reconcile
from operator_support import SERVICE, VIEW, context, running_operator
from operator_support import create as _create
from operator_support import custom as _custom
from operator_support import get as _get
from operator_support import plan as _plan
from operator_support import ready as _ready
from operator_support import step as _step
from support import eventually

_eventually = functools.partial(eventually, ignore=(kubernetes.client.exceptions.ApiException,))
STEAL_SECRET = (
    "SELECT driver_id, event_timestamp, "
    "reflect('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') AS rating FROM source"
)


@pytest.fixture
def ctx(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> reconcile.Context:
    return context(kube_api, table_prefix)


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
    with running_operator(namespace, env):
        yield


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
