"""A view's stream on real Kafka, local Spark, the platform's S3 and DynamoDB: the same
rows as a batch window over the same events, dead letters for bad records, and
restarts that lose nothing and count nothing twice."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import deltalake
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from featurekube.materialize import plan as planning
from featurekube.materialize import spark_job, stream_job, stream_plan, stream_rows
from featurekube.online import layout, values
from featurekube.spec import v1alpha1
from stream_support import online_table, produce, run_available_now, to_json

# Each stream run waits up to WAIT_SECONDS; the restart test makes four of them.
pytestmark = [pytest.mark.spark, pytest.mark.timeout(1800)]

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)
# A restarted job replays 10-record micro-batches, each a Delta commit that can take
# tens of seconds on a loaded machine.
WAIT_SECONDS = 420
FIELDS = [
    {"name": "driver_id", "type": "int64"},
    {"name": "zone", "type": "string"},
    {"name": "fare", "type": "float64"},
    {"name": "status", "type": "string"},
    {"name": "event_timestamp", "type": "timestamp"},
    {"name": "created_timestamp", "type": "timestamp"},
]
SQL = """
SELECT driver_id, event_timestamp, created_timestamp,
       fare * 1.1 AS fare_with_tip, upper(zone) AS zone, fare > 20 AS long_trip
FROM source
WHERE status = 'completed'
"""


def _view(
    topic: str, bootstrap: str, raw: str, transformation: bool = True
) -> v1alpha1.FeatureView:
    spec: dict[str, Any] = {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {
            "batch": {"path": raw, "createdTimestampField": "created_timestamp"},
            "stream": {"kafka": {"topic": topic, "bootstrapServers": bootstrap, "fields": FIELDS}},
        },
        "ttl": "30d",
    }
    if transformation:
        spec["transformation"] = {"sql": SQL}
        spec["features"] = [
            {"name": "fare_with_tip", "type": "float64"},
            {"name": "zone", "type": "string"},
            {"name": "long_trip", "type": "bool"},
        ]
    else:
        spec["features"] = [{"name": "fare", "type": "float64"}, {"name": "zone", "type": "string"}]
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": "driver-trips", "namespace": "rides"}, "spec": spec}
    )


def _events(count: int, first: int = 0, start: dt.datetime = T0) -> list[dict[str, Any]]:
    """Trips of 5 drivers; every 7th repeats the previous trip's driver and event time
    with a later created time (a correction), every 5th is cancelled."""
    out: list[dict[str, Any]] = []
    for i in range(first, first + count):
        event = start + i * MIN + dt.timedelta(microseconds=i * 37)
        driver = 1 + i % 5
        if i % 7 == 6 and out:
            event, driver = out[-1]["event_timestamp"], out[-1]["driver_id"]
        out.append(
            {
                "driver_id": driver,
                "zone": ["north", "south", "east"][i % 3],
                "fare": round(5.0 + (i * 7.3) % 40, 2),
                "status": "cancelled" if i % 5 == 4 else "completed",
                "event_timestamp": event,
                "created_timestamp": event + dt.timedelta(seconds=30 + i),
            }
        )
    return out


def _offline(uri: str) -> list[dict[str, Any]]:
    rows = deltalake.DeltaTable(uri).to_pyarrow_table().to_pylist()
    for row in rows:
        del row["ingestion_timestamp"]
    return sorted(
        rows, key=lambda r: (r["event_timestamp"], r["driver_id"], r["created_timestamp"])
    )


def _online(table: str) -> dict[str, dict[str, Any]]:
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    items = (item for page in pages for item in page["Items"])
    return {
        i[layout.ENTITY_KEY]["S"]: i for i in items if not i[layout.ENTITY_KEY]["S"].startswith("#")
    }


def _decoded(items: dict[str, dict[str, Any]], features: dict[str, str]) -> dict[str, Any]:
    return {
        key: (
            int(item[layout.EVENT_TIME]["N"]),
            int(item[layout.CREATED_TIME]["N"]),
            {name: values.from_attribute(t, item.get(name)) for name, t in features.items()},
        )
        for key, item in items.items()
    }


def test_the_stream_and_a_batch_window_give_identical_rows_for_the_same_events(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
) -> None:
    events = _events(60)
    raw = f"{s3_prefix}raw/trips/"
    table = pa.Table.from_pylist(events).cast(
        pa.schema(
            [
                ("driver_id", pa.int64()),
                ("zone", pa.string()),
                ("fare", pa.float64()),
                ("status", pa.string()),
                ("event_timestamp", pa.timestamp("us", tz="UTC")),
                ("created_timestamp", pa.timestamp("us", tz="UTC")),
            ]
        )
    )
    filesystem, path = pyarrow.fs.FileSystem.from_uri(raw)
    pq.write_table(table, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)
    view = _view(kafka_topic, kafka_bootstrap_servers, raw)
    batch_online = online_table(f"{table_prefix}b-trips")
    stream_online = online_table(f"{table_prefix}s-trips")
    batch_offline, stream_offline = f"{s3_prefix}batch/v1", f"{s3_prefix}stream/v1"

    spark_job.run(
        spark,
        view,
        T0,
        T0 + dt.timedelta(hours=2),
        offline_uri=batch_offline,
        online_table=batch_online,
    )
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in events])
    plan = stream_plan.plan_stream(view, T0, version=1)
    run = run_available_now(spark, plan, stream_offline, stream_online, WAIT_SECONDS)

    assert run.query.exception() is None, run.query.exception()
    batch_rows, stream_rows = _offline(batch_offline), _offline(stream_offline)
    completed = [e for e in events if e["status"] == "completed"]
    assert len(batch_rows) == len({(e["driver_id"], e["event_timestamp"]) for e in completed})
    assert stream_rows == batch_rows
    features = view.spec.feature_types()
    assert _decoded(_online(stream_online), features) == _decoded(_online(batch_online), features)
    progress = run.writer.progress
    assert (progress.records, progress.dead_letters, progress.rows) == (60, 0, len(batch_rows))
    assert progress.last_event_time is not None and progress.first_online_at is not None
    document = stream_plan.read_progress(
        boto3.client("s3")
        .get_object(**_bucket_key(stream_plan.progress_uri(stream_offline)))["Body"]
        .read()
    )
    assert document.rows == len(batch_rows) and document.since.startswith("2026-03-01T00:00:00")


def _bucket_key(uri: str) -> dict[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return {"Bucket": bucket, "Key": key}


def test_bad_records_go_to_the_dead_letters_with_their_reason_and_the_stream_goes_on(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
) -> None:
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/", transformation=False)
    good = _events(6)
    stamp = "2026-03-01T00:30:00Z"
    bad: list[bytes | None] = [
        b"not json at all",
        b"[1, 2, 3]",
        json.dumps({"driver_id": "seven", "fare": 3.0, "event_timestamp": stamp}).encode(),
        json.dumps({"driver_id": 7, "fare": "cheap", "event_timestamp": stamp}).encode(),
        json.dumps({"driver_id": 7, "fare": 3.0}).encode(),
        json.dumps({"fare": 3.0, "event_timestamp": stamp}).encode(),
        json.dumps({"driver_id": 7, "fare": 3.0, "event_timestamp": "yesterday"}).encode(),
        None,
    ]
    future = {"driver_id": 7, "fare": 3.0, "event_timestamp": "2099-01-01T00:00:00Z"}
    records = [
        to_json(good[0]),
        *bad[:4],
        to_json(good[1]),
        *bad[4:],
        *(to_json(e) for e in good[2:]),
    ]
    records.append(json.dumps(future).encode())
    produce(kafka_bootstrap_servers, kafka_topic, records)
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}trips")
    plan = stream_plan.plan_stream(view, T0, version=1)

    run = run_available_now(spark, plan, offline, online, WAIT_SECONDS)

    assert run.query.exception() is None, run.query.exception()
    letters = deltalake.DeltaTable(stream_plan.dead_letter_uri(offline)).to_pyarrow_table()
    offsets, reasons = letters.column("offset").to_pylist(), letters.column("reason").to_pylist()
    found = sorted(zip(offsets, reasons, strict=True))
    assert found[:-1] == [
        (1, "not a JSON object"),
        (2, "not a JSON object"),
        (3, "wrong type: field driver_id is not int64: seven"),
        (4, "wrong type: field fare is not float64: cheap"),
        (6, "no event time: field event_timestamp is missing or null"),
        (7, "no join key: field driver_id is missing or null"),
        (8, "wrong type: field event_timestamp is not timestamp: yesterday"),
        (9, "empty value"),
    ]
    assert found[-1][0] == 14
    assert found[-1][1].startswith(
        "in the future: event time 2099-01-01T00:00:00.000000Z is more than 5m after"
    )
    assert letters.column("value").to_pylist()[0] == b"not json at all"
    assert run.writer.progress.dead_letters == 9
    rows = _offline(offline)
    assert len(rows) == len({(e["driver_id"], e["event_timestamp"]) for e in good})
    assert {r["event_timestamp"] for r in rows} == {e["event_timestamp"] for e in good}


def test_avro_records_are_decoded_by_the_views_schema_and_bad_ones_dead_lettered(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
) -> None:
    import fastavro

    schema = {
        "type": "record",
        "name": "Trip",
        "fields": [
            {"name": "driver_id", "type": "long"},
            {"name": "zone", "type": ["null", "string"]},
            {"name": "fare", "type": "double"},
            {
                "name": "event_timestamp",
                "type": {"type": "long", "logicalType": "timestamp-micros"},
            },
        ],
    }
    body = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/", False).to_yaml_dict()
    body["spec"]["source"]["stream"]["kafka"] = {
        "topic": kafka_topic,
        "bootstrapServers": kafka_bootstrap_servers,
        "format": "avro",
        "avroSchema": json.dumps(schema),
    }
    body["spec"]["source"]["batch"].pop("createdTimestampField")
    view = v1alpha1.FeatureView.model_validate(body)
    parsed = fastavro.parse_schema(schema)

    def encode(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    trips = [
        {"driver_id": d, "zone": z, "fare": f, "event_timestamp": T0 + i * MIN}
        for i, (d, z, f) in enumerate([(1, "north", 12.5), (2, None, 30.0), (1, "east", 8.25)])
    ]
    produce(
        kafka_bootstrap_servers, kafka_topic, [encode(trips[0]), b"\x02", *map(encode, trips[1:])]
    )
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}trips")

    run = run_available_now(spark, stream_plan.plan_stream(view, T0), offline, online, WAIT_SECONDS)

    assert run.query.exception() is None, run.query.exception()
    rows = _offline(offline)
    assert [(r["driver_id"], r["zone"], r["fare"], r["event_timestamp"]) for r in rows] == [
        (t["driver_id"], t["zone"], t["fare"], t["event_timestamp"]) for t in trips
    ]
    letters = deltalake.DeltaTable(stream_plan.dead_letter_uri(offline)).to_pyarrow_table()
    assert letters.num_rows == 1
    assert letters.column("reason")[0].as_py().startswith("not an Avro record of the schema: ")


def _crash_at(step: str, batch: int) -> Callable[[str, int], None]:
    def fault(name: str, batch_id: int) -> None:
        if (name, batch_id) == (step, batch):
            raise RuntimeError(f"crash after {step} of batch {batch_id}")

    return fault


def test_restarts_after_crashes_lose_no_event_and_count_none_twice(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
) -> None:
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/", transformation=False)
    body = view.to_yaml_dict()
    body["spec"]["source"]["stream"]["kafka"]["maxOffsetsPerTrigger"] = 10
    view = v1alpha1.FeatureView.model_validate(body)
    since = T0 + 5 * MIN
    events = _events(45)
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}trips")
    plan = stream_plan.plan_stream(view, since, version=1)
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in events[:30]])

    # Batch 1 (records 10-19) dies after its offline commit, before Spark records it.
    crashed = run_available_now(spark, plan, offline, online, WAIT_SECONDS, _crash_at("offline", 1))
    assert "crash after offline of batch 1" in str(crashed.query.exception())
    # Batch 0 went through: its five events before the stream's start were left out.
    assert crashed.writer.progress.before_start == 5
    # Batch 1 again, now dying after its online write and before its offline append.
    crashed = run_available_now(spark, plan, offline, online, WAIT_SECONDS, _crash_at("online", 1))
    assert "crash after online of batch 1" in str(crashed.query.exception())
    resumed = run_available_now(spark, plan, offline, online, WAIT_SECONDS)
    assert resumed.query.exception() is None, resumed.query.exception()
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in events[30:]])
    finished = run_available_now(spark, plan, offline, online, WAIT_SECONDS)
    assert finished.query.exception() is None, finished.query.exception()

    rows = _offline(offline)
    expected = {}
    for e in events:
        if e["event_timestamp"] >= since:
            expected[(e["driver_id"], e["event_timestamp"], e["created_timestamp"])] = e
    written = [(r["driver_id"], r["event_timestamp"], r["created_timestamp"]) for r in rows]
    # Every owned event once (corrections within one micro-batch are one row, the later).
    assert len(written) == len(set(written)), "a row was written twice"
    assert set(written) <= set(expected)
    same_batch_corrections = {
        (e["driver_id"], e["event_timestamp"], e["created_timestamp"])
        for i, e in enumerate(events)
        if i % 7 == 5 and i // 10 == (i + 1) // 10 and e["event_timestamp"] >= since
    }
    assert set(written) == set(expected) - same_batch_corrections
    assert finished.writer.progress.before_start + resumed.writer.progress.before_start == 0
    newest: dict[int, dict[str, Any]] = {}
    for e in sorted(
        expected.values(), key=lambda e: (e["event_timestamp"], e["created_timestamp"])
    ):
        newest[e["driver_id"]] = e
    items = _online(online)
    assert {k: int(v[layout.EVENT_TIME]["N"]) for k, v in items.items()} == {
        f"driver_id:i:{d}": int((e["event_timestamp"] - EPOCH) / dt.timedelta(microseconds=1))
        for d, e in newest.items()
    }


EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_running_stream_serves_a_new_event_within_seconds(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/", transformation=False)
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}trips")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    plan = stream_plan.plan_stream(view, now - dt.timedelta(hours=1), version=1)

    began = time.monotonic()
    run = stream_job.start(spark, plan, offline_uri=offline, online_table=online)
    try:
        produce(kafka_bootstrap_servers, kafka_topic, [to_json(_events(1, start=now)[0])])
        produced = time.monotonic()
        deadline = produced + WAIT_SECONDS
        while not _online(online) and time.monotonic() < deadline:
            assert run.query.exception() is None, run.query.exception()
            time.sleep(0.2)
        served = time.monotonic()
        assert _online(online), "no value online within the wait"
        # The writer records the event while its micro-batch runs; Spark posts that
        # batch's progress (with the offsets the lag comes from) only once it has
        # finished, so wait for Spark's report of the batch that wrote the event.
        progress = run.refresh()
        while not _reported(run, progress) and time.monotonic() < deadline:
            time.sleep(0.5)
            progress = run.refresh()
    finally:
        run.query.stop()
    record_property("start_to_first_online_seconds", round(served - began, 2))
    record_property("produce_to_online_seconds", round(served - produced, 2))
    print(
        f"\nstream start -> first online value: {served - began:.2f} s; "
        f"event produced -> online: {served - produced:.2f} s; "
        f"job's latency p50 {progress.latency_p50_seconds} s"
    )
    assert progress.consumer_lag == 0, run.query.lastProgress
    assert progress.last_event_time == _iso(now) and progress.records == 1


def _reported(run: stream_job.StreamRun, progress: stream_plan.StreamProgress) -> bool:
    """Whether Spark has reported the micro-batch the writer last wrote."""
    last = run.query.lastProgress
    return (
        progress.last_event_time is not None
        and last is not None
        and int(last["batchId"]) >= progress.batch_id
    )


def test_the_entry_point_runs_a_snapshot_and_refuses_a_view_without_brokers(
    spark: SparkSession,
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/", transformation=False)
    offline, online = f"{s3_prefix}offline/v4", online_table(f"{table_prefix}trips")
    body = view.to_yaml_dict()
    del body["spec"]["source"]["stream"]["kafka"]["bootstrapServers"]
    snapshot = {**body, "resolved": {"version": 4, "offlineUri": offline, "onlineTable": online}}
    spec = tmp_path / "featureview.yaml"
    spec.write_text(yaml.safe_dump(snapshot))
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in _events(5)])
    arguments = ["--spec", str(spec), "--since", "2026-03-01T00:00:00Z", "--available-now"]

    with pytest.MonkeyPatch.context() as env:
        env.delenv("FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
        assert stream_job.main(arguments) == 2
    assert "bootstrapServers is unset and no default brokers" in capsys.readouterr().err

    assert stream_job.main([*arguments, "--bootstrap-servers", kafka_bootstrap_servers]) == 0

    assert len(_offline(offline)) == 5
    assert len(_online(online)) == 5


def _start_job(spec: Path, log: Path) -> subprocess.Popen[bytes]:
    """The stream job's entry point as its own process (and process group: Spark's JVM
    with it)."""
    command = [
        sys.executable,
        "-m",
        "featurekube.materialize.stream_job",
        "--spec",
        str(spec),
        "--since",
        "2026-03-01T00:00:00Z",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the job's process group, as a node losing the driver pod would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(60)


def _wait_for(
    what: str, check: Callable[[], bool], process: subprocess.Popen[bytes], log: Path
) -> float:
    began = time.monotonic()
    while not check():
        assert process.poll() is None, (
            f"the job exited while waiting for {what}:\n" + log.read_text()[-3000:]
        )
        assert time.monotonic() - began < WAIT_SECONDS, f"waited {WAIT_SECONDS} s for {what}"
        time.sleep(0.5)
    return time.monotonic() - began


def test_a_killed_driver_resumes_from_its_checkpoint_without_loss_or_doubles(
    kafka_bootstrap_servers: str,
    kafka_topic: str,
    s3_prefix: str,
    table_prefix: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    view = _view(kafka_topic, kafka_bootstrap_servers, f"{s3_prefix}raw/", transformation=False)
    body = view.to_yaml_dict()
    body["spec"]["source"]["stream"]["kafka"]["maxOffsetsPerTrigger"] = 10
    offline, online = f"{s3_prefix}offline/v1", online_table(f"{table_prefix}trips")
    snapshot = {**body, "resolved": {"version": 1, "offlineUri": offline, "onlineTable": online}}
    spec, log = tmp_path / "featureview.yaml", tmp_path / "job.log"
    spec.write_text(yaml.safe_dump(snapshot))
    # Distinct (driver, event time) pairs: every event is one offline row.
    events = [
        {**e, "event_timestamp": T0 + i * MIN, "created_timestamp": T0 + i * MIN}
        for i, e in enumerate(_events(100))
    ]
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in events[:60]])

    def rows() -> int:
        try:
            return deltalake.DeltaTable(offline).to_pyarrow_table().num_rows
        except Exception:
            return 0

    first = _start_job(spec, log)
    try:
        _wait_for("a committed micro-batch", lambda: rows() >= 20, first, log)
    finally:
        _kill(first)
    written_before = rows()
    assert written_before < 60, "killed before the stream had caught up"
    produce(kafka_bootstrap_servers, kafka_topic, [to_json(e) for e in events[60:]])

    restarted = dt.datetime.now(UTC)
    second = _start_job(spec, log)
    try:
        recovery = _wait_for("every event offline", lambda: rows() >= 100, second, log)
        _wait_for("the newest values online", lambda: len(_online(online)) == 5, second, log)
        time.sleep(3)  # a doubled batch would land now
        final = _offline(offline)
    finally:
        _kill(second)

    progress = stream_plan.read_progress(
        boto3.client("s3")
        .get_object(**_bucket_key(stream_plan.progress_uri(offline)))["Body"]
        .read()
    )
    assert progress.first_online_at is not None
    first_write = dt.datetime.fromisoformat(progress.first_online_at.replace("Z", "+00:00"))
    to_first = (first_write - restarted).total_seconds()
    record_property("restart_to_caught_up_seconds", round(recovery, 1))
    record_property("restart_to_first_online_seconds", round(to_first, 1))
    print(
        f"\nkilled after {written_before} of 60 rows; restart -> first online write "
        f"{to_first:.1f} s, -> all 100 offline {recovery:.1f} s"
    )
    keys = [(r["driver_id"], r["event_timestamp"]) for r in final]
    assert len(keys) == len(set(keys)) == 100, "an event lost or written twice"
    assert set(keys) == {(e["driver_id"], e["event_timestamp"]) for e in events}
    newest = {e["driver_id"]: e for e in events}
    assert {k: int(v[layout.EVENT_TIME]["N"]) for k, v in _online(online).items()} == {
        f"driver_id:i:{d}": int((e["event_timestamp"] - EPOCH) / dt.timedelta(microseconds=1))
        for d, e in newest.items()
    }


def test_the_stream_keeps_the_row_the_batch_windows_keep_of_rows_tying_on_keys_and_time(
    spark: SparkSession,
) -> None:
    # The stream deduplicates in Arrow: the same rows as Spark's window on every kind
    # of tie (created time, NaN, null, arrays element by element, strings by bytes).
    view = v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "driver-trips", "namespace": "rides"},
            "spec": {
                "owner": "eta-team",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": "s3://unused/raw/"}},
                "features": [
                    {"name": "fare", "type": "float64"},
                    {"name": "path", "type": "float64_array"},
                    {"name": "zone", "type": "string"},
                ],
            },
        }
    )
    plan = planning.plan_materialization(view, T0, T0 + MIN)
    nan = float("nan")
    ties: list[list[tuple[Any, ...]]] = [  # (fare, path, zone, created seconds), per driver
        [(1.0, [1.0], "a", 0), (9.0, [1.0], "a", 1)],
        [(None, [1.0], "a", 0), (-1.0, [1.0], "a", 0), (nan, None, "a", 0)],
        [(2.0, [1.0, None], "a", 0), (2.0, [1.0], "z", 0), (2.0, [nan], "a", 0)],
        [(2.0, [], "é", 0), (2.0, [], "z", 0), (2.0, None, "zz", 0)],
        [(3.0, [5.0], None, 0)],
    ]
    rows = [
        {
            "driver_id": driver,
            "fare": fare,
            "path": path,
            "zone": zone,
            "event_timestamp": T0,
            "created_timestamp": T0 + dt.timedelta(seconds=created),
        }
        for driver, group in enumerate(ties)
        for fare, path, zone, created in group
    ]
    schema = pa.schema(
        [
            ("driver_id", pa.int64()),
            ("fare", pa.float64()),
            ("path", pa.list_(pa.float64())),
            ("zone", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("created_timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    names = schema.names

    by_spark = (
        spark_job.deduplicated(spark.createDataFrame(table), plan)
        .select(*names)
        .toArrow()
        .sort_by("driver_id")
    )
    by_stream = stream_rows.deduplicated(table, ["driver_id"], plan.features)

    assert repr(by_stream.cast(schema).to_pylist()) == repr(by_spark.cast(schema).to_pylist())
