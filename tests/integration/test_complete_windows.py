"""Readers see only complete windows: a window whose online write fails, or whose job
dies between its online write and its offline commit, is seen neither by training pulls
(DuckDB and Spark, over the real Delta table) nor by the feature server (over moto's
DynamoDB), and is seen by all of them once a run of it succeeds. And what a failed
Push leaves: its rows online, none offline."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from typing import Any

import boto3
import botocore.exceptions
import deltalake
import pandas as pd
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurekube.materialize import publish, python_job, spark_job
from featurekube.online import client, keys, layout, windows
from featurekube.spec import v1alpha1
from featurekube.store import FeatureStore
from featurekube.writer import (
    OfflineWriter,
    OnlineWriteError,
    OnlineWriter,
    OnlineWriteSettings,
    PendingWindow,
)
from featurekube_operator.dynamo import OnlineTables
from featurekube_server import errors, plan, server
from featurekube_server.stores import dynamodb
from featurekube_server.stores import writer as pushing

pytestmark = pytest.mark.spark

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
W1 = (T0, T0 + DAY)
W2 = (T0 + DAY, T0 + 2 * DAY)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

# Driver 1 and 2 change in both windows, driver 3 only in the first.
RAW = [
    (1, T0 + 1 * HOUR, 10.0),
    (2, T0 + 2 * HOUR, 20.0),
    (3, T0 + 3 * HOUR, 30.0),
    (1, T0 + DAY + 1 * HOUR, 11.0),
    (2, T0 + DAY + 2 * HOUR, 21.0),
]
FIRST = {1: 10.0, 2: 20.0, 3: 30.0}
BOTH = {1: 11.0, 2: 21.0, 3: 30.0}


def _micros(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _setup(s3_prefix: str, table_prefix: str) -> tuple[v1alpha1.FeatureView, str, str, str]:
    """The view over RAW, its offline root and table URI, and its online table."""
    source = f"{s3_prefix}raw/speed/"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(source)
    raw = pa.table(
        {
            "driver_id": pa.array([r[0] for r in RAW], pa.int64()),
            "ts": pa.array([r[1] for r in RAW], pa.timestamp("us", tz="UTC")),
            "speed": pa.array([r[2] for r in RAW]),
        }
    )
    pq.write_table(raw, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)
    view = v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "speed", "namespace": "rides"},
            "spec": {
                "owner": "dispatch@example.com",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": source, "timestampField": "ts"}},
                "features": [{"name": "speed", "type": "float64"}],
            },
        }
    )
    table = f"{table_prefix}speed"
    dynamo = boto3.client("dynamodb")
    dynamo.create_table(**layout.table_definition(table, {}))
    dynamo.get_waiter("table_exists").wait(TableName=table)
    root = f"{s3_prefix}offline"
    return view, root, f"{root}/rides/speed/v1", table


class _FailingClient:
    """A boto3 DynamoDB client whose BatchWriteItem calls fail from the ``fail_from``-th
    on, as DynamoDB fails a request it refuses."""

    def __init__(self, fail_from: int) -> None:
        self._client = boto3.client("dynamodb")
        self._lock = threading.Lock()
        self.fail_from = fail_from
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, **arguments: Any) -> Any:
        with self._lock:
            self.calls += 1
            failing = self.calls >= self.fail_from
        if failing:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ValidationException", "Message": "injected failure"}},
                "BatchWriteItem",
            )
        return self._client.batch_write_item(**arguments)


def _run(
    spark: SparkSession,
    engine: str,
    view: v1alpha1.FeatureView,
    window: tuple[dt.datetime, dt.datetime],
    offline: str,
    online: str,
    online_client: Any = None,
) -> Any:
    # One entity a chunk, so that a failure can come after some entities were written.
    settings = OnlineWriteSettings(chunk_entities=1, settle_seconds=0.2)
    if engine == "python":
        return python_job.run(
            view,
            *window,
            offline_uri=offline,
            online_table=online,
            online_client=online_client,
            settings=python_job.PythonSettings(online=settings),
        )
    return spark_job.run(
        spark,
        view,
        *window,
        offline_uri=offline,
        online_table=online,
        online_client=online_client,
        settings=spark_job.JobSettings(online=settings),
    )


def _pulls(
    spark: SparkSession, root: str, view: v1alpha1.FeatureView
) -> tuple[dict[int, float], dict[int, float]]:
    """Each driver's speed at the end of the second window, by DuckDB and by Spark."""
    store = FeatureStore([view], namespace="rides", offline_uri=root)
    at = W2[1] - dt.timedelta(microseconds=1)
    entities = pd.DataFrame({"driver_id": [1, 2, 3], "event_timestamp": [at] * 3})
    pulled = store.get_historical_features(entities, ["speed:speed"])
    by_duckdb = pulled.to_arrow().select(["driver_id", "speed"]).to_pylist()
    by_spark = pulled.to_spark(spark).toArrow().select(["driver_id", "speed"]).to_pylist()
    return (
        {r["driver_id"]: r["speed"] for r in by_duckdb},
        {r["driver_id"]: r["speed"] for r in by_spark},
    )


def _served(table: str) -> dict[int, tuple[str, float | None]]:
    """What a feature server over ``table`` answers for drivers 1 to 3: status and speed."""
    serving = plan.parse_plan(
        {
            "featureService": "speed-model",
            "namespace": "rides",
            "featureViews": [
                {
                    "name": "speed",
                    "namespace": "rides",
                    "onlineTable": table,
                    "entities": [{"name": "driver_id", "type": "int64"}],
                    "features": [{"name": "speed", "source": "speed", "type": "float64"}],
                    "storedFeatures": ["speed"],
                }
            ],
        }
    )

    async def ask() -> client.OnlineFeatures:
        async with dynamodb.DynamoDBStore() as store:
            feature_server = server.FeatureServer(serving, store, health_interval=0.1)
            port = await feature_server.start("127.0.0.1:0")
            try:
                await asyncio.wait_for(feature_server.ready.wait(), 30)

                def call() -> client.OnlineFeatures:
                    with client.OnlineClient(f"127.0.0.1:{port}") as online:
                        return online.get_online_features(
                            [{"driver_id": d} for d in (1, 2, 3)], features=["speed"]
                        )

                return await asyncio.to_thread(call)
            finally:
                await feature_server.stop(0)

    answer = asyncio.run(ask())
    statuses = [s.name for s in answer.statuses["speed"]]
    return dict(zip((1, 2, 3), zip(statuses, answer.to_dict()["speed"], strict=True), strict=True))


def _stored_event_times(table: str) -> dict[int, int]:
    """Each driver's stored event time, as DynamoDB holds it (whatever readers show)."""
    found = {}
    for driver in (1, 2, 3):
        key = keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": driver})
        item = boto3.client("dynamodb").get_item(
            TableName=table, Key={layout.ENTITY_KEY: {"S": key}}, ConsistentRead=True
        )["Item"]
        found[driver] = int(item[layout.EVENT_TIME]["N"])
    return found


def _present(speeds: dict[int, float]) -> dict[int, tuple[str, float | None]]:
    return {driver: ("PRESENT", speed) for driver, speed in speeds.items()}


@pytest.fixture(params=["spark", "python"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_window_whose_online_write_fails_is_seen_by_no_reader_until_a_retry_succeeds(
    spark: SparkSession, engine: str, s3_prefix: str, table_prefix: str
) -> None:
    view, root, offline, online = _setup(s3_prefix, table_prefix)
    _run(spark, engine, view, W1, offline, online)
    committed = deltalake.DeltaTable(offline).version()
    assert _pulls(spark, root, view) == (FIRST, FIRST)
    assert _served(online) == _present(FIRST)

    # The second window's first entity is written, the next write fails.
    failing = _FailingClient(fail_from=2)
    with pytest.raises(OnlineWriteError, match="injected failure"):
        _run(spark, engine, view, W2, offline, online, online_client=failing)

    stored = _stored_event_times(online)
    (written,) = [d for d in (1, 2) if stored[d] >= _micros(W2[0])]  # in the store ...
    assert deltalake.DeltaTable(offline).version() == committed  # ... never committed offline
    assert _pulls(spark, root, view) == (FIRST, FIRST)
    # The feature server does not serve it: the entity it reached has no complete value.
    assert _served(online) == {**_present(FIRST), written: ("NOT_FOUND", None)}

    _run(spark, engine, view, W2, offline, online)

    assert _pulls(spark, root, view) == (BOTH, BOTH)
    assert _served(online) == _present(BOTH)


def test_a_missing_online_table_fails_the_window_before_anything_is_written(
    spark: SparkSession, engine: str, s3_prefix: str, table_prefix: str
) -> None:
    view, _, offline, _ = _setup(s3_prefix, table_prefix)
    with pytest.raises(OnlineWriteError, match="does not exist"):
        _run(spark, engine, view, W1, offline, f"{table_prefix}missing")
    assert not deltalake.DeltaTable.is_deltatable(offline)


def test_a_job_killed_between_its_online_write_and_offline_commit_leaves_nothing_visible(
    spark: SparkSession, s3_prefix: str, table_prefix: str
) -> None:
    """Two windows of a backfill at once: the second dies after its online write (the
    steps of a run called one by one, the last ones never), the first completes."""
    view, root, offline, online = _setup(s3_prefix, table_prefix)
    settings = OnlineWriteSettings(settle_seconds=0)

    def of(window: tuple[dt.datetime, dt.datetime]) -> list[dict[str, Any]]:
        return [
            {"driver_id": driver, "speed": speed, "event_timestamp": at}
            for driver, at, speed in RAW
            if window[0] <= at < window[1]
        ]

    first_writer = OnlineWriter(online, view, settings=settings)
    second_writer = OnlineWriter(online, view, settings=settings)
    first = publish.Publication(first_writer, *W1)
    second = publish.Publication(second_writer, *W2)
    second.write_online(lambda: second_writer.write_bulk(of(W2)))
    # ... killed here: no offline commit, and its pending record stays.
    first.write_online(lambda: first_writer.write_bulk(of(W1)))
    first.commit_offline(lambda: OfflineWriter(offline, view).replace_window(of(W1), *W1))
    first.complete()

    assert _stored_event_times(online)[1] == _micros(T0 + DAY + HOUR)  # the second's value
    committed = deltalake.DeltaTable(offline).to_pyarrow_table()
    assert sorted(committed.column("event_timestamp").to_pylist()) == [
        T0 + HOUR,
        T0 + 2 * HOUR,
        T0 + 3 * HOUR,
    ]
    assert _pulls(spark, root, view) == (FIRST, FIRST)
    # Drivers 1 and 2 hold the second window's values, which the server hides; their
    # first window's values were replaced, so nothing of theirs is complete.
    assert _served(online) == {
        1: ("NOT_FOUND", None),
        2: ("NOT_FOUND", None),
        3: ("PRESENT", 30.0),
    }
    record = boto3.client("dynamodb").get_item(
        TableName=online, Key={layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY}}, ConsistentRead=True
    )["Item"]
    assert windows.pending_ranges(record) == ((_micros(W2[0]), _micros(W2[1])),)

    # The operator runs the failed window again; a full run completes it.
    _run(spark, "python", view, W2, offline, online)

    assert _pulls(spark, root, view) == (BOTH, BOTH)
    assert _served(online) == _present(BOTH)


def _record(table: str) -> dict[str, Any]:
    key = {layout.ENTITY_KEY: {"S": windows.WINDOWS_KEY}}
    found: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=table, Key=key, ConsistentRead=True
    )["Item"]
    return found


def test_a_run_superseded_by_a_later_run_of_its_window_leaves_the_publishing_to_it(
    s3_prefix: str, table_prefix: str
) -> None:
    view, _, _, online = _setup(s3_prefix, table_prefix)
    writer = OnlineWriter(online, view, settings=OnlineWriteSettings(settle_seconds=0))
    earlier = writer.open_window(*W1)
    later = writer.open_window(*W1)

    assert (earlier.superseded, later.superseded) == (None, earlier.run)
    assert writer.close_window(earlier) is False  # the later run is still writing
    assert windows.pending_ranges(_record(online)) == ((_micros(W1[0]), _micros(W1[1])),)
    assert writer.close_window(later) is True
    assert windows.pending_ranges(_record(online)) == ()


def test_a_run_that_fails_before_writing_puts_the_pending_record_back(
    s3_prefix: str, table_prefix: str
) -> None:
    view, _, _, online = _setup(s3_prefix, table_prefix)
    writer = OnlineWriter(online, view, settings=OnlineWriteSettings(settle_seconds=0))
    pending = ((_micros(W1[0]), _micros(W1[1])),)

    # A first run fails before writing, and leaves no record.
    first = publish.Publication(writer, *W1)
    assert windows.pending_ranges(_record(online)) == pending
    with pytest.raises(RuntimeError, match="expectation failed"), first.before_writing():
        raise RuntimeError("an expectation failed")
    assert windows.pending_ranges(_record(online)) == ()

    # A run dies after writing; a retry fails before writing: the dead run's record is
    # back, so what it wrote stays hidden.
    dead = publish.Publication(writer, *W1)
    row = {"driver_id": 1, "speed": 1.0, "event_timestamp": T0}
    dead.write_online(lambda: writer.write_bulk([row]))
    retry = publish.Publication(writer, *W1)
    with pytest.raises(RuntimeError, match="source"), retry.before_writing():
        raise RuntimeError("the source could not be read")
    record = _record(online)
    assert windows.pending_ranges(record) == pending
    (owner,) = record[windows.PENDING]["M"].values()
    assert dead.pending is not None
    assert owner == {"S": dead.pending.run}


def test_a_job_takes_over_the_record_the_operator_wrote_when_it_started_the_job(
    s3_prefix: str, table_prefix: str
) -> None:
    view, _, _, online = _setup(s3_prefix, table_prefix)
    writer = OnlineWriter(online, view, settings=OnlineWriteSettings(settle_seconds=0))
    tables = OnlineTables(boto3.client("dynamodb"))
    dead = writer.open_window(*W1)  # an earlier run, which died after writing

    launched = tables.open_window(online, view, *W1)
    assert launched is not None and launched.superseded == dead.run
    taken = writer.open_window(*W1, recorded=launched)
    assert taken == PendingWindow(*W1, launched.run, dead.run, launched=True)
    assert _owner(online) == launched.run

    # The job fails before writing: the dead run's record is back, its writes hidden.
    job = publish.Publication(writer, *W1, recorded=launched, started_at=0.0)
    assert job.pending is not None and job.pending.launched
    with pytest.raises(RuntimeError, match="source"), job.before_writing():
        raise RuntimeError("the source could not be read")
    assert _owner(online) == dead.run

    # Run with the same arguments again, the job no longer finds its record: it writes
    # it again, as a run of its own would (and waits out the settle from now).
    again = writer.open_window(*W1, recorded=launched)
    assert again == PendingWindow(*W1, launched.run, dead.run, launched=False)
    assert writer.close_window(again) is True
    assert windows.pending_ranges(_record(online)) == ()

    # A store that refuses the operator's record leaves it to the job.
    assert tables.open_window(f"{online}-missing", view, *W1) is None


def _owner(table: str) -> str:
    (owner,) = _record(table)[windows.PENDING]["M"].values()
    found: str = owner["S"]
    return found


def test_a_failed_push_leaves_its_rows_online_and_none_offline_until_sent_again(
    table_prefix: str,
) -> None:
    bucket = f"featurekube-push-{uuid.uuid4().hex[:12]}"  # made only after the failure
    spec = {
        "owner": "dispatch@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"push": {"timestampField": "event_timestamp"}},
        "features": [{"name": "speed", "type": "float64"}],
        "materialization": {"online": True, "offline": True},
    }
    table = f"{table_prefix}pushed"
    dynamo = boto3.client("dynamodb")
    dynamo.create_table(**layout.table_definition(table, {}))
    dynamo.get_waiter("table_exists").wait(TableName=table)
    serving = plan.parse_plan(
        {
            "featureService": "speed-model",
            "namespace": "rides",
            "featureViews": [
                {
                    "name": "pushed",
                    "namespace": "rides",
                    "onlineTable": table,
                    "entities": [{"name": "driver_id", "type": "int64"}],
                    "features": [{"name": "speed", "source": "speed", "type": "float64"}],
                    "push": {"spec": spec, "offlineUri": f"s3://{bucket}/rides/pushed/"},
                }
            ],
        }
    )
    (view,) = serving.feature_views
    rows = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([T0, T0 + HOUR], pa.timestamp("us", tz="UTC")),
            "speed": pa.array([10.0, 20.0]),
        }
    )
    pusher = pushing.WritePathPusher()

    with pytest.raises(errors.StoreUnavailableError, match="offline table"):
        asyncio.run(pusher.push(view, rows))

    stored = {}
    for driver in (1, 2):
        key = keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": driver})
        item = dynamo.get_item(TableName=table, Key={layout.ENTITY_KEY: {"S": key}})["Item"]
        stored[driver] = item["speed"]["N"]
    assert stored == {1: "10.0", 2: "20.0"}  # online: written, and served

    boto3.client("s3").create_bucket(Bucket=bucket)
    assert asyncio.run(pusher.push(view, rows)) == 2

    offline = deltalake.DeltaTable(f"s3://{bucket}/rides/pushed/").to_pyarrow_table()
    assert sorted(offline.column("speed").to_pylist()) == [10.0, 20.0]  # appended once
