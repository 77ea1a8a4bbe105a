"""The operator runs a streaming view's stream: one long-running SparkApplication per
version on the real API server, batch windows up to the stream's start only, and the
stream's reports turned into status, a condition and metrics."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
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
NAME = "driver-trips"

VIEW: dict[str, Any] = stream_view()
VIEW["metadata"] = {"name": NAME}
VIEW["spec"]["source"]["batch"]["path"] = "s3://featurekube-test/raw/trips/"
VIEW["spec"]["materialization"] = {"schedule": "@hourly", "startTime": "2026-03-01T00:00:00Z"}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 3 * H + dt.timedelta(minutes=25))


@pytest.fixture
def ctx(
    kube_api: kubernetes.client.ApiClient, table_prefix: str, clock: Clock, test_bucket: str
) -> Iterator[reconcile.Context]:
    yield stream_context(kube_api, table_prefix, clock, f"s3://{test_bucket}/offline-streams")


def _apps(kube_api: kubernetes.client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    items = custom(kube_api).list_namespaced_custom_object(*SPARK, namespace, "sparkapplications")
    return {a["metadata"]["name"]: a for a in items["items"]}


def _sample(metrics: Metrics, name: str, namespace: str) -> float | None:
    value: float | None = metrics.registry.get_sample_value(
        name, {"namespace": namespace, "feature_view": NAME, "version": "1"}
    )
    return value


def test_a_streaming_view_gets_its_stream_and_batch_windows_up_to_its_start(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    body = copy.deepcopy(VIEW)
    custom(kube_api).create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", body
    )

    status = step(ctx, kube_api, namespace, "featureviews", NAME)

    apps = _apps(kube_api, namespace)
    stream = apps.pop(f"{NAME}-v1-stream")
    since = T0 + 3 * H  # the last hourly tick before the stream was deployed
    assert stream["metadata"]["annotations"][streams.ANNOTATION_SINCE] == "2026-03-01T03:00:00Z"
    assert stream["spec"]["restartPolicy"]["type"] == "Always"
    assert "--since" in stream["spec"]["arguments"]
    ends = sorted(a["metadata"]["annotations"][naming.ANNOTATION_WINDOW_END] for a in apps.values())
    assert ends == ["2026-03-01T01:00:00Z", "2026-03-01T02:00:00Z", "2026-03-01T03:00:00Z"]
    assert status["streams"] == [
        {
            "version": 1,
            "since": "2026-03-01T03:00:00Z",
            "application": f"{NAME}-v1-stream",
            "state": "Starting",
        }
    ]
    assert condition(status, "Streaming")["reason"] == "Starting"
    core = kubernetes.client.CoreV1Api(kube_api)
    assert core.read_namespaced_config_map(f"{NAME}-v1-job", namespace).data

    # The driver runs and the job reports; hours later, the start has not moved and no
    # batch window reaches past it.
    custom(kube_api).patch_namespaced_custom_object_status(
        *SPARK,
        namespace,
        "sparkapplications",
        f"{NAME}-v1-stream",
        {
            "status": {
                "applicationState": {"state": "RUNNING"},
                "driverInfo": {"podName": f"{NAME}-v1-stream-driver"},
            }
        },
    )
    clock.now += 2 * H
    offline = naming.offline_uri(ctx.settings, namespace, NAME, 1)
    stream_job.write_progress(
        stream_plan.progress_uri(offline),
        stream_plan.StreamProgress(
            batch_id=7,
            since="2026-03-01T03:00:00.000000Z",
            updated_at=(clock.now - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            consumer_lag=12,
            dead_letters=3,
            late=2,
            latency_p50_seconds=1.5,
            last_event_time="2026-03-01T05:24:00.000000Z",
        ),
    )
    status = step(ctx, kube_api, namespace, "featureviews", NAME)

    assert condition(status, "Streaming")["status"] == "True"
    (entry,) = status["streams"]
    assert entry["state"] == "Running" and entry["since"] == "2026-03-01T03:00:00Z"
    assert (entry["consumerLag"], entry["deadLetters"], entry["latencySeconds"]) == (12, 3, 1.5)
    assert entry["lateEvents"] == 2
    assert entry["lastEventTime"].startswith("2026-03-01T05:24:00")
    windows = [a for n, a in _apps(kube_api, namespace).items() if not n.endswith("-stream")]
    assert max(a["metadata"]["annotations"][naming.ANNOTATION_WINDOW_END] for a in windows) == (
        "2026-03-01T03:00:00Z"
    )
    metrics = ctx.metrics
    assert _sample(metrics, "featurekube_stream_running", namespace) == 1.0
    assert _sample(metrics, "featurekube_stream_consumer_lag_records", namespace) == 12.0
    assert _sample(metrics, "featurekube_stream_dead_letters", namespace) == 3.0
    assert _sample(metrics, "featurekube_stream_late_events", namespace) == 2.0
    assert _sample(metrics, "featurekube_stream_event_to_online_seconds", namespace) == 1.5
    assert _sample(metrics, "featurekube_stream_last_event_timestamp_seconds", namespace) == (
        dt.datetime(2026, 3, 1, 5, 24, tzinfo=UTC).timestamp()
    )
    assert since == T0 + 3 * H


def test_a_new_version_gets_a_stream_of_its_own_and_a_retired_ones_stops(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    api = custom(kube_api)
    api.create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", copy.deepcopy(VIEW)
    )
    step(ctx, kube_api, namespace, "featureviews", NAME)
    for name in _apps(kube_api, namespace):
        if not name.endswith("-stream"):
            _finish_window(kube_api, namespace, name, clock.now)
    status = step(ctx, kube_api, namespace, "featureviews", NAME)
    assert status["version"] == 1 and condition(status, "Ready")["status"] == "True"
    current = api.get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", NAME
    )
    current["spec"]["source"]["stream"]["kafka"]["topic"] = "trips-v2"
    api.replace_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", NAME, current
    )
    clock.now += H

    status = step(ctx, kube_api, namespace, "featureviews", NAME)

    apps = _apps(kube_api, namespace)
    assert {f"{NAME}-v1-stream", f"{NAME}-v2-stream"} <= set(apps), "v1 serves while v2 backfills"
    v2 = apps[f"{NAME}-v2-stream"]
    assert v2["metadata"]["annotations"][streams.ANNOTATION_SINCE] == "2026-03-01T04:00:00Z"
    assert [e["version"] for e in status["streams"]] == [1, 2]

    # A view that streamed a version which never served drops that version's stream.
    current = api.get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", NAME
    )
    current["spec"]["source"]["stream"]["kafka"]["topic"] = "trips-v3"
    api.replace_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", NAME, current
    )
    status = step(ctx, kube_api, namespace, "featureviews", NAME)
    streaming = {n for n in _apps(kube_api, namespace) if n.endswith("-stream")}
    assert streaming == {f"{NAME}-v1-stream", f"{NAME}-v3-stream"}
    assert [e["version"] for e in status["streams"]] == [1, 3]


def _finish_window(
    kube_api: kubernetes.client.ApiClient, namespace: str, name: str, at: dt.datetime
) -> None:
    custom(kube_api).patch_namespaced_custom_object_status(
        *SPARK,
        namespace,
        "sparkapplications",
        name,
        {
            "status": {
                "applicationState": {"state": "COMPLETED"},
                "driverInfo": {"podName": f"{name}-driver"},
                "terminationTime": at.isoformat().replace("+00:00", "Z"),
            }
        },
    )


def _aggregations(window: str) -> dict[str, Any]:
    return {
        "aggregationInterval": "10m",
        "aggregations": [
            {"name": "trips", "column": "fare", "function": "count", "window": window}
        ],
    }


def test_the_api_server_takes_a_streaming_aggregation_of_up_to_30_days(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    body = copy.deepcopy(VIEW)
    del body["spec"]["features"]
    body["spec"].update(_aggregations("30d"))
    body["spec"]["source"]["stream"]["kafka"]["allowedLateness"] = "1h"

    created = custom(kube_api).create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", body
    )

    assert created["spec"]["source"]["stream"]["kafka"]["allowedLateness"] == "1h"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["source"].pop("batch") and s["source"].update(push={}),
            "a stream source needs source.batch beside it",
        ),
        (
            lambda s: s["source"]["stream"]["kafka"].update(timestampField="at"),
            "timestampField must be source.batch.timestampField",
        ),
        (
            lambda s: s["source"]["stream"]["kafka"].pop("fields"),
            "a json stream declares its events' fields",
        ),
        (
            lambda s: s["source"]["stream"]["kafka"].update(format="avro"),
            "an avro stream needs avroSchema",
        ),
        (
            lambda s: s.pop("features") and s.update(_aggregations("31d")),
            "a streaming aggregation's window is at most 30d",
        ),
        (
            lambda s: s["source"]["stream"]["kafka"].update(allowedLateness="8d"),
            "allowedLateness is at most 7d",
        ),
    ],
)
def test_the_api_server_refuses_a_bad_stream_source_with_the_same_message(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    change: Any,
    message: str,
) -> None:
    body = copy.deepcopy(VIEW)
    change(body["spec"])

    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        custom(kube_api).create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", body
        )

    assert refused.value.status == 422
    assert message in str(refused.value.body)


@pytest.mark.spark
@pytest.mark.timeout(900)
def test_the_application_the_operator_renders_runs_the_stream_to_an_online_value(
    ctx: reconcile.Context,
    clock: Clock,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Apply, reconcile, then run the driver's arguments as the Spark Operator would
    (here in local mode, with the spec file its ConfigMap mounts): the time from apply to
    the first online value."""
    from confluent_kafka import Producer

    now = dt.datetime.now(UTC)
    clock.now = now
    ctx.settings = dataclasses.replace(
        ctx.settings, kafka_bootstrap_servers=kafka_bootstrap_servers
    )
    body = copy.deepcopy(VIEW)
    body["spec"]["source"]["stream"]["kafka"]["topic"] = kafka_topic
    body["spec"]["materialization"]["startTime"] = (now - 2 * H).strftime("%Y-%m-%dT%H:00:00Z")
    began = time.monotonic()
    custom(kube_api).create_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", body
    )
    step(ctx, kube_api, namespace, "featureviews", NAME)
    reconciled = time.monotonic()
    app = _apps(kube_api, namespace)[f"{NAME}-v1-stream"]
    config = kubernetes.client.CoreV1Api(kube_api).read_namespaced_config_map(
        f"{NAME}-v1-job", namespace
    )
    ((key, text),) = config.data.items()
    (tmp_path / key).write_text(text)
    arguments = list(app["spec"]["arguments"])
    arguments[arguments.index("--spec") + 1] = str(tmp_path / key)
    event = {
        "driver_id": 7,
        "fare": 12.5,
        "event_timestamp": now.isoformat().replace("+00:00", "Z"),
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap_servers})
    producer.produce(kafka_topic, value=json.dumps(event).encode())
    assert producer.flush(60) == 0

    assert stream_job.main([*arguments, "--available-now"]) == 0

    served = time.monotonic()
    table = naming.online_table(ctx.settings, namespace, NAME, 1)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert [i["entity_key"]["S"] for i in items if not i["entity_key"]["S"].startswith("#")] == [
        "driver_id:i:7"
    ]
    record_property("apply_to_first_online_seconds", round(served - began, 1))
    record_property("apply_to_application_seconds", round(reconciled - began, 1))
    print(
        f"\napply -> first online value: {served - began:.1f} s (apply -> SparkApplication "
        f"{reconciled - began:.1f} s; job start, local mode, -> online {served - reconciled:.1f} s)"
    )
    status = step(ctx, kube_api, namespace, "featureviews", NAME)
    (entry,) = status["streams"]
    assert entry["lastEventTime"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
