"""The operator shows a streaming aggregation waiting for its history: the stream's
application is told where the batch windows start, and its report of the wait becomes
the ``WaitingForHistory`` state and condition and the history gauge, on the real API
server, until the stream reports that it runs."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from featurekube.materialize import stream_job, stream_plan
from featurekube_operator import naming, reconcile, streams
from featurekube_operator.metrics import Metrics
from operator_support import Clock, condition, custom, step, stream_context
from support import stream_view

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
H = dt.timedelta(hours=1)
SPARK = ("sparkoperator.k8s.io", "v1beta2")
NAME = "driver-activity"


def _view() -> dict[str, Any]:
    body = stream_view()
    body["metadata"] = {"name": NAME}
    spec = body["spec"]
    spec["source"]["batch"]["path"] = "s3://featurekube-test/raw/trips/"
    spec["materialization"] = {"schedule": "@hourly", "startTime": "2026-03-01T00:00:00Z"}
    del spec["features"]
    spec["aggregationInterval"] = "10m"
    spec["aggregations"] = [
        {"name": "trips_1h", "column": "fare", "function": "count", "window": "1h"}
    ]
    return body


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 3 * H + dt.timedelta(minutes=25))


@pytest.fixture
def ctx(
    kube_api: kubernetes.client.ApiClient, table_prefix: str, clock: Clock, test_bucket: str
) -> Iterator[reconcile.Context]:
    yield stream_context(
        kube_api, table_prefix, clock, f"s3://{test_bucket}/offline-stream-history"
    )


def _gauge(metrics: Metrics, name: str, namespace: str) -> float | None:
    value: float | None = metrics.registry.get_sample_value(
        name, {"namespace": namespace, "feature_view": NAME, "version": "1"}
    )
    return value


def _report(ctx: reconcile.Context, namespace: str, at: dt.datetime, **fields: Any) -> None:
    offline = naming.offline_uri(ctx.settings, namespace, NAME, 1)
    stream_job.write_progress(
        stream_plan.progress_uri(offline),
        stream_plan.StreamProgress(
            since="2026-03-01T03:00:00.000000Z",
            updated_at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            **fields,
        ),
    )


def test_a_stream_waiting_for_its_history_shows_it_until_it_runs(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    api = custom(kube_api)
    api.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", copy.deepcopy(_view())
    )

    step(ctx, kube_api, namespace, "featureviews", NAME)

    app = api.get_namespaced_custom_object(
        *SPARK, namespace, "sparkapplications", streams.application_name(NAME, 1)
    )
    arguments = app["spec"]["arguments"]
    # The batch windows start at startTime: the stream waits for what they store.
    assert arguments[arguments.index("--history-start") + 1] == "2026-03-01T00:00:00Z"
    assert arguments[arguments.index("--since") + 1] == "2026-03-01T03:00:00Z"
    api.patch_namespaced_custom_object_status(
        *SPARK,
        namespace,
        "sparkapplications",
        streams.application_name(NAME, 1),
        {
            "status": {
                "applicationState": {"state": "RUNNING"},
                "driverInfo": {"podName": f"{streams.application_name(NAME, 1)}-driver"},
            }
        },
    )
    clock.now += dt.timedelta(minutes=2)
    _report(
        ctx,
        namespace,
        clock.now - dt.timedelta(seconds=5),
        waiting_for_history=True,
        history_missing=4,
        history_missing_from="2026-03-01T02:10:00.000000Z",
        history_missing_until="2026-03-01T02:50:00.000000Z",
    )

    status = step(ctx, kube_api, namespace, "featureviews", NAME)

    (entry,) = status["streams"]
    assert entry["state"] == streams.WAITING_FOR_HISTORY
    streaming = condition(status, "Streaming")
    assert (streaming["status"], streaming["reason"]) == ("False", "WaitingForHistory")
    assert "4 intervals before its start" in streaming["message"]
    assert "2026-03-01T02:10:00.000000Z to 2026-03-01T02:50:00.000000Z" in streaming["message"]
    assert _gauge(ctx.metrics, "featurekube_stream_history_missing_intervals", namespace) == 4.0
    assert _gauge(ctx.metrics, "featurekube_stream_running", namespace) == 0.0

    # The batch windows stored it; the stream reads its topic and reports.
    clock.now += dt.timedelta(minutes=2)
    _report(ctx, namespace, clock.now - dt.timedelta(seconds=5), batch_id=0, records=3)

    status = step(ctx, kube_api, namespace, "featureviews", NAME)

    (entry,) = status["streams"]
    assert entry["state"] == "Running"
    assert condition(status, "Streaming")["reason"] == "Running"
    assert _gauge(ctx.metrics, "featurekube_stream_history_missing_intervals", namespace) == 0.0
    assert _gauge(ctx.metrics, "featurekube_stream_running", namespace) == 1.0
