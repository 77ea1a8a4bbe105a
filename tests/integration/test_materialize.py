"""The materialization job end to end on local Spark, the platform's S3 and DynamoDB.

Right answers are computed in the tests, in plain Python over the raw rows: the views'
transformations and aggregations are written out by hand here, never taken from
featurekube's code (which is used only to decode the online items).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import deltalake
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from featurekube.materialize import python_job, spark_job
from featurekube.materialize.errors import (
    ExpectationFailedError,
    SourceSchemaError,
    TransformationError,
)
from featurekube.online import layout, values
from featurekube.spec import v1alpha1
from featurekube.writer import offline as offline_writer
from support import example_data_generator

pytestmark = pytest.mark.spark

UTC = dt.UTC
EXAMPLES = Path(__file__).parents[2] / "examples"
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)
US = dt.timedelta(microseconds=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    """``examples/generate_data.py``, imported once."""
    return example_data_generator()


def _example(name: str, source: str, source_format: str = "parquet") -> v1alpha1.FeatureView:
    body = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    body["spec"]["source"]["batch"].update(path=source, format=source_format)
    return v1alpha1.FeatureView.model_validate(body)


def _put(uri: str, table: pa.Table) -> str:
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    pq.write_table(table, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)
    return uri


def _online_table(table_prefix: str, name: str) -> str:
    table = f"{table_prefix}{name}"
    client = boto3.client("dynamodb")
    client.create_table(**layout.table_definition(table, {}))
    client.get_waiter("table_exists").wait(TableName=table)
    return table


def _offline(uri: str) -> list[dict[str, Any]]:
    """The table's rows without ingestion times (they differ from run to run)."""
    rows = deltalake.DeltaTable(uri).to_pyarrow_table().to_pylist()
    for row in rows:
        del row["ingestion_timestamp"]
    keys = [k for k in rows[0] if k.endswith("_id") or k == "zone"] if rows else []
    return sorted(rows, key=lambda r: (r["event_timestamp"], *(r[k] for k in keys)))


def _online(table: str) -> dict[str, dict[str, Any]]:
    """The table's entity items (not the writers' lease and watermark, under '#' keys)."""
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    items = (item for page in pages for item in page["Items"])
    return {
        i[layout.ENTITY_KEY]["S"]: i for i in items if not i[layout.ENTITY_KEY]["S"].startswith("#")
    }


def _micros(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@pytest.fixture(params=["spark", "python"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every materialization test runs on both engines: they must give the same rows."""
    return str(request.param)


def _materialize(
    spark: SparkSession,
    view: v1alpha1.FeatureView,
    start: dt.datetime,
    end: dt.datetime,
    offline: str | None,
    online: str | None,
    engine: str = "spark",
) -> Any:
    if engine == "python":
        result = python_job.run(view, start, end, offline_uri=offline, online_table=online)
    else:
        result = spark_job.run(spark, view, start, end, offline_uri=offline, online_table=online)
    assert result.engine == engine
    return result


# -- plain features ------------------------------------------------------------------------


def _profile_reference(drivers: pa.Table, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """driver-profile's SQL and the dedupe rule, by hand."""
    best: dict[tuple[int, dt.datetime], dict[str, Any]] = {}
    for row in drivers.to_pylist():
        if row["is_test_account"] or not start <= row["event_timestamp"] < end:
            continue
        days = (row["event_timestamp"].date() - row["signup_date"]).days
        out = {
            "driver_id": row["driver_id"],
            "rating": row["rating"],
            "years_active": math.floor(days / 365.25),
            "vehicle_type": row["vehicle_class"].lower(),
            "is_premium": row["tier"] == "premium",
            "event_timestamp": row["event_timestamp"],
            "created_timestamp": row["created_timestamp"],
        }
        key = (row["driver_id"], row["event_timestamp"])
        if key not in best or out["created_timestamp"] > best[key]["created_timestamp"]:
            best[key] = out
    return sorted(best.values(), key=lambda r: (r["event_timestamp"], r["driver_id"]))


def test_plain_features_keep_every_row_and_the_latest_correction_and_rerun_identically(
    spark: SparkSession, engine: str, gen: ModuleType, s3_prefix: str, table_prefix: str
) -> None:
    drivers = gen.make_drivers(gen.Settings(days=3, drivers=8, riders=20))
    view = _example("driver-profile", _put(f"{s3_prefix}raw/drivers/", drivers))
    offline, online = f"{s3_prefix}offline/profile", _online_table(table_prefix, "profile")
    start, end = T0, T0 + 2 * DAY
    expected = _profile_reference(drivers, start, end)
    corrected = {(r["driver_id"], r["event_timestamp"]) for r in drivers.to_pylist()}
    assert len(corrected) < drivers.num_rows  # the data has ties on event time

    first = _materialize(spark, view, start, end, offline, online, engine=engine)
    rows = _offline(offline)
    rerun = _materialize(spark, view, start, end, offline, online, engine=engine)

    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    assert {r["event_date"] for r in rows} == {r["event_timestamp"].date() for r in expected}
    assert _offline(offline) == rows  # the re-run replaced the window with the same rows
    assert deltalake.DeltaTable(offline).version() == 1
    report = first.to_json()
    in_window = [
        r
        for r in drivers.to_pylist()
        if not r["is_test_account"] and start <= r["event_timestamp"] < end
    ]
    assert report["rows"] == {"read": len(in_window), "offline": len(expected), "online": 8}
    assert rerun.to_json()["rows"] == report["rows"] and report["published"] is True
    assert report["features"]["rating"]["min"] >= 3.0
    assert report["features"]["vehicle_type"]["nulls"] == 0
    # Online: each driver's newest row of the window.
    newest: dict[int, dict[str, Any]] = {}
    for row in expected:
        newest[row["driver_id"]] = row
    items = _online(online)
    assert len(items) == len(newest)
    for driver, row in newest.items():
        item = items[f"driver_id:i:{driver}"]
        assert int(item[layout.EVENT_TIME]["N"]) == _micros(row["event_timestamp"])
        assert int(item[layout.CREATED_TIME]["N"]) == _micros(row["created_timestamp"])
        assert values.from_attribute("float64", item.get("rating")) == row["rating"]
        assert values.from_attribute("string", item.get("vehicle_type")) == row["vehicle_type"]
        assert values.from_attribute("bool", item.get("is_premium")) == row["is_premium"]
        # ttl 3d, in seconds
        assert (
            int(item[layout.EXPIRES_AT]["N"])
            == _micros(row["event_timestamp"]) // 10**6 + 3 * 86400
        )


def _put_delta_by_day(uri: str, table: pa.Table) -> str:
    """``table`` as a Delta table at ``uri``, one commit (and file) a day of events, as
    a source that keeps its history grows."""
    times = table.column("event_timestamp")
    for day in sorted({moment.date() for moment in times.to_pylist()}):
        low = dt.datetime.combine(day, dt.time(), UTC)
        in_day = pc.and_(pc.greater_equal(times, low), pc.less(times, low + DAY))
        deltalake.write_deltalake(
            uri,
            table.filter(in_day),
            mode="append",
            storage_options=offline_writer.storage_options_for(uri),
        )
    return uri


def test_a_delta_source_gives_the_window_the_rows_a_parquet_source_does(
    spark: SparkSession, engine: str, gen: ModuleType, s3_prefix: str, table_prefix: str
) -> None:
    drivers = gen.make_drivers(gen.Settings(days=3, drivers=8, riders=20))
    source = _put_delta_by_day(f"{s3_prefix}raw/drivers", drivers)
    view = _example("driver-profile", source, source_format="delta")
    offline, online = f"{s3_prefix}offline/profile", _online_table(table_prefix, "profile")
    start, end = T0 + DAY, T0 + 2 * DAY
    expected = _profile_reference(drivers, start, end)

    result = _materialize(spark, view, start, end, offline, online, engine=engine)

    rows = _offline(offline)
    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    assert result.to_json()["rows"]["offline"] == len(expected)
    assert len(_online(online)) == len({r["driver_id"] for r in expected})


def _live_view(source: str) -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "zone-speed", "namespace": "rides"},
            "spec": {
                "owner": "dispatch@example.com",
                "entities": [
                    {"name": "zone", "type": "string"},
                    {"name": "driver_id", "type": "int64"},
                ],
                "source": {"batch": {"path": source, "timestampField": "ts"}},
                "features": [
                    {"name": "speed", "type": "float64"},
                    {"name": "status", "type": "string"},
                ],
                "expectations": [{"feature": "speed", "max": 100}],
            },
        }
    )


def test_online_values_move_only_forward_when_windows_run_out_of_order(
    spark: SparkSession, engine: str, s3_prefix: str, table_prefix: str
) -> None:
    def row(driver: int, zone: str, hours: float, speed: float, status: str) -> dict[str, Any]:
        return {
            "driver_id": driver,
            "zone": zone,
            "ts": T0 + dt.timedelta(hours=hours),
            "speed": speed,
            "status": status,
        }

    raw = [
        row(1, "SF/N", 1, 10.0, "idle"),
        row(1, "SF/N", 25, 20.0, "on-trip"),
        row(1, "SF/S", 2, 30.0, "idle"),  # another entity: same driver, other zone
        row(2, "SF/N", 3, 40.0, "idle"),
        row(2, "SF/N", 3, 140.0, "idle"),  # a full tie without created times: greatest wins
    ]
    schema = pa.schema(
        [
            ("driver_id", pa.int32()),
            ("zone", pa.string()),
            ("ts", pa.timestamp("us")),
            ("speed", pa.float64()),
            ("status", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(
        [r | {"ts": r["ts"].replace(tzinfo=None)} for r in raw], schema=schema
    )  # naive timestamps (UTC) and int32 keys convert
    view = _live_view(_put(f"{s3_prefix}raw/live/", table))
    offline, online = f"{s3_prefix}offline/live", _online_table(table_prefix, "live")

    later = _materialize(spark, view, T0 + DAY, T0 + 2 * DAY, offline, online, engine=engine)
    earlier = _materialize(spark, view, T0, T0 + DAY, offline, online, engine=engine)

    assert later.rows_online == 1
    assert (earlier.rows_online, earlier.online_stale) == (2, 1)
    items = _online(online)
    newest = items["driver_id:i:1/zone:s:SF%2FN"]
    assert newest["speed"] == {"N": "20.0"} and newest["status"] == {"S": "on-trip"}
    assert items["driver_id:i:2/zone:s:SF%2FN"]["speed"] == {"N": "140.0"}
    assert layout.EXPIRES_AT not in newest  # no ttl
    rows = _offline(offline)
    assert [(r["driver_id"], r["zone"], r["speed"]) for r in rows] == [
        (1, "SF/N", 10.0),
        (1, "SF/S", 30.0),
        (2, "SF/N", 140.0),
        (1, "SF/N", 20.0),
    ]
    # The created time of rows without a source column is the run's ingestion time.
    assert all(r["created_timestamp"] > T0 + 300 * DAY for r in rows)
    assert earlier.to_json()["violations"] == [
        {
            "feature": "speed",
            "check": "max",
            "rows": 1,
            "onViolation": "Warn",
            "message": "1 row of speed are above max 100",
        }
    ]
    assert earlier.published


# -- aggregations -----------------------------------------------------------------------------

S = dt.timedelta(minutes=10)


def _completed_trips(trips: pa.Table) -> list[dict[str, Any]]:
    """driver-trip-stats' SQL, by hand."""
    out = []
    for row in trips.to_pylist():
        if row["status"] != "completed":
            continue
        duration = row["duration_min"]
        speed = None if duration == 0 else row["distance_km"] / duration * 60
        out.append(row | {"speed_kmh": speed})
    return out


def _value(agg: v1alpha1.Aggregation, frame: list[dict[str, Any]]) -> Any:
    present = [r for r in frame if r[agg.column] is not None]
    present.sort(key=lambda r: (r["event_timestamp"], r["created_timestamp"], r[agg.column]))
    values_ = [r[agg.column] for r in present]
    if agg.function == "count":
        return len(values_)
    if agg.function == "count_distinct":
        return len(set(values_))
    if not values_:
        return None
    return {
        "sum": lambda: math.fsum(values_),
        "mean": lambda: math.fsum(values_) / len(values_),
        "stddev": lambda: statistics.stdev(values_) if len(values_) > 1 else None,
        "max": lambda: max(values_),
        "min": lambda: min(values_),
        "last": lambda: values_[-1],
    }[agg.function]()


def _trip_stats_reference(
    view: v1alpha1.FeatureView, trips: list[dict[str, Any]], start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """A row at each boundary in [start, end) where a driver's values change."""
    aggs = view.spec.aggregations or []
    windows = {a.name: v1alpha1.parse_duration(a.window) for a in aggs}
    by_driver: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for trip in trips:
        by_driver[trip["driver_id"]].append(trip)
    first = T0 + math.ceil((start - T0) / S) * S
    out = []
    for driver, events in by_driver.items():

        def at(t: dt.datetime, events: list[dict[str, Any]] = events) -> list[Any]:
            return [
                _value(a, [e for e in events if t - windows[a.name] < e["event_timestamp"] <= t])
                for a in aggs
            ]

        before = at(first - S)
        t = first
        while t < end:
            now = at(t)
            if now != before:
                out.append(
                    {"driver_id": driver, "event_timestamp": t}
                    | {a.name: v for a, v in zip(aggs, now, strict=True)}
                )
            before, t = now, t + S
    return sorted(out, key=lambda r: (r["event_timestamp"], r["driver_id"]))


def _assert_rows_equal(actual: Iterable[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    actual = list(actual)
    assert [(r["driver_id"], r["event_timestamp"]) for r in actual] == [
        (r["driver_id"], r["event_timestamp"]) for r in expected
    ]
    for got, want in zip(actual, expected, strict=True):
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-9), (name, want)
            else:
                assert got[name] == value, (name, want)


def test_aggregations_match_a_reference_and_windows_in_pieces_equal_one_window(
    spark: SparkSession, engine: str, gen: ModuleType, s3_prefix: str, table_prefix: str
) -> None:
    trips = gen.make_trips(gen.Settings(days=2, drivers=5, riders=40))
    view = _example("driver-trip-stats", _put(f"{s3_prefix}raw/trips/", trips))
    whole_uri, pieces_uri = f"{s3_prefix}offline/whole", f"{s3_prefix}offline/pieces"
    online = _online_table(table_prefix, "trip-stats")
    start, end = T0 + dt.timedelta(hours=6), T0 + dt.timedelta(hours=42)
    cuts = [start, T0 + dt.timedelta(hours=13, minutes=5), T0 + DAY, end]
    completed = _completed_trips(trips)

    whole = _materialize(spark, view, start, end, whole_uri, None, engine=engine)
    for piece_start, piece_end in itertools.pairwise(cuts):
        _materialize(spark, view, piece_start, piece_end, pieces_uri, online, engine=engine)
    pieces = _offline(pieces_uri)
    _materialize(spark, view, cuts[1], cuts[2], pieces_uri, online, engine=engine)  # a re-run

    expected = _trip_stats_reference(view, completed, start, end)
    assert len(expected) > 100
    _assert_rows_equal(_offline(whole_uri), expected)
    assert _offline(pieces_uri) == pieces
    whole_rows = [
        {k: v for k, v in r.items() if k != "created_timestamp"} for r in _offline(whole_uri)
    ]
    assert [{k: v for k, v in r.items() if k != "created_timestamp"} for r in pieces] == whole_rows
    assert all(r["created_timestamp"] == r["event_timestamp"] for r in pieces)
    lookback = start - S - dt.timedelta(days=7)
    read = [t for t in completed if lookback < t["event_timestamp"] <= end - S]
    assert whole.rows_read == len(read)
    assert whole.rows_offline == len(expected)
    # Online: each driver's value as of the last boundary before end, with the event
    # time of the row that set it, which is the offline point-in-time value at any
    # T in [last boundary, end).
    items = _online(online)
    assert len(items) == len({r["driver_id"] for r in expected})
    types = view.spec.feature_types()
    for driver in {r["driver_id"] for r in expected}:
        as_of = max(
            (r for r in pieces if r["driver_id"] == driver), key=lambda r: r["event_timestamp"]
        )
        item = items[f"driver_id:i:{driver}"]
        assert int(item[layout.EVENT_TIME]["N"]) == _micros(as_of["event_timestamp"])
        for name, value_type in types.items():
            assert values.from_attribute(value_type, item.get(name)) == as_of[name], name


BIG = 2**53 + 1  # 9007199254740993: a float64 cannot hold it


def _tips_view(source: str, name: str, aggregations: list[dict[str, Any]], **spec: Any) -> Any:
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": name, "namespace": "rides"},
            "spec": {
                "owner": "tests",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": source, "timestampField": "ts"}},
                "aggregationInterval": "10m",
                "aggregations": aggregations,
                **spec,
            },
        }
    )


def _pull(
    spark: SparkSession, root: str, view: v1alpha1.FeatureView, times: list[dt.datetime]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The view's features at ``times`` for driver 1, by DuckDB and by Spark."""
    import pandas as pd

    from featurekube.store import FeatureStore

    store = FeatureStore([view], namespace="rides", offline_uri=root)
    entities = pd.DataFrame({"driver_id": [1] * len(times), "event_timestamp": times})
    names = view.spec.feature_names
    pulled = store.get_historical_features(entities, [f"{view.metadata.name}:{n}" for n in names])
    by_duckdb = pulled.to_arrow().select(names).to_pylist()
    by_spark = pulled.to_spark(spark).toArrow().select(names).to_pylist()
    return by_duckdb, by_spark


@pytest.mark.parametrize("order", ["mean-first", "mean-last"])
def test_int64_aggregations_stay_exact_offline_online_and_in_pulls(
    spark: SparkSession, engine: str, s3_prefix: str, table_prefix: str, order: str
) -> None:
    exact = [
        {"name": f"{f}_tip", "column": "tip", "function": f, "window": "1h", "type": "int64"}
        for f in ("sum", "min", "max", "last")
    ]
    exact.append(
        {"name": "distinct_tips", "column": "tip", "function": "count_distinct", "window": "1h"}
    )
    floats = [
        {"name": f"{f}_tip", "column": "tip", "function": f, "window": "1h"}
        for f in ("mean", "stddev")
    ]
    declared = floats + exact if order == "mean-first" else exact + floats
    raw = pa.table(
        {
            "driver_id": pa.array([1, 1], pa.int64()),
            "ts": pa.array([T0 + 5 * MIN, T0 + 6 * MIN], pa.timestamp("us", tz="UTC")),
            "tip": pa.array([BIG, 1], pa.int64()),
        }
    )
    view = _tips_view(_put(f"{s3_prefix}raw/tips-{order}/", raw), "tips", declared)
    root = f"{s3_prefix}offline-{order}"
    offline = f"{root}/rides/tips/v1"
    online = _online_table(table_prefix, f"tips-{order}")

    _materialize(spark, view, T0, T0 + 30 * MIN, offline, online, engine=engine)

    want = {
        "sum_tip": BIG + 1,  # 9007199254740994, not 9007199254740992
        "min_tip": 1,
        "max_tip": BIG,
        "last_tip": 1,
        "distinct_tips": 2,
        "mean_tip": (BIG + 1) / 2,
        "stddev_tip": statistics.stdev([BIG, 1]),
    }
    (row,) = _offline(offline)
    assert {k: row[k] for k in want} == want
    item = _online(online)["driver_id:i:1"]
    types = view.spec.feature_types()
    assert {k: values.from_attribute(types[k], item.get(k)) for k in want} == want
    assert item["sum_tip"] == {"N": "9007199254740994"}
    by_duckdb, by_spark = _pull(spark, root, view, [T0 + 15 * MIN])
    assert by_duckdb == by_spark == [want]


def test_an_aggregations_ttl_counts_from_the_entitys_latest_event(
    spark: SparkSession, engine: str, s3_prefix: str, table_prefix: str
) -> None:
    # A 2-day TTL on 7-day windows. The second trip changes the count, not the max.
    raw = pa.table(
        {
            "driver_id": pa.array([1, 1], pa.int64()),
            "ts": pa.array([T0 + 5 * MIN, T0 + DAY + 12 * HOUR], pa.timestamp("us", tz="UTC")),
            "fare": pa.array([10.0, 5.0]),
        }
    )
    aggregations = [
        {"name": "trips_7d", "column": "fare", "function": "count", "window": "7d"},
        {
            "name": "max_fare_7d",
            "column": "fare",
            "function": "max",
            "window": "7d",
            "type": "float64",
        },
    ]
    view = _tips_view(_put(f"{s3_prefix}raw/ttl/", raw), "fares", aggregations, ttl="2d")
    root = f"{s3_prefix}offline-ttl"
    offline = f"{root}/rides/fares/v1"
    online = _online_table(table_prefix, "fares")
    latest = T0 + DAY + 12 * HOUR

    _materialize(spark, view, T0, T0 + 10 * DAY, offline, online, engine=engine)

    rows = _offline(offline)
    assert [r["latest_event_timestamp"] for r in rows] == [T0 + 5 * MIN] + [latest] * 3
    times = [
        T0 + 3 * DAY,  # 3 days after the first trip, 1.5 after the second: both count
        latest + 2 * DAY,  # exactly ttl after the latest trip
        latest + 2 * DAY + US,  # unknown: every aggregate null, count included
        T0 + 7 * DAY + 20 * MIN,  # a row 10 minutes old, but its latest event is not
    ]
    expected = [
        {"trips_7d": 2, "max_fare_7d": 10.0},
        {"trips_7d": 2, "max_fare_7d": 10.0},
        {"trips_7d": None, "max_fare_7d": None},
        {"trips_7d": None, "max_fare_7d": None},
    ]
    by_duckdb, by_spark = _pull(spark, root, view, times)
    assert by_duckdb == by_spark == expected
    # Online: the value at the last boundary (the window emptied, count 0), valid
    # and kept until 2 days after the latest trip, not after that boundary.
    item = _online(online)["driver_id:i:1"]
    assert int(item[layout.EVENT_TIME]["N"]) == _micros(latest + 7 * DAY)
    assert int(item[layout.LATEST_EVENT_TIME]["N"]) == _micros(latest)
    assert int(item[layout.EXPIRES_AT]["N"]) == _micros(latest + 2 * DAY) // 10**6
    assert item["trips_7d"] == {"N": "0"} and "max_fare_7d" not in item


# -- failures -------------------------------------------------------------------------------------


def test_a_failing_expectation_publishes_nothing(
    spark: SparkSession, engine: str, gen: ModuleType, s3_prefix: str, table_prefix: str
) -> None:
    drivers = gen.make_drivers(gen.Settings(days=2, drivers=5, riders=20)).to_pylist()
    seen = defaultdict(int)
    for r in drivers:
        seen[(r["driver_id"], r["event_timestamp"])] += 1
    bad = next(
        r
        for r in drivers
        if r["rating"] is not None
        and not r["is_test_account"]
        and seen[(r["driver_id"], r["event_timestamp"])] == 1
    )
    bad["rating"] = 7.5  # rating: max 5, onViolation: Fail
    source = _put(f"{s3_prefix}raw/drivers/", pa.Table.from_pylist(drivers, gen.SCHEMAS["drivers"]))
    view = _example("driver-profile", source)
    offline, online = f"{s3_prefix}offline/profile", _online_table(table_prefix, "profile")

    with pytest.raises(ExpectationFailedError, match="1 row of rating are above max 5") as failed:
        _materialize(spark, view, T0 - DAY, T0 + 2 * DAY, offline, online, engine=engine)

    report = failed.value.report.to_json()
    assert report["published"] is False and report["rows"]["online"] == 0
    assert report["features"]["rating"]["max"] == 7.5
    assert [v["check"] for v in report["violations"]] == ["max"]
    assert not deltalake.DeltaTable.is_deltatable(offline)
    assert _online(online) == {}


def test_schema_errors_name_every_missing_and_mistyped_column_and_write_nothing(
    spark: SparkSession, engine: str, gen: ModuleType, s3_prefix: str
) -> None:
    settings = gen.Settings(days=1, drivers=2, riders=5)
    riders = gen.make_riders(settings, gen.make_trips(settings))
    riders = riders.drop_columns(["avg_tip_rate"]).set_column(
        0, "rider_id", riders.column("rider_id").cast(pa.string())
    )
    view = _example("rider-features", _put(f"{s3_prefix}raw/riders/", riders))
    offline = f"{s3_prefix}offline/riders"

    with pytest.raises(SourceSchemaError) as error:
        _materialize(spark, view, T0, T0 + DAY, offline, None, engine=engine)

    assert str(error.value).splitlines()[1:] == [
        "  - column rider_id (join key): expected int64 (Spark bigint), found string",
        "  - column avg_tip_rate (feature avg_tip_rate): missing",
    ]
    assert "FeatureView rides/rider-features" in str(error.value)
    assert not deltalake.DeltaTable.is_deltatable(offline)


def test_a_transformation_over_a_missing_column_names_it(
    spark: SparkSession, engine: str, gen: ModuleType, s3_prefix: str
) -> None:
    trips = gen.make_trips(gen.Settings(days=1, drivers=2, riders=5)).drop_columns(["fare_usd"])
    view = _example("driver-trip-stats", _put(f"{s3_prefix}raw/trips/", trips))

    with pytest.raises(TransformationError, match=r"spec.transformation.sql failed: .*fare_usd"):
        _materialize(spark, view, T0, T0 + DAY, f"{s3_prefix}offline/stats", None, engine=engine)


# -- the command line ------------------------------------------------------------------------


def test_featurekube_materialize_runs_one_window_into_the_default_stores(
    spark: SparkSession,
    gen: ModuleType,
    s3_prefix: str,
    table_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from featurekube.cli import main as cli

    drivers = gen.make_drivers(gen.Settings(days=2, drivers=5, riders=10))
    body = yaml.safe_load((EXAMPLES / "driver-profile.yaml").read_text())
    body["metadata"]["namespace"] = "rides"
    body["spec"]["source"]["batch"]["path"] = _put(f"{s3_prefix}raw/cli/", drivers)
    spec = tmp_path / "driver-profile.yaml"
    spec.write_text(yaml.safe_dump(body))
    monkeypatch.setenv("FEATUREKUBE_OFFLINE_URI", f"{s3_prefix}offline")
    monkeypatch.setenv("FEATUREKUBE_TABLE_PREFIX", table_prefix)
    window = ["--start", "2026-01-01", "--end", "2026-01-02T00:00:00Z"]

    status = cli.main(["materialize", "-f", str(spec), *window, "--output", "json"])

    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads(out)
    expected = _profile_reference(drivers, T0, T0 + DAY)
    # Version 1 of the view, where the operator would put it; the table made for the run.
    table = f"{table_prefix}rides.driver-profile.v1"
    assert f"created online table {table}" in " ".join(err.split())  # rich wraps lines
    assert "Writing the online table" in err  # the progress display
    assert report["published"] is True
    assert (
        report["rows"]["offline"]
        == len(expected)
        == len(_offline(f"{s3_prefix}offline/rides/driver-profile/v1"))
    )
    assert (
        report["rows"]["online"] == len({r["driver_id"] for r in expected}) == len(_online(table))
    )

    # A second run of the same window as text; a file with no view fails before Spark.
    assert cli.main(["materialize", "-f", str(spec), *window, "--no-online"]) == 0
    assert "wrote" in capsys.readouterr().out
    empty = tmp_path / "empty.yaml"
    empty.write_text("kind: FeatureService\n")
    assert cli.main(["materialize", "-f", str(empty), *window]) == 1
    assert "holds 0 FeatureViews" in capsys.readouterr().err


def test_the_allowed_sql_gives_the_same_rows_in_spark_and_in_duckdb(spark: SparkSession) -> None:
    """The translation checked against Spark itself, over values that test each rule:
    nulls, a zero divisor guarded by NULLIF, floors of fractions, dates across UTC."""
    import duckdb

    from featurekube.materialize import translate

    sql = (
        "SELECT id, CAST(FLOOR(DATEDIFF(CAST(ts AS DATE), d) / 365.25) AS BIGINT) AS years, "
        "FLOOR(x) AS fx, CEIL(x) AS cx, IF(x > 1, 'big', 'small') AS size, "
        "CASE WHEN x IS NULL THEN 0 ELSE 1 END AS known, NVL(s, 'none') AS s2, "
        "x / NULLIF(y, 0) AS ratio, id % 3 AS m, CONCAT(s, '!') AS bang, UPPER(s) AS up, "
        "LENGTH(s) AS n, GREATEST(x, y) AS g, s LIKE 'a%' AS starts_a, x BETWEEN 1 AND 2 AS b "
        "FROM source WHERE NOT flag AND id IN (1, 2, 4)"
    )
    rows = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "ts": pa.array(
                [T0 - dt.timedelta(minutes=30), T0, T0, T0 + dt.timedelta(hours=23)],
                pa.timestamp("us", tz="UTC"),
            ),
            "d": pa.array(
                [
                    dt.date(2024, 1, 1),
                    dt.date(2025, 1, 2),
                    dt.date(2025, 1, 2),
                    dt.date(2020, 2, 29),
                ]
            ),
            "x": pa.array([1.5, None, 1.0, -2.25]),
            "y": pa.array([0.0, 2.0, 2.0, -3.0]),
            "s": pa.array(["abc", None, "z", "Ärger"]),
            "flag": pa.array([False, False, True, False]),
        }
    )
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        spark.createDataFrame(rows.to_pandas()).createOrReplaceTempView("source")
        by_spark = spark.sql(sql).orderBy("id").toArrow().to_pylist()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous or "UTC")
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'").fetchall()
        connection.register("source", rows)
        by_duckdb = (
            connection.sql(f"SELECT * FROM ({translate.translate(sql)}) ORDER BY id")
            .to_arrow_table()
            .to_pylist()
        )

    assert len(by_spark) == 3
    assert by_duckdb == by_spark
