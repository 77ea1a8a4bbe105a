"""Streaming aggregations on real Kafka, local Spark, the platform's S3 and DynamoDB:
the same events through the stream (after a batch window's history) and through one
batch window give the same point-in-time values offline and the same values online,
a late event within the allowed lateness included; a later one is dead-lettered and
counted; a micro-batch run again after a crash counts nothing twice; a stream started
before the batch windows have stored its history waits, writing nothing, and then
gives the batch path's values."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
import deltalake
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurekube.materialize import spark_job, stream_job, stream_plan, tile_store
from featurekube.offline import layout as offline_layout
from featurekube.online import layout, values
from featurekube.spec import v1alpha1
from stream_support import online_table, produce, run_available_now, to_json

pytestmark = [pytest.mark.spark, pytest.mark.timeout(1800)]

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
SINCE = T0 + dt.timedelta(minutes=5)  # the stream owns the boundaries after T0
MIN = dt.timedelta(minutes=1)
STEP = dt.timedelta(minutes=10)
WAIT_SECONDS = 300
FIELDS = [
    {"name": "driver_id", "type": "int64"},
    {"name": "zone", "type": "string"},
    {"name": "fare", "type": "float64"},
    {"name": "event_timestamp", "type": "timestamp"},
    {"name": "created_timestamp", "type": "timestamp"},
]
AGGREGATIONS = [
    {"name": "trips_30m", "column": "fare", "function": "count", "window": "30m"},
    {"name": "fare_1h", "column": "fare", "function": "sum", "window": "1h", "type": "float64"},
    {"name": "mean_fare_1d", "column": "fare", "function": "mean", "window": "1d"},
    {"name": "sd_fare_1d", "column": "fare", "function": "stddev", "window": "1d"},
    {"name": "min_fare_2h", "column": "fare", "function": "min", "window": "2h", "type": "float64"},
    {"name": "max_fare_1d", "column": "fare", "function": "max", "window": "1d", "type": "float64"},
    {"name": "zones_1d", "column": "zone", "function": "count_distinct", "window": "1d"},
    {
        "name": "last_zone_30d",
        "column": "zone",
        "function": "last",
        "window": "30d",
        "type": "string",
    },
]
SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("zone", pa.string()),
        ("fare", pa.float64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def _view(topic: str, bootstrap: str, raw: str) -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "driver-trips", "namespace": "rides"},
            "spec": {
                "owner": "eta-team",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {
                    "batch": {"path": raw, "createdTimestampField": "created_timestamp"},
                    "stream": {
                        "kafka": {
                            "topic": topic,
                            "bootstrapServers": bootstrap,
                            "fields": FIELDS,
                            "allowedLateness": "30m",
                        }
                    },
                },
                "aggregationInterval": "10m",
                "aggregations": AGGREGATIONS,
                "ttl": "30d",
            },
        }
    )


def _event(i: int, at: dt.datetime, driver: int | None = None) -> dict[str, Any]:
    return {
        "driver_id": driver if driver is not None else 1 + i % 4,
        "zone": ["north", "south", "east", None][i % 4 if i % 9 else 3],
        "fare": None if i % 11 == 10 else round(5.0 + (i * 7.3) % 40, 2),
        "event_timestamp": at,
        "created_timestamp": at + dt.timedelta(seconds=30 + i),
    }


def _history() -> list[dict[str, Any]]:
    """Drivers 1-4 over the day before T0, one event exactly at T0 (the batch's)."""
    out = [_event(i, T0 - dt.timedelta(hours=26) + i * 37 * MIN) for i in range(42)]
    out.append(_event(50, T0, driver=2))
    return out


def _live(first: int, count: int, start: dt.datetime) -> list[dict[str, Any]]:
    """Drivers 1-5 from ``start`` on, every 7th a second event at the same time."""
    out: list[dict[str, Any]] = []
    for i in range(first, first + count):
        at = start + (i - first) * 3 * MIN + dt.timedelta(microseconds=i * 37)
        if i % 7 == 6 and out:
            at = out[-1]["event_timestamp"]
        out.append(_event(i, at, driver=1 + i % 5))
    return out


def _write_source(uri: str, events: Sequence[dict[str, Any]]) -> None:
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    table = pa.Table.from_pylist(list(events)).cast(SCHEMA)
    pq.write_table(table, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)


def _online(table: str, view: v1alpha1.FeatureView) -> dict[str, Any]:
    """Each entity's values and latest event (not the boundary of the row that holds
    them, which after a late event may be a later one on the stream)."""
    features = view.spec.feature_types()
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    out = {}
    for page in pages:
        for item in page["Items"]:
            key = item[layout.ENTITY_KEY]["S"]
            if key.startswith("#"):
                continue
            out[key] = (
                item.get(layout.LATEST_EVENT_TIME, {}).get("N"),
                {n: values.from_attribute(t, item.get(n)) for n, t in features.items()},
            )
    return out


def _point_in_time(uri: str, drivers: Sequence[int], times: Sequence[dt.datetime]) -> list[Any]:
    """For each (driver, T): the row with the greatest event time <= T, then the
    greatest created time (the semantics' rule), without its created time."""
    rows = deltalake.DeltaTable(uri).to_pyarrow_table().to_pylist()
    by_driver: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_driver.setdefault(row["driver_id"], []).append(row)
    out: list[tuple[int, dt.datetime, dict[str, Any] | None]] = []
    for driver in drivers:
        mine = sorted(
            by_driver.get(driver, []),
            key=lambda r: (r["event_timestamp"], r["created_timestamp"]),
        )
        for moment in times:
            chosen = [r for r in mine if r["event_timestamp"] <= moment]
            if not chosen:
                out.append((driver, moment, None))
                continue
            row = dict(chosen[-1])
            # The values, not the boundary of the row that holds them: after a late
            # event the stream may repeat a value at a later boundary.
            for name in (
                "event_timestamp",
                "created_timestamp",
                "ingestion_timestamp",
                "event_date",
            ):
                row.pop(name, None)
            out.append((driver, moment, row))
    return out


def test_streamed_aggregates_equal_a_batch_windows_offline_and_online(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    history = _history()
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/")
    _write_source(f"{s3_prefix}raw/", history)
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}stream")
    # The version's batch windows before the stream's start: history and its tiles.
    spark_job.run(
        spark, view, T0 - dt.timedelta(days=1), SINCE, offline_uri=offline, online_table=online
    )
    plan = stream_plan.plan_stream(view, SINCE, version=1, history_start=T0 - dt.timedelta(days=1))

    # 1. Events after T0, and two the batch source holds (at or before T0): left to it.
    first = _live(100, 60, T0 + 2 * MIN)
    produce(
        kafka_bootstrap_servers,
        kafka_topic,
        [to_json(e) for e in [history[-1], history[-2], *first]],
    )
    one = run_available_now(spark, plan, offline, online, WAIT_SECONDS)
    assert one.query.exception() is None, one.query.exception()
    assert one.writer.progress.before_start == 2 and one.writer.progress.late == 0
    # The batch window stored the history: nothing to wait for.
    assert not one.writer.progress.waiting_for_history
    assert one.writer.progress.history_missing == 0
    watermark = max(e["event_timestamp"] for e in first)

    # 2. A late event within the allowed 30 minutes, and later ones.
    allowed = _event(300, watermark - 20 * MIN, driver=5)
    second = [allowed, *_live(200, 8, watermark + MIN)]
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in second])
    two = run_available_now(spark, plan, offline, online, WAIT_SECONDS)
    assert two.query.exception() is None, two.query.exception()
    assert two.writer.progress.late == 0 and two.writer.progress.dead_letters == 0
    watermark = max(e["event_timestamp"] for e in second)

    # 3. One too late, and one on time; the first try crashes after its online write,
    # so its micro-batch runs again, with the same id, on its tiles already merged.
    too_late = _event(400, watermark - 2 * dt.timedelta(hours=1), driver=3)
    on_time = _event(401, watermark + 2 * MIN, driver=4)
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(too_late), to_json(on_time)])

    def crash(step: str, batch_id: int) -> None:
        if step == "online":
            raise RuntimeError(f"killed after the online write of batch {batch_id}")

    crashed = run_available_now(spark, plan, offline, online, WAIT_SECONDS, fault=crash)
    assert crashed.query.exception() is not None
    three = run_available_now(spark, plan, offline, online, WAIT_SECONDS)
    assert three.query.exception() is None, three.query.exception()
    assert three.writer.progress.late == 1 and three.writer.progress.dead_letters == 1
    letters = deltalake.DeltaTable(stream_plan.dead_letter_uri(offline)).to_pyarrow_table()
    reasons = set(letters.column("reason").to_pylist())
    assert len(reasons) == 1, reasons
    reason = reasons.pop()
    assert reason.startswith("late: event time ") and "allowedLateness (30m)" in reason, reason
    assert json.loads(letters.column("value")[0].as_py())["event_timestamp"].startswith(
        too_late["event_timestamp"].strftime("%Y-%m-%dT%H:%M")
    )

    # The same events, less the one too late, through one batch window.
    applied = [*history, *first, *second, on_time]
    streamed = _assert_equal_to_one_batch_window(
        spark,
        view,
        (offline, online),
        applied,
        (kafka_topic, kafka_bootstrap_servers),
        (f"{s3_prefix}reference/", online_table(f"{table_prefix}batch")),
    )
    assert any(row is not None and row["driver_id"] == 5 for _, _, row in streamed)


def _assert_equal_to_one_batch_window(
    spark: SparkSession,
    view: v1alpha1.FeatureView,
    streamed_to: tuple[str, str],
    events: list[dict[str, Any]],
    kafka: tuple[str, str],
    reference: tuple[str, str],
) -> list[Any]:
    """Run ``events`` through one batch window of the same view on a source under the
    ``reference`` prefix (with its online table), and assert the stream's offline and
    online tables (``streamed_to``) hold the same values: point in time every 5 minutes
    for drivers 1-5, and online. ``kafka`` is the topic and bootstrap servers. Returns
    the streamed point-in-time rows."""
    (offline, online), (prefix, reference_online) = streamed_to, reference
    _write_source(f"{prefix}raw/", events)
    reference_view = _view(*kafka, f"{prefix}raw/")
    boundary = _ceil(max(e["event_timestamp"] for e in events))
    spark_job.run(
        spark,
        reference_view,
        T0 - dt.timedelta(days=1),
        boundary + STEP,
        offline_uri=f"{prefix}offline/v1",
        online_table=reference_online,
    )
    drivers = [1, 2, 3, 4, 5]
    moments = [
        T0 - dt.timedelta(days=1) + i * 5 * MIN
        for i in range(int((boundary - T0 + dt.timedelta(days=1)) / (5 * MIN)) + 2)
    ]
    streamed = _point_in_time(offline, drivers, moments)
    batched = _point_in_time(f"{prefix}offline/v1", drivers, moments)
    differing = [_difference(s, b) for s, b in zip(streamed, batched, strict=True) if s != b]
    assert not differing, differing[:5]
    assert _online(online, view) == _online(reference_online, reference_view)
    return streamed


def _difference(streamed: Any, batched: Any) -> Any:
    driver, moment, a = streamed
    b = batched[2]
    if a is None or b is None:
        return (driver, moment, a, b)
    return (driver, moment, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)})


def _ceil(moment: dt.datetime) -> dt.datetime:
    steps = -(-(moment - T0) // STEP)
    return T0 + steps * STEP


def test_a_running_stream_serves_an_events_aggregate_within_seconds(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/")
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}live")
    plan = stream_plan.plan_stream(view, now - dt.timedelta(hours=1), version=1)
    run = stream_job.start(spark, plan, offline_uri=offline, online_table=online)
    latencies = []
    try:
        for i in range(3):
            produce(kafka_bootstrap_servers, kafka_topic, [to_json(_event(i, now, driver=7))])
            produced = time.monotonic()
            deadline = produced + WAIT_SECONDS

            def counted(expected: int = i + 1) -> bool:
                item = _online(online, view).get("driver_id:i:7")
                return item is not None and item[1]["trips_30m"] == expected

            while not counted() and time.monotonic() < deadline:
                assert run.query.exception() is None, run.query.exception()
                time.sleep(0.1)
            assert counted(), f"event {i} not counted online within the wait"
            latencies.append(time.monotonic() - produced)
    finally:
        run.query.stop()
    # The view's history starts with the stream (no startTime, no batch window): there
    # is none to wait for.
    assert not run.writer.progress.waiting_for_history
    record_property("event_to_online_aggregate_seconds", [round(s, 2) for s in latencies])
    print(
        "\nevent produced -> its aggregate online (trigger 1s): "
        + ", ".join(f"{s:.2f} s" for s in latencies)
        + f"; the job's own p50 of the last batch {run.writer.progress.latency_p50_seconds} s"
    )


def _progress(offline: str) -> stream_plan.StreamProgress | None:
    uri = stream_plan.progress_uri(offline).removeprefix("s3://")
    bucket, key = uri.split("/", 1)
    try:
        answer = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    except boto3.client("s3").exceptions.NoSuchKey:
        return None
    return stream_plan.read_progress(answer["Body"].read())


def _objects(prefix: str) -> list[str]:
    bucket, key = prefix.removeprefix("s3://").split("/", 1)
    answer = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=key)
    return [item["Key"] for item in answer.get("Contents", [])]


def test_a_stream_started_before_its_history_waits_then_gives_the_batch_paths_values(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
) -> None:
    history = _history()
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/")
    _write_source(f"{s3_prefix}raw/", history)
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}wait")
    # The batch windows start a day before the stream; none has run yet.
    plan = stream_plan.plan_stream(view, SINCE, version=1, history_start=T0 - dt.timedelta(days=1))
    live = _live(100, 40, T0 + 2 * MIN)
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in [history[-1], *live]])
    settings = stream_job.StreamSettings(history_poll_seconds=1.0)
    started: dict[str, Any] = {}

    def start() -> None:
        try:
            started["run"] = stream_job.start(
                spark,
                plan,
                offline_uri=offline,
                online_table=online,
                available_now=True,
                settings=settings,
            )
        except BaseException as exc:  # handed to the test's thread
            started["error"] = exc

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    waiting = _progress(offline)
    while (waiting is None or not waiting.waiting_for_history) and time.monotonic() < deadline:
        assert thread.is_alive(), started
        time.sleep(0.5)
        waiting = _progress(offline)

    # It waits for the 30 days its longest window reaches back across the split, and
    # meanwhile writes nothing anywhere, nor reads the topic.
    assert waiting is not None and waiting.waiting_for_history, waiting
    assert waiting.history_missing == 30 * 24 * 6
    assert waiting.history_missing_from == "2026-01-30T00:00:00.000000Z"
    assert waiting.history_missing_until == "2026-03-01T00:00:00.000000Z"
    time.sleep(3 * settings.history_poll_seconds)
    assert thread.is_alive() and "run" not in started
    assert _online(online, view) == {}
    assert _objects(f"{offline}/_delta_log/") == []
    assert _objects(f"{offline}/_stream/checkpoint/") == []
    tiles = tile_store.TileStore(offline_layout.tiles_uri(offline))
    assert tiles.transaction_version("anything") is None  # no tile table yet

    # The version's batch window up to the stream's start stores the history.
    spark_job.run(
        spark, view, T0 - dt.timedelta(days=1), SINCE, offline_uri=offline, online_table=online
    )
    thread.join(WAIT_SECONDS)
    assert not thread.is_alive() and "error" not in started, started
    run: stream_job.StreamRun = started["run"]
    try:
        run.query.awaitTermination(WAIT_SECONDS)
    finally:
        run.query.stop()
    assert run.query.exception() is None, run.query.exception()
    done = _progress(offline)
    assert done is not None and not done.waiting_for_history and done.history_missing == 0
    assert done.before_start == 1 and done.rows > 0

    # The same events through one batch window: the same values offline and online.
    _assert_equal_to_one_batch_window(
        spark,
        view,
        (offline, online),
        [*history, *live],
        (kafka_topic, kafka_bootstrap_servers),
        (f"{s3_prefix}reference/", online_table(f"{table_prefix}wait-batch")),
    )


def test_an_idle_streams_count_decays_online_and_offline_without_events(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
) -> None:
    view = v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "driver-trips", "namespace": "rides"},
            "spec": {
                "owner": "eta-team",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {
                    "batch": {"path": f"{s3_prefix}raw/"},
                    "stream": {
                        "kafka": {
                            "topic": kafka_topic,
                            "bootstrapServers": kafka_bootstrap_servers,
                            "fields": FIELDS,
                            "allowedLateness": "1s",
                            "triggerInterval": "1s",
                        }
                    },
                },
                "aggregationInterval": "1m",
                "aggregations": [
                    {"name": "trips_1m", "column": "fare", "function": "count", "window": "1m"}
                ],
            },
        }
    )
    now = dt.datetime.now(UTC)
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}idle")
    plan = stream_plan.plan_stream(view, now - dt.timedelta(hours=1), version=1)
    settings = stream_job.StreamSettings(poll_seconds=1.0, idle_seconds=2.0)
    run = stream_job.start(spark, plan, offline_uri=offline, online_table=online, settings=settings)
    polling = threading.Thread(target=stream_job.run_until_stopped, args=(run, 1.0), daemon=True)
    polling.start()
    event = _event(0, now, driver=7)

    def trips() -> int | None:
        item = _online(online, view).get("driver_id:i:7")
        return None if item is None else int(item[1]["trips_1m"])

    try:
        produce(kafka_bootstrap_servers, kafka_topic, [to_json(event)])
        deadline = time.monotonic() + WAIT_SECONDS
        while trips() != 1 and time.monotonic() < deadline:
            assert run.query.exception() is None, run.query.exception()
            time.sleep(0.2)
        assert trips() == 1, "the event is not counted online within the wait"
        # No more events: once the clock, less the allowed lateness, passes the boundary
        # where the event leaves the minute's window, the count decays to 0.
        while trips() != 0 and time.monotonic() < deadline:
            assert run.query.exception() is None, run.query.exception()
            time.sleep(0.5)
        assert trips() == 0, "the idle stream's count did not decay online"
    finally:
        run.query.stop()
        polling.join(60)
    assert run.writer.progress.watermark is not None
    assert run.writer.progress.watermark > _iso(now)
    # Offline, the row where the window empties: the batch path's rows for the event.
    minute = 60_000_000
    boundary = dt.datetime.fromtimestamp(
        -(-int(now.timestamp() * 1_000_000) // minute) * minute / 1e6, UTC
    )
    rows = deltalake.DeltaTable(offline).to_pyarrow_table().to_pylist()
    values = {r["event_timestamp"]: r["trips_1m"] for r in rows if r["driver_id"] == 7}
    assert values == {boundary: 1, boundary + dt.timedelta(minutes=1): 0}, values


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
