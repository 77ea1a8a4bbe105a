"""What the operator's tests share: a FeatureView and a FeatureService to start from,
and, against the real API server, the operator's context, and one
reconcile with its status written back (importable as ``operator_support``: pytest
puts this folder on sys.path with its conftest)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
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

__all__ = [
    "GROUP",
    "SERVICE",
    "STORED_VIEW",
    "VIEW",
    "Clock",
    "condition",
    "context",
    "create",
    "custom",
    "get",
    "plan",
    "ready",
    "running_operator",
    "step",
]

GROUP = ("featurekube.dev", "v1alpha1")
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
STORED_VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {
        "name": "driver-profile",
        "namespace": "rides",
        # What the API server adds: not the tenant's to get wrong.
        "uid": "0b3c",
        "resourceVersion": "12",
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/drivers/"}},
        "transformation": {"sql": "SELECT driver_id, event_timestamp, rating FROM source"},
        "features": [{"name": "rating", "type": "float64"}],
    },
    "status": {"conditions": []},
}
"""A FeatureView as the API server holds it, for the operator's pure checks: copy it
before changing it."""
SERVICE: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureService",
    "metadata": {"name": "eta-model"},
    "spec": {"owner": "eta-team", "features": [{"featureView": "driver-profile"}]},
}


class Clock:
    """The operator's clock (``reconcile.Context``'s ``now``), which a test moves."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def context(kube_api: kubernetes.client.ApiClient, table_prefix: str) -> reconcile.Context:
    """The operator's context, on the test's API server and table prefix."""
    settings = OperatorSettings(table_prefix=table_prefix, server_image="featurekube/server:test")
    return reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics()
    )


def stream_context(
    kube_api: kubernetes.client.ApiClient, table_prefix: str, clock: Clock, offline_uri: str
) -> reconcile.Context:
    """The operator's context for streaming views: the operator's own brokers, hourly
    backfill windows under ``offline_uri``, and time from ``clock``."""
    settings = OperatorSettings(
        table_prefix=table_prefix,
        offline_uri=offline_uri,
        max_windows_in_flight=8,
        backfill_window_seconds=3600,
        kafka_bootstrap_servers="kafka.infra:9092",
    )
    return reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics(), clock
    )


def custom(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api)


def create(kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    plural = "featureviews" if doc["kind"] == "FeatureView" else "featureservices"
    custom(kube_api).create_namespaced_custom_object(*GROUP, namespace, plural, doc)


def get(
    kube_api: kubernetes.client.ApiClient, namespace: str, plural: str, name: str
) -> dict[str, Any]:
    body: dict[str, Any] = custom(kube_api).get_namespaced_custom_object(
        *GROUP, namespace, plural, name
    )
    return body


def step(
    ctx: reconcile.Context,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    plural: str,
    name: str,
) -> dict[str, Any]:
    """One reconcile, its status written back as kopf would."""
    reconcile_one = (
        reconcile.reconcile_feature_view
        if plural == "featureviews"
        else reconcile.reconcile_feature_service
    )
    outcome = reconcile_one(ctx, get(kube_api, namespace, plural, name))
    custom(kube_api).patch_namespaced_custom_object_status(
        *GROUP, namespace, plural, name, {"status": outcome.status}
    )
    return outcome.status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status's one condition of type ``kind``."""
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return found


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return condition(status, "Ready")


def plan(kube_api: kubernetes.client.ApiClient, namespace: str) -> dict[str, Any] | None:
    """The eta-model service's serving plan, or None before there is one."""
    core = kubernetes.client.CoreV1Api(kube_api)
    try:
        config = core.read_namespaced_config_map("eta-model-plan", namespace)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    found: dict[str, Any] = yaml.safe_load(config.data["plan.yaml"])
    return found


@contextlib.contextmanager
def running_operator(namespace: str, env: Mapping[str, str]) -> Iterator[KopfRunner]:
    """The operator's handlers under kopf's test runner, watching ``namespace`` with
    ``env`` set (kopf imports them when it starts, not earlier: they read settings from
    the environment at import); on leaving, it must have stopped cleanly."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        args = ["run", "--standalone", "--namespace", namespace]
        with KopfRunner([*args, "-m", "featurekube_operator.handlers"], timeout=60) as runner:
            yield runner
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
