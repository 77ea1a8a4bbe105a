"""Tiled aggregations on the platform's S3: each engine's windows read the source only
for their own intervals once tiles are stored, whichever engine stored them, and give
the rows computed from the events, bit for bit; no window leaves stale tiles behind."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurekube.materialize import plan as planning
from featurekube.materialize import python_job, spark_job, tile_store, tiles
from featurekube.offline import layout
from featurekube.spec import v1alpha1

pytestmark = pytest.mark.spark

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
S = 10 * MIN

AGGREGATIONS = [
    {"name": "trips_1h", "column": "fare", "function": "count", "window": "1h"},
    {"name": "fares_1d", "column": "fare", "function": "sum", "window": "1d", "type": "float64"},
    {"name": "sd_fare_1d", "column": "fare", "function": "stddev", "window": "1d"},
    {"name": "tips_1d", "column": "tip", "function": "sum", "window": "1d", "type": "int64"},
    {
        "name": "last_zone_1d",
        "column": "zone",
        "function": "last",
        "window": "1d",
        "type": "string",
    },
    {"name": "zones_1h", "column": "zone", "function": "count_distinct", "window": "1h"},
    {"name": "top_fare_1h", "column": "fare", "function": "max", "window": "1h", "type": "float64"},
]


def _raw(seed: int, start: dt.datetime, end: dt.datetime, n: int) -> pa.Table:
    rng = random.Random(seed)
    seconds = int((end - start).total_seconds())
    return pa.table(
        {
            "driver_id": pa.array([rng.randrange(6) for _ in range(n)], pa.int64()),
            "ts": pa.array(
                [start + dt.timedelta(seconds=rng.randrange(seconds)) for _ in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "fare": pa.array([rng.choice([None, round(rng.uniform(3, 60), 2)]) for _ in range(n)]),
            "tip": pa.array([rng.choice([None, 1, 2**53 + 1, 7]) for _ in range(n)], pa.int64()),
            "zone": pa.array([rng.choice(["north", "south", None]) for _ in range(n)]),
        }
    )


def _put(uri: str, name: str, table: pa.Table) -> None:
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    pq.write_table(table, f"{path.rstrip('/')}/{name}.parquet", filesystem=filesystem)


def _view(source: str) -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "fares", "namespace": "rides"},
            "spec": {
                "owner": "tests",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": source, "timestampField": "ts"}},
                "aggregationInterval": "10m",
                "aggregations": AGGREGATIONS,
            },
        }
    )


def _offline(uri: str) -> list[dict[str, Any]]:
    rows = deltalake.DeltaTable(uri).to_pyarrow_table().to_pylist()
    for row in rows:
        del row["ingestion_timestamp"], row["created_timestamp"]
    return sorted(rows, key=lambda r: (r["event_timestamp"], r["driver_id"]))


def _close(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(r["driver_id"], r["event_timestamp"]) for r in actual] == [
        (r["driver_id"], r["event_timestamp"]) for r in expected
    ]
    for got, want in zip(actual, expected, strict=True):
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-12), name
            else:
                assert got[name] == value, name


def _tiles(offline: str) -> pa.Table:
    return deltalake.DeltaTable(layout.tiles_uri(offline)).to_pyarrow_table()


def test_a_steady_window_reads_only_its_own_interval_and_gives_sparks_rows(
    spark: SparkSession, s3_prefix: str
) -> None:
    source = f"{s3_prefix}raw/fares/"
    raw = _raw(1, T0, T0 + 3 * DAY, 3000)
    _put(source, "part-0", raw)
    view = _view(source)
    offline, reference = f"{s3_prefix}offline/tiled", f"{s3_prefix}offline/spark"
    backfill = (T0 + 2 * DAY, T0 + 2 * DAY + 6 * HOUR)
    steady = (backfill[1], backfill[1] + S)

    python_job.run(view, *backfill, offline_uri=offline, online_table=None)
    result = python_job.run(view, *steady, offline_uri=offline, online_table=None)
    spark_job.run(spark, view, backfill[0], steady[1], offline_uri=reference, online_table=None)

    # The window owns one boundary t: it reads the events of (t - S, t] and no more.
    t = steady[0]
    times = raw.column("ts").to_pylist()
    assert result.rows_read == sum(1 for e in times if t - S < e <= t)
    _close(_offline(offline), _offline(reference))
    stored = _tiles(offline)
    assert set(stored.column(tiles.TILE_SIZE).to_pylist()) >= {600_000_000, 3_600_000_000}
    # The offline table's readers see only its own columns.
    assert "tile_end" not in deltalake.DeltaTable(offline).schema().to_arrow().names


def test_a_rerun_replaces_its_tiles_with_the_same_ones(s3_prefix: str) -> None:
    source = f"{s3_prefix}raw/rerun/"
    _put(source, "part-0", _raw(2, T0, T0 + 2 * DAY, 1500))
    view = _view(source)
    offline = f"{s3_prefix}offline/rerun"
    window = (T0 + DAY + 3 * HOUR, T0 + DAY + 5 * HOUR)

    python_job.run(view, *window, offline_uri=offline, online_table=None)
    before = _tiles(offline).sort_by(
        [(tiles.TILE_SIZE, "ascending"), (tiles.TILE_END, "ascending"), ("driver_id", "ascending")]
    )
    rows = _offline(offline)
    python_job.run(view, *window, offline_uri=offline, online_table=None)
    after = _tiles(offline).sort_by(
        [(tiles.TILE_SIZE, "ascending"), (tiles.TILE_END, "ascending"), ("driver_id", "ascending")]
    )

    assert after.num_rows == before.num_rows > 0
    # Equal but for the created times of events without one: the time of each run.
    stamped = [n for n in before.column_names if n.endswith("#last_created")]
    assert after.drop(stamped).to_pylist() == before.drop(stamped).to_pylist()
    assert _offline(offline) == rows


def test_a_spark_rerun_with_late_events_leaves_no_stale_tiles(
    spark: SparkSession, s3_prefix: str
) -> None:
    source = f"{s3_prefix}raw/late/"
    _put(source, "part-0", _raw(3, T0, T0 + 2 * DAY, 1500))
    view = _view(source)
    offline, reference = f"{s3_prefix}offline/late", f"{s3_prefix}offline/late-spark"
    first = (T0 + DAY, T0 + DAY + 2 * HOUR)
    later = (first[1], first[1] + 30 * MIN)
    python_job.run(view, *first, offline_uri=offline, online_table=None)
    late = _raw(4, first[0] + 20 * MIN, first[0] + 40 * MIN, 60)
    _put(source, "part-1", late)

    spark_job.run(spark, view, *first, offline_uri=offline, online_table=None)
    python_job.run(view, *later, offline_uri=offline, online_table=None)
    spark_job.run(spark, view, first[0], later[1], offline_uri=reference, online_table=None)

    _close(_offline(offline), _offline(reference))


def _own_events(raw: pa.Table, window: tuple[dt.datetime, dt.datetime]) -> int:
    """Events of the intervals a window owns: (t - S, t] for its boundaries t."""
    times = raw.column("ts").to_pylist()
    return sum(1 for e in times if window[0] - S < e <= window[1] - S)


def _sorted_tiles(offline: str) -> list[dict[str, Any]]:
    table = _tiles(offline)
    order = [tiles.TILE_SIZE, tiles.TILE_END, tiles.MARKER, "driver_id"]
    return table.sort_by([(name, "ascending") for name in order]).to_pylist()


def test_spark_stores_the_tiles_the_python_engine_would_and_reads_them_back(
    spark: SparkSession, s3_prefix: str
) -> None:
    """A Spark window stores exactly the tiles a python window stores; each engine's
    next window reads only its own interval from the source, whichever engine stored
    the tiles; and every row equals, bit for bit, the python engine's from the
    events."""
    source = f"{s3_prefix}raw/both/"
    raw = _raw(5, T0, T0 + 3 * DAY, 3000)
    _put(source, "part-0", raw)
    view = _view(source)
    by_spark, by_python = f"{s3_prefix}offline/by-spark", f"{s3_prefix}offline/by-python"
    untiled = f"{s3_prefix}offline/untiled"
    backfill = (T0 + 2 * DAY, T0 + 2 * DAY + 6 * HOUR)
    steady = [(backfill[1] + i * S, backfill[1] + (i + 1) * S) for i in range(3)]
    now = T0 + 4 * DAY  # one ingestion time: the created time of events without one

    spark_job.run(spark, view, *backfill, offline_uri=by_spark, online_table=None, now=now)
    python_job.run(view, *backfill, offline_uri=by_python, online_table=None, now=now)
    assert _sorted_tiles(by_spark) == _sorted_tiles(by_python)

    reads = [
        python_job.run(view, *steady[0], offline_uri=by_spark, online_table=None, now=now),
        spark_job.run(spark, view, *steady[1], offline_uri=by_spark, online_table=None, now=now),
        spark_job.run(spark, view, *steady[2], offline_uri=by_spark, online_table=None, now=now),
    ]
    assert [r.rows_read for r in reads] == [_own_events(raw, w) for w in steady]
    # The python engine over the whole span, from the events alone (no offline table of
    # tiles before it): the same rows to the last bit.
    python_job.run(view, backfill[0], steady[2][1], offline_uri=untiled, online_table=None)
    assert _offline(by_spark) == _offline(untiled)


def test_a_tile_table_of_other_column_types_is_replaced_whole(tmp_path: Any) -> None:
    view = _view("s3://bucket/raw/")
    window = planning.plan_materialization(view, T0 + DAY, T0 + DAY + S)
    tiles_plan = window.aggregation
    assert tiles_plan is not None and tiles_plan.first_boundary is not None
    end = tiles_plan.first_boundary

    def layout_of(fare: pa.DataType) -> tiles.TileLayout:
        schema = pa.schema(
            [("driver_id", pa.int64()), ("fare", fare), ("tip", pa.int64()), ("zone", pa.string())]
        )
        found = tiles.layout_for(tiles_plan, ["driver_id"], schema)
        assert found is not None
        return found

    def events(fare: pa.DataType) -> pa.Table:
        return pa.table(
            {
                "driver_id": pa.array([1], pa.int64()),
                "fare": pa.array([3], pa.int64()).cast(fare),
                "tip": pa.array([1], pa.int64()),
                "zone": pa.array(["north"]),
                "__event_micros": pa.array([end - 1], pa.int64()),
                "__created_micros": pa.array([end - 1], pa.int64()),
            }
        )

    uri = str(tmp_path / "_tiles")
    key = (tiles_plan.interval, end)
    old, new = layout_of(pa.int64()), layout_of(pa.float64())
    first = tile_store.TileStore(uri)
    assert first.load([key]) is None
    first.replace(tiles.build_tiles(events(pa.int64()), old), old, computed=[key], cleared=[])

    second = tile_store.TileStore(uri)
    loaded = second.load([key])
    assert loaded is not None and loaded.num_rows == 2  # the tile and its marker
    assert not second.matches(new)
    second.replace(tiles.build_tiles(events(pa.float64()), new), new, computed=[key], cleared=[])

    table = deltalake.DeltaTable(uri).to_pyarrow_table()
    assert table.schema.field("fare#max").type == pa.float64()
    assert sorted(table.column(tiles.MARKER).to_pylist()) == [False, True]
