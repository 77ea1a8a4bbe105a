"""The operator's reconcile steps against the real API server and moto's DynamoDB,
with a clock the test moves. SparkApplications are completed or failed by writing
their status, as the Spark Operator would; a Job's pod, made by the platform's job
controller, by writing the pod's status as the kubelet would (the job controller then
writes the Job's)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import kubernetes.client
import pytest
import yaml

from featurekube._platform import runtime
from featurekube.online import layout, windows
from featurekube.spec import v1alpha1
from featurekube_operator import naming, reconcile
from featurekube_operator.dynamo import OnlineTables
from featurekube_operator.kube import Kube
from featurekube_operator.metrics import Metrics
from featurekube_operator.settings import OperatorSettings
from operator_support import Clock
from support import eventually

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
H = dt.timedelta(hours=1)
SPARK = ("sparkoperator.k8s.io", "v1beta2")

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trip-stats"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/trips/"}},
        "aggregations": [
            {"name": "trips_1h", "column": "trip_id", "function": "count", "window": "1h"},
        ],
        "aggregationInterval": "10m",
        "materialization": {"schedule": "@hourly", "startTime": "2026-01-01T00:00:00Z"},
        "deletionPolicy": "Delete",
    },
}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 3 * H + dt.timedelta(minutes=5))


@pytest.fixture
def ctx(
    kube_api: kubernetes.client.ApiClient, table_prefix: str, clock: Clock
) -> Iterator[reconcile.Context]:
    settings = OperatorSettings(
        table_prefix=table_prefix,
        offline_uri="s3://featurekube-test/offline",
        max_windows_in_flight=2,
        backfill_window_seconds=3600,
        retry_backoff_seconds=60,
    )
    yield reconcile.Context(
        settings, Kube(kube_api), OnlineTables(boto3.client("dynamodb")), Metrics(), clock
    )


def _custom(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api)


def _apply_view(
    kube_api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]
) -> dict[str, Any]:
    api = _custom(kube_api)
    try:
        current = api.get_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", doc["metadata"]["name"]
        )
    except kubernetes.client.exceptions.ApiException:
        created: dict[str, Any] = api.create_namespaced_custom_object(
            "featurekube.dev", "v1alpha1", namespace, "featureviews", doc
        )
        return created
    replaced = {
        **doc,
        "metadata": {**doc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
    }
    updated: dict[str, Any] = api.replace_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", doc["metadata"]["name"], replaced
    )
    return updated


def _step(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str, name: str
) -> dict[str, Any]:
    """One reconcile, its status written back as kopf would."""
    api = _custom(kube_api)
    body = api.get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", name
    )
    outcome = reconcile.reconcile_feature_view(ctx, body)
    api.patch_namespaced_custom_object_status(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", name, {"status": outcome.status}
    )
    status: dict[str, Any] = outcome.status
    return status


def _apps(kube_api: kubernetes.client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    items = _custom(kube_api).list_namespaced_custom_object(*SPARK, namespace, "sparkapplications")[
        "items"
    ]
    return {a["metadata"]["name"]: a for a in items}


def _finish(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    state: str,
    at: dt.datetime,
    error: str = "",
) -> None:
    _custom(kube_api).patch_namespaced_custom_object_status(
        *SPARK,
        namespace,
        "sparkapplications",
        name,
        {
            "status": {
                "applicationState": {"state": state, "errorMessage": error},
                "driverInfo": {"podName": f"{name}-driver"},
                "terminationTime": at.isoformat().replace("+00:00", "Z"),
            }
        },
    )


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return found


def test_a_view_gets_its_table_snapshot_and_first_windows(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)

    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    table = naming.online_table(ctx.settings, namespace, "driver-trip-stats", 1)
    dynamodb = boto3.client("dynamodb")
    assert (
        dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["AttributeName"]
        == layout.EXPIRES_AT
    )
    arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in dynamodb.list_tags_of_resource(ResourceArn=arn)["Tags"]}
    assert tags == {
        "featurekube.dev/namespace": namespace,
        "featurekube.dev/feature-view": "driver-trip-stats",
    }
    core = kubernetes.client.CoreV1Api(kube_api)
    assert core.read_namespaced_config_map("driver-trip-stats-v1-spec", namespace).immutable
    assert sorted(_apps(kube_api, namespace)) == [
        "driver-trip-stats-v1-202601010000",
        "driver-trip-stats-v1-202601010100",
    ]
    assert status["latestVersion"] == 1
    assert _condition(status, "Ready")["status"] == "False"
    assert _condition(status, "Materialized")["reason"] == "Backfilling"


def test_the_backfill_proceeds_in_order_and_the_view_becomes_ready(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    # The second window finishes first: the first gap still holds materialization back.
    _finish(kube_api, namespace, "driver-trip-stats-v1-202601010100", "COMPLETED", clock.now)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")
    assert "lastMaterializedWindow" not in status
    assert sorted(_apps(kube_api, namespace))[-1] == "driver-trip-stats-v1-202601010200"

    for name in sorted(_apps(kube_api, namespace)):
        _finish(kube_api, namespace, name, "COMPLETED", clock.now)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert status["lastMaterializedWindow"]["end"] == "2026-01-01T03:00:00Z"
    assert status["version"] == 1
    assert status["onlineTable"] == naming.online_table(
        ctx.settings, namespace, "driver-trip-stats", 1
    )
    assert _condition(status, "Ready")["status"] == "True"
    assert len(_apps(kube_api, namespace)) == 3

    clock.now += H
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    assert sorted(_apps(kube_api, namespace))[-1] == "driver-trip-stats-v1-202601010300"
    # Their drivers left no report, so which engine ran them is not known.
    succeeded = ctx.metrics.windows_succeeded.labels(namespace, "driver-trip-stats", "unknown")
    assert succeeded._value.get() == 3


def test_the_rows_of_the_last_window_come_from_its_drivers_report(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    def finish(app: str, message: str) -> None:
        runtime.record_driver_pod(kube_api, _apps(kube_api, namespace)[app], 0, message)
        _finish(kube_api, namespace, app, "COMPLETED", clock.now)

    def report(rows: int) -> str:
        counts = {"read": 3 * rows, "offline": rows, "online": 4}
        engine = "spark" if rows == 10 else "python"
        return json.dumps({"published": True, "rows": counts, "engine": engine})

    # Always a SparkApplication: under auto, windows after the first would be Jobs.
    _apply_view(kube_api, namespace, _engine(VIEW, "spark"))
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    done: set[str] = set()
    for rows in (10, 20, 30):
        (app, *_) = sorted(set(_apps(kube_api, namespace)) - done)
        finish(app, report(rows))
        done.add(app)
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert status["lastMaterializedWindow"]["end"] == "2026-01-01T03:00:00Z"
    assert status["rows"] == {"read": 90, "offline": 30, "online": 4, "engine": "python"}
    # Status and metrics say which engine computed each window.
    by_engine = ctx.metrics.windows_succeeded.labels
    assert by_engine(namespace, "driver-trip-stats", "python")._value.get() == 2
    assert by_engine(namespace, "driver-trip-stats", "spark")._value.get() == 1
    # A finished window's report is read once: the pod may go, the rows stay.
    kubernetes.client.CoreV1Api(kube_api).delete_namespaced_pod(f"{app}-driver", namespace)
    assert _step(ctx, kube_api, namespace, "driver-trip-stats")["rows"] == status["rows"]

    # The next window's driver left no report (it died before writing one): no rows,
    # rather than the rows of another window.
    clock.now += H
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    (app,) = set(_apps(kube_api, namespace)) - done
    finish(app, "Error: killed")
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    stored = _custom(kube_api).get_namespaced_custom_object(
        "featurekube.dev", "v1alpha1", namespace, "featureviews", "driver-trip-stats"
    )["status"]
    assert stored["lastMaterializedWindow"]["end"] == "2026-01-01T04:00:00Z"
    assert "rows" not in stored


def test_a_failed_window_is_reported_then_retried_after_its_backoff(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    _finish(
        kube_api,
        namespace,
        "driver-trip-stats-v1-202601010000",
        "FAILED",
        clock.now,
        "source path not found",
    )

    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    degraded = _condition(status, "Degraded")
    assert degraded["status"] == "True"
    assert "source path not found" in degraded["message"] and "attempt 1" in degraded["message"]
    assert ctx.metrics.windows_failed.labels(namespace, "driver-trip-stats")._value.get() == 1

    clock.now += dt.timedelta(seconds=61)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    retried = _apps(kube_api, namespace)["driver-trip-stats-v1-202601010000"]
    assert retried["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == "2"
    assert "status" not in retried or not retried["status"].get("applicationState")
    assert _condition(status, "Degraded")["status"] == "False"


def test_a_restarted_operator_continues_without_duplicates_or_gaps(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    first = _apps(kube_api, namespace)
    # A fresh process: no memory but what the cluster holds.
    restarted = reconcile.Context(ctx.settings, ctx.kube, ctx.tables, Metrics(), clock)

    _step(restarted, kube_api, namespace, "driver-trip-stats")
    assert _apps(kube_api, namespace).keys() == first.keys()

    started: dict[str, tuple[str, str]] = {}  # every application ever made, by uid
    for name in first:
        _finish(kube_api, namespace, name, "COMPLETED", clock.now)
    clock.now += 2 * H
    for _ in range(4):
        for app in _apps(kube_api, namespace).values():
            annotations = app["metadata"]["annotations"]
            started[app["metadata"]["uid"]] = (
                annotations[naming.ANNOTATION_WINDOW_START],
                annotations[naming.ANNOTATION_WINDOW_END],
            )
        status = _step(restarted, kube_api, namespace, "driver-trip-stats")
        for name, app in _apps(kube_api, namespace).items():
            if not app.get("status"):
                _finish(kube_api, namespace, name, "COMPLETED", clock.now)
    windows = sorted(started.values())
    assert [w[0] for w in windows[1:]] == [w[1] for w in windows[:-1]], "windows follow each other"
    assert windows[0][0] == "2026-01-01T00:00:00Z" and windows[-1][1] == "2026-01-01T05:00:00Z"
    assert status["lastMaterializedWindow"]["end"] == "2026-01-01T05:00:00Z"


def test_a_data_change_backfills_a_new_version_before_serving_it(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    for _ in range(3):
        _step(ctx, kube_api, namespace, "driver-trip-stats")
        for name, app in _apps(kube_api, namespace).items():
            if not app.get("status"):
                _finish(kube_api, namespace, name, "COMPLETED", clock.now)
    assert _step(ctx, kube_api, namespace, "driver-trip-stats")["version"] == 1

    cosmetic = copy.deepcopy(VIEW)
    cosmetic["spec"]["description"] = "trips per driver"
    _apply_view(kube_api, namespace, cosmetic)
    assert _step(ctx, kube_api, namespace, "driver-trip-stats")["latestVersion"] == 1

    changed = copy.deepcopy(cosmetic)
    changed["spec"]["aggregations"].append(
        {"name": "trips_2h", "column": "trip_id", "function": "count", "window": "2h"}
    )
    _apply_view(kube_api, namespace, changed)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert (status["version"], status["latestVersion"]) == (1, 2)
    assert "version 2 is backfilling" in _condition(status, "Ready")["message"]
    v2 = [n for n in _apps(kube_api, namespace) if "-v2-" in n]
    assert v2 and OnlineTables().exists(
        naming.online_table(ctx.settings, namespace, "driver-trip-stats", 2)
    )

    for _ in range(3):
        for name, app in _apps(kube_api, namespace).items():
            if not app.get("status"):
                _finish(kube_api, namespace, name, "COMPLETED", clock.now)
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert status["version"] == 2
    assert status["onlineTable"].endswith(".v2")
    assert status["offlineUri"].endswith("/v2")


def test_deletion_policy_delete_removes_the_tables(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    body = _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    table = naming.online_table(ctx.settings, namespace, "driver-trip-stats", 1)
    assert ctx.tables.exists(table)

    reconcile.finalize_feature_view(ctx, body)

    assert not ctx.tables.exists(table)


def _run_until_idle(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str, steps: int
) -> dict[str, Any]:
    """Reconcile, completing every new application, until nothing new starts."""
    status: dict[str, Any] = {}
    for _ in range(steps):
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")
        fresh = [n for n, a in _apps(kube_api, namespace).items() if not a.get("status")]
        if not fresh:
            break
        for name in fresh:
            _finish(kube_api, namespace, name, "COMPLETED", ctx.clock())
    return status


def _delete_apps(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    for name in _apps(kube_api, namespace):
        _custom(kube_api).delete_namespaced_custom_object(
            *SPARK, namespace, "sparkapplications", name
        )


def test_finished_applications_are_collected_beyond_the_history_limits(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    clock.now += 9 * H

    status = _run_until_idle(ctx, kube_api, namespace, 20)
    clock.now += dt.timedelta(minutes=2)  # past the grace of the last ones to finish
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert status["lastMaterializedWindow"]["end"] == "2026-01-01T12:00:00Z"
    # Twelve windows ran; the status is their record, three applications their history.
    assert sorted(_apps(kube_api, namespace)) == [
        "driver-trip-stats-v1-202601010900",
        "driver-trip-stats-v1-202601011000",
        "driver-trip-stats-v1-202601011100",
    ]
    (record,) = status["progress"]
    assert (record["version"], record["materializedUntil"]) == (1, "2026-01-01T12:00:00Z")


def test_deleting_every_application_of_a_ready_view_changes_nothing_and_reruns_nothing(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    before = _run_until_idle(ctx, kube_api, namespace, 10)
    assert _condition(before, "Ready")["status"] == "True"

    _delete_apps(kube_api, namespace)
    restarted = reconcile.Context(ctx.settings, ctx.kube, ctx.tables, Metrics(), clock)
    after = _step(restarted, kube_api, namespace, "driver-trip-stats")

    assert _apps(kube_api, namespace) == {}
    for key in ("version", "onlineTable", "offlineUri", "lastMaterializedWindow", "rows"):
        assert after.get(key) == before.get(key), key
    assert _condition(after, "Ready")["status"] == "True"
    # The next tick runs the next window only.
    clock.now += H
    _step(restarted, kube_api, namespace, "driver-trip-stats")
    assert sorted(_apps(kube_api, namespace)) == ["driver-trip-stats-v1-202601010300"]


def test_a_window_whose_application_vanished_while_running_runs_again(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    first = _apps(kube_api, namespace)
    _step(ctx, kube_api, namespace, "driver-trip-stats")

    _delete_apps(kube_api, namespace)
    _step(ctx, kube_api, namespace, "driver-trip-stats")

    again = _apps(kube_api, namespace)
    assert again.keys() == first.keys()
    assert {a["metadata"]["uid"] for a in again.values()}.isdisjoint(
        a["metadata"]["uid"] for a in first.values()
    )


def _fail_with_report(
    kube_api: kubernetes.client.ApiClient, namespace: str, name: str, at: dt.datetime
) -> None:
    report = {
        "published": False,
        "rows": {"read": 10, "offline": 0, "online": 0},
        "error": "FeatureView driver-trip-stats: column trip_id is string, expected int64",
        "errorType": "SourceSchemaError",
    }
    runtime.record_driver_pod(kube_api, _apps(kube_api, namespace)[name], 1, json.dumps(report))
    _finish(kube_api, namespace, name, "FAILED", at, "driver container failed")


def test_a_failure_that_cannot_heal_stops_with_too_many_failures_until_a_backfill(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    first = "driver-trip-stats-v1-202601010000"
    _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    for attempt in (1, 2, 3):
        app = _apps(kube_api, namespace)[first]
        assert app["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == str(attempt)
        _fail_with_report(kube_api, namespace, first, clock.now)
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")
        clock.now += dt.timedelta(hours=1)
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    degraded = _condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "TooManyFailures")
    assert "failed 3 times" in degraded["message"] and "trip_id is string" in degraded["message"]
    assert "featurekube backfill driver-trip-stats" in degraded["message"]
    clock.now += dt.timedelta(days=1)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    app = _apps(kube_api, namespace).get(first)
    assert app is None or app["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == "3"

    # The source is fixed; a backfill of the window resumes it with fresh attempts.
    annotated = copy.deepcopy(VIEW)
    annotated["metadata"]["annotations"] = {
        "featurekube.dev/backfill": "2026-01-01T00:00:00Z/2026-01-01T01:00:00Z"
    }
    _apply_view(kube_api, namespace, annotated)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    app = _apps(kube_api, namespace)[first]
    assert app["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == "1"
    assert app["metadata"]["annotations"][naming.ANNOTATION_RUN]
    assert _condition(status, "Degraded")["status"] == "False"


def test_a_backfill_annotation_reruns_its_windows_once(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    before = _run_until_idle(ctx, kube_api, namespace, 10)
    _delete_apps(kube_api, namespace)

    annotated = copy.deepcopy(VIEW)
    annotated["metadata"]["annotations"] = {
        "featurekube.dev/backfill": "2026-01-01T01:00:00Z/2026-01-01T03:00:00Z # late trips"
    }
    _apply_view(kube_api, namespace, annotated)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    reruns = _apps(kube_api, namespace)
    assert sorted(reruns) == [
        "driver-trip-stats-v1-202601010100",
        "driver-trip-stats-v1-202601010200",
    ]
    assert status["backfillRequest"].endswith("# late trips")
    # Re-runs leave what is served alone while they run.
    assert status["lastMaterializedWindow"] == before["lastMaterializedWindow"]
    assert _condition(status, "Ready")["status"] == "True"
    for name in reruns:
        _finish(kube_api, namespace, name, "COMPLETED", clock.now)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    _delete_apps(kube_api, namespace)

    # The same annotation, applied again (a GitOps sync), runs nothing more.
    _apply_view(kube_api, namespace, annotated)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")
    assert _apps(kube_api, namespace) == {}
    assert status["progress"][0]["windows"] == []


def test_an_unreadable_backfill_annotation_degrades_the_view_and_reruns_nothing(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    annotated = copy.deepcopy(VIEW)
    annotated["metadata"]["annotations"] = {"featurekube.dev/backfill": "last week"}
    _apply_view(kube_api, namespace, annotated)

    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    degraded = _condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidBackfill")
    assert "featurekube.dev/backfill" in degraded["message"]
    assert "backfillRequest" not in status


def test_a_table_created_by_an_operator_that_stopped_before_its_ttl_gets_its_ttl(
    ctx: reconcile.Context, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    table = naming.online_table(ctx.settings, namespace, "driver-trip-stats", 1)
    dynamodb = boto3.client("dynamodb")
    # What an operator killed right after create_table leaves behind.
    dynamodb.create_table(**layout.table_definition(table, {}))

    _step(ctx, kube_api, namespace, "driver-trip-stats")

    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", layout.EXPIRES_AT)


def test_featurekube_backfill_asks_the_operator_to_rerun_windows(
    ctx: reconcile.Context,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from featurekube.cli import main

    _apply_view(kube_api, namespace, VIEW)
    _run_until_idle(ctx, kube_api, namespace, 10)
    _delete_apps(kube_api, namespace)
    argv = ["backfill", "driver-trip-stats", "-n", namespace]
    argv += ["--start", "2026-01-01T01:00:00Z", "--end", "2026-01-01T02:00:00Z"]

    assert main.main(argv) == 0
    assert f"FeatureView {namespace}/driver-trip-stats" in capsys.readouterr().out
    _step(ctx, kube_api, namespace, "driver-trip-stats")

    (app,) = _apps(kube_api, namespace).values()
    assert app["metadata"]["annotations"][naming.ANNOTATION_WINDOW_START] == "2026-01-01T01:00:00Z"
    first_run = app["metadata"]["annotations"][naming.ANNOTATION_RUN]
    # Each command is a request of its own, even for the same windows.
    _finish(kube_api, namespace, app["metadata"]["name"], "COMPLETED", ctx.clock())
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    assert main.main(argv) == 0
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    app = _apps(kube_api, namespace)["driver-trip-stats-v1-202601010100"]
    assert app["metadata"]["annotations"][naming.ANNOTATION_RUN] != first_run


def _job_spec(
    kube_api: kubernetes.client.ApiClient, namespace: str, app: dict[str, Any]
) -> dict[str, Any]:
    """The spec the job of ``app`` reads, from the ConfigMap its driver mounts."""
    (mount,) = app["spec"]["driver"]["configMaps"]
    data = (
        kubernetes.client.CoreV1Api(kube_api)
        .read_namespaced_config_map(mount["name"], namespace)
        .data
    )
    spec: dict[str, Any] = yaml.safe_load(data["featureview.yaml"])["spec"]
    return spec


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ttl", "6h"),
        ("expectations", [{"feature": "trips_1h", "min": 0.0, "onViolation": "Fail"}]),
    ],
)
def test_an_edit_outside_the_data_fields_reaches_the_next_window_without_a_new_version(
    ctx: reconcile.Context,
    clock: Clock,
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    field: str,
    value: Any,
) -> None:
    _apply_view(kube_api, namespace, VIEW)
    _run_until_idle(ctx, kube_api, namespace, 10)

    edited = copy.deepcopy(VIEW)
    edited["spec"][field] = value
    _apply_view(kube_api, namespace, edited)
    clock.now += H
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert (status["version"], status["latestVersion"]) == (1, 1)
    app = _apps(kube_api, namespace)["driver-trip-stats-v1-202601010300"]
    spec = _job_spec(kube_api, namespace, app)
    expected = v1alpha1.FeatureViewSpec.model_validate(edited["spec"]).to_yaml_dict()[field]
    assert spec[field] == expected


def test_an_edit_of_the_view_gives_a_window_stopped_by_failures_one_more_attempt(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    first = "driver-trip-stats-v1-202601010000"
    _apply_view(kube_api, namespace, VIEW)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    for _ in range(3):
        _fail_with_report(kube_api, namespace, first, clock.now)
        _step(ctx, kube_api, namespace, "driver-trip-stats")
        clock.now += H
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")
    assert _condition(status, "Degraded")["reason"] == "TooManyFailures"

    edited = copy.deepcopy(VIEW)
    edited["spec"]["expectations"] = [{"feature": "trips_1h", "min": 0.0}]
    _apply_view(kube_api, namespace, edited)
    clock.now += H
    _step(ctx, kube_api, namespace, "driver-trip-stats")

    app = _apps(kube_api, namespace)[first]
    assert app["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == "4"
    assert app["metadata"]["annotations"][naming.ANNOTATION_GENERATION] == "2"


# -- Jobs: the python engine ---------------------------------------------------------


def _engine(doc: dict[str, Any], engine: str) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    changed["spec"]["materialization"]["engine"] = engine
    return changed


def _jobs(kube_api: kubernetes.client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listed = kubernetes.client.BatchV1Api(kube_api).list_namespaced_job(namespace)
    items: list[dict[str, Any]] = kube_api.sanitize_for_serialization(listed)["items"]
    return {j["metadata"]["name"]: j for j in items}


def _end_job(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    exit_code: int,
    report: dict[str, Any],
) -> None:
    """Play the kubelet for the Job's pod, then wait for the job controller to count it."""
    runtime.record_job_pod(
        kube_api, _jobs(kube_api, namespace)[name], exit_code, json.dumps(report)
    )

    def counted() -> bool:
        status = _jobs(kube_api, namespace)[name].get("status") or {}
        return bool(status.get("succeeded") or status.get("failed"))

    eventually(counted, 30, f"the job controller counts the pod of Job {name}")


def _report(read: int, engine: str = "python") -> dict[str, Any]:
    return {
        "published": True,
        "rows": {"read": read, "offline": read, "online": 4},
        "engine": engine,
    }


def test_a_python_view_runs_each_window_as_a_job(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, _engine(VIEW, "python"))
    _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert _apps(kube_api, namespace) == {}
    jobs = _jobs(kube_api, namespace)
    assert sorted(jobs) == [
        "driver-trip-stats-v1-202601010000",
        "driver-trip-stats-v1-202601010100",
    ]
    job = jobs["driver-trip-stats-v1-202601010000"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["--engine", "python"]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "FeatureView"
    # The window was recorded as pending before the job was made; the job takes the
    # record over.
    args = container["args"]
    run = args[args.index("--pending-run") + 1]
    record = boto3.client("dynamodb").get_item(
        TableName=args[args.index("--online-table") + 1],
        Key={layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY}},
        ConsistentRead=True,
    )["Item"]
    first = windows.window_id(1_767_225_600_000_000, 1_767_229_200_000_000)  # 00:00-01:00
    assert record[windows.PENDING]["M"][first] == {"S": run}
    assert "--pending-superseded" not in args

    for name in sorted(jobs):
        _end_job(kube_api, namespace, name, 0, _report(12))
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")
    _end_job(kube_api, namespace, "driver-trip-stats-v1-202601010200", 0, _report(15))
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert status["lastMaterializedWindow"]["end"] == "2026-01-01T03:00:00Z"
    assert status["rows"] == {"read": 15, "offline": 15, "online": 4, "engine": "python"}
    assert _condition(status, "Ready")["status"] == "True"
    succeeded = ctx.metrics.windows_succeeded.labels(namespace, "driver-trip-stats", "python")
    assert succeeded._value.get() == 3


def test_auto_runs_the_first_window_on_spark_and_small_windows_after_it_as_jobs(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    _apply_view(kube_api, namespace, VIEW)  # engine auto, the default
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    # Nothing to estimate from yet: Spark.
    assert len(_apps(kube_api, namespace)) == 2 and _jobs(kube_api, namespace) == {}

    first = "driver-trip-stats-v1-202601010000"
    runtime.record_driver_pod(
        kube_api, _apps(kube_api, namespace)[first], 0, json.dumps(_report(40, "spark"))
    )
    _finish(kube_api, namespace, first, "COMPLETED", clock.now)
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    # 40 rows read over the first window's reads: the next is a Job.
    assert sorted(_jobs(kube_api, namespace)) == ["driver-trip-stats-v1-202601010200"]
    (record,) = status["progress"]
    assert record["lastWindow"]["rows"]["read"] == 40

    # Over the threshold, the next window is a SparkApplication again.
    small = reconcile.Context(
        dataclasses.replace(ctx.settings, python_max_rows=10),
        ctx.kube,
        ctx.tables,
        ctx.metrics,
        clock,
    )
    _finish(kube_api, namespace, "driver-trip-stats-v1-202601010100", "COMPLETED", clock.now)
    clock.now += H
    _step(small, kube_api, namespace, "driver-trip-stats")
    assert "driver-trip-stats-v1-202601010300" not in _jobs(kube_api, namespace)
    assert "driver-trip-stats-v1-202601010300" in _apps(kube_api, namespace)


def test_a_job_that_fails_permanently_stops_like_an_application_until_a_backfill(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    # The job controller stamps real times on Jobs, and retries wait from them.
    clock.now = dt.datetime.now(UTC)
    start = clock.now.replace(minute=0, second=0, microsecond=0) - H
    first = f"driver-trip-stats-v1-{start:%Y%m%d%H%M}"
    report = {
        "published": False,
        "rows": {"read": 10, "offline": 0, "online": 0},
        "error": "FeatureView driver-trip-stats: column trip_id is string, expected int64",
        "errorType": "SourceSchemaError",
        "engine": "python",
    }
    view = _engine(VIEW, "python")
    view["spec"]["materialization"]["startTime"] = _iso(start)
    _apply_view(kube_api, namespace, view)
    _step(ctx, kube_api, namespace, "driver-trip-stats")
    uids = set()
    for attempt in (1, 2, 3):
        job = _jobs(kube_api, namespace)[first]
        assert job["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == str(attempt)
        uids.add(job["metadata"]["uid"])
        _end_job(kube_api, namespace, first, 1, report)
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")
        clock.now += dt.timedelta(hours=1)
        status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert len(uids) == 3, "each attempt is a Job of its own"
    degraded = _condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "TooManyFailures")
    assert "failed 3 times" in degraded["message"] and "trip_id is string" in degraded["message"]
    assert ctx.metrics.windows_failed.labels(namespace, "driver-trip-stats")._value.get() == 3

    annotated = copy.deepcopy(view)
    annotated["metadata"]["annotations"] = {
        "featurekube.dev/backfill": f"{_iso(start)}/{_iso(start + H)}"
    }
    _apply_view(kube_api, namespace, annotated)

    def rerun() -> dict[str, Any] | None:
        _step(ctx, kube_api, namespace, "driver-trip-stats")
        job = _jobs(kube_api, namespace).get(first)
        # The failed Job goes in the background; its re-run follows once it has.
        return job if job and job["metadata"]["annotations"].get(naming.ANNOTATION_RUN) else None

    job = eventually(rerun, 30, "the backfill re-runs the window as a Job")
    assert job["metadata"]["annotations"][naming.ANNOTATION_ATTEMPT] == "1"


def test_finished_jobs_are_collected_with_their_pods_beyond_the_history_limits(
    ctx: reconcile.Context, clock: Clock, kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    # The job controller stamps real times on Jobs: the clock runs from now. Hourly ticks
    # at the minute half an hour from now, so that no new window falls due mid-test.
    now = dt.datetime.now(UTC)
    clock.now = now
    minute = (now.minute + 30) % 60
    last_tick = now.replace(minute=minute, second=0, microsecond=0)
    if last_tick > now:
        last_tick -= H
    start = last_tick - 6 * H
    view = _engine(VIEW, "python")
    view["spec"]["materialization"]["schedule"] = f"{minute} * * * *"
    view["spec"]["materialization"]["startTime"] = start.isoformat().replace("+00:00", "Z")
    _apply_view(kube_api, namespace, view)

    for _ in range(10):
        _step(ctx, kube_api, namespace, "driver-trip-stats")
        fresh = [
            n
            for n, j in _jobs(kube_api, namespace).items()
            if not j.get("status", {}).get("succeeded")
        ]
        if not fresh:
            break
        for name in fresh:
            _end_job(kube_api, namespace, name, 0, _report(5))
    clock.now = dt.datetime.now(UTC) + dt.timedelta(minutes=2)  # past the grace
    status = _step(ctx, kube_api, namespace, "driver-trip-stats")

    assert status["lastMaterializedWindow"]["end"] == _iso(start + 6 * H)
    kept = [f"driver-trip-stats-v1-{start + hour * H:%Y%m%d%H%M}" for hour in (3, 4, 5)]
    assert sorted(_jobs(kube_api, namespace)) == kept
    core = kubernetes.client.CoreV1Api(kube_api)

    def pods_of_kept_jobs_only() -> bool:
        pods = core.list_namespaced_pod(namespace).items
        return sorted(p.metadata.labels["batch.kubernetes.io/job-name"] for p in pods) == kept

    eventually(pods_of_kept_jobs_only, 30, "the pods of collected Jobs go with them")


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
