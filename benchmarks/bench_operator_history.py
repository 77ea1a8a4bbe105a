"""The operator's reconcile cost as a view's history grows: 10, then 1,000 windows.

One hourly view is materialized window by window (this benchmark completes each
SparkApplication as the Spark Operator would) against a local platform of its own.
With 10 and with 1,000 completed windows it counts, for idle reconciles, the API
requests made and the bytes they returned, and the view's SparkApplications; then it
deletes every one of them and times the reconcile that follows, counting windows run
again. The peer is the same operator keeping every finished application (history
limits out of reach), as it did before progress moved into the view's status.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from typing import Any, cast
from unittest import mock

import boto3
import kubernetes.client
import kubernetes.config

from benchmarks import _harness, _views
from featurekube._platform import platform
from featurekube_operator import reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
IDLE_RECONCILES = 5
SPARK = ("sparkoperator.k8s.io", "v1beta2")
VIEW = "trips"


class _Counter:
    """Counts the requests an API client makes and the bytes they return."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.requests = 0
        self.bytes = 0
        original: Callable[..., Any] = api.rest_client.request

        def request(*args: Any, **kwargs: Any) -> Any:
            response = original(*args, **kwargs)
            self.requests += 1
            self.bytes += len(response.read() or b"")
            return response

        api.rest_client.request = request  # type: ignore[method-assign]


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def _view(namespace: str) -> dict[str, Any]:
    return _views.feature_view(
        VIEW,
        namespace,
        "s3://featurekube-bench/raw/trips/",
        {"schedule": "@hourly", "startTime": "2026-01-01T00:00:00Z"},
    )


class _Subject:
    """One view in a namespace of its own, reconciled by one operator configuration."""

    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, settings: OperatorSettings
    ) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.clock = _Clock()
        # The operator's own client, so that only its requests are counted.
        operator_api = kubernetes.client.ApiClient(api.configuration)
        self.counter = _Counter(operator_api)
        self.ctx = reconcile.Context(
            settings,
            Kube(operator_api),
            OnlineTables(boto3.client("dynamodb")),
            Metrics(),
            self.clock,
        )
        kubernetes.client.CoreV1Api(api).create_namespace(
            kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace))
        )
        self.custom.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", _view(namespace)
        )

    def apps(self) -> list[dict[str, Any]]:
        found = self.custom.list_namespaced_custom_object(
            *SPARK, self.namespace, "sparkapplications"
        )
        return cast(list[dict[str, Any]], cast(dict[str, Any], found)["items"])

    def step(self) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", self.namespace, "featureviews", VIEW
        )
        outcome = reconcile.reconcile_feature_view(self.ctx, cast(dict[str, Any], body))
        self.ctx.kube.patch_status(
            "featurekube.dev/v1alpha1", "FeatureView", self.namespace, VIEW, outcome.status
        )
        return outcome.status

    def complete_all(self) -> int:
        done = 0
        for app in self.apps():
            if (app.get("status") or {}).get("applicationState"):
                continue
            self.custom.patch_namespaced_custom_object_status(
                *SPARK,
                self.namespace,
                "sparkapplications",
                app["metadata"]["name"],
                {
                    "status": {
                        "applicationState": {"state": "COMPLETED"},
                        "driverInfo": {},
                        "terminationTime": self.clock.now.isoformat().replace("+00:00", "Z"),
                    }
                },
            )
            done += 1
        return done

    def materialize_until(self, windows: int) -> None:
        self.clock.now = T0 + windows * H + dt.timedelta(minutes=5)
        while True:
            status = self.step()
            if not self.complete_all():
                end = (status.get("lastMaterializedWindow") or {}).get("end")
                if end == (T0 + windows * H).isoformat().replace("+00:00", "Z"):
                    # Record the last completions; past their grace, collect what they allow.
                    self.clock.now += dt.timedelta(minutes=2)
                    self.step()
                    return

    def idle_cost(self) -> tuple[float, float]:
        """Requests and bytes returned per reconcile, when nothing is due."""
        requests, received = self.counter.requests, self.counter.bytes
        for _ in range(IDLE_RECONCILES):
            self.step()
        return (
            (self.counter.requests - requests) / IDLE_RECONCILES,
            (self.counter.bytes - received) / IDLE_RECONCILES,
        )

    def recover(self) -> tuple[float, int, bool]:
        """Delete every application; the time of the reconcile that follows, the
        windows it started, and whether the view still serves the same data."""
        before = self.step()
        for app in self.apps():
            self.custom.delete_namespaced_custom_object(
                *SPARK, self.namespace, "sparkapplications", app["metadata"]["name"]
            )
        began = time.perf_counter()
        after = self.step()
        elapsed = time.perf_counter() - began
        same = all(
            before.get(k) == after.get(k) for k in ("version", "lastMaterializedWindow", "rows")
        )
        return elapsed, len(self.apps()), same


def run() -> _harness.Report:
    report = _harness.Report(
        name="operator_history",
        description="reconcile cost of one hourly view at 10 and 1,000 completed windows",
        baseline="every application kept",
    )
    with (
        _harness.scratch_platform() as (endpoints, _),
        mock.patch.dict(os.environ, endpoints.environment()),
    ):
        _measure(report, endpoints)
    return report


def _measure(report: _harness.Report, endpoints: platform.Endpoints) -> None:
    api = kubernetes.config.new_client_from_config(str(endpoints.kubeconfig))
    common: dict[str, Any] = {
        "table_prefix": "bench.",
        "max_windows_in_flight": 50,
        "backfill_window_seconds": 3600,
    }
    subjects = {
        "featurekube operator": OperatorSettings(**common),
        "every application kept": OperatorSettings(
            **common, succeeded_history_limit=10**9, failed_history_limit=10**9
        ),
    }
    for index, (subject, settings) in enumerate(subjects.items()):
        view = _Subject(api, f"history-{index}", settings)
        for windows in (10, 1000):
            view.materialize_until(windows)
            requests, received = view.idle_cost()
            report.add(subject, f"API requests per reconcile, {windows} windows", "req", [requests])
            report.add(
                subject, f"bytes read per reconcile, {windows} windows", "KiB", [received / 1024]
            )
            report.add(
                subject,
                f"SparkApplications, {windows} windows",
                "objects",
                [float(len(view.apps()))],
            )
        elapsed, restarted, same = view.recover()
        report.add(subject, "reconcile after deleting every application", "s", [elapsed])
        report.notes[f"{subject}: windows run again after deleting every application"] = str(
            restarted
        )
        report.notes[f"{subject}: serves the same data afterwards"] = str(same)
