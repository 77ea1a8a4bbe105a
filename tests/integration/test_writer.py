"""The write path on the local platform's DynamoDB and S3, without Spark: newest values
only online (conditional and bulk), atomic window replaces offline, and the errors."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from typing import Any

import boto3
import deltalake
import pyarrow as pa
import pytest

from featurekube import writer
from featurekube.online import layout, values
from featurekube.spec import v1alpha1
from featurekube.writer import online as online_writer

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def _view(ttl: str | None = "1h") -> v1alpha1.FeatureView:
    spec: dict[str, Any] = {
        "owner": "dispatch@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}, {"name": "zone", "type": "string"}],
        "source": {"push": {}},
        "features": [
            {"name": "speed", "type": "float64"},
            {"name": "status", "type": "string"},
            {"name": "path", "type": "float64_array"},
        ],
    }
    if ttl:
        spec["ttl"] = ttl
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": "live", "namespace": "rides"}, "spec": spec}
    )


@pytest.fixture
def table(table_prefix: str) -> str:
    name = f"{table_prefix}live"
    client = boto3.client("dynamodb")
    client.create_table(**layout.table_definition(name, {}))
    client.get_waiter("table_exists").wait(TableName=name)
    return name


def _row(driver: int, minute: int, speed: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "driver_id": driver,
        "zone": "SF/North",
        "speed": speed,
        "event_timestamp": T0 + dt.timedelta(minutes=minute),
        **extra,
    }


def _stored(table: str, driver: int) -> dict[str, Any] | None:
    key = f"driver_id:i:{driver}/zone:s:SF%2FNorth"
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={layout.ENTITY_KEY: {"S": key}}, ConsistentRead=True
    )
    found: dict[str, Any] | None = item.get("Item")
    return found


def _speed(table: str, driver: int) -> float | None:
    item = _stored(table, driver)
    assert item is not None
    return values.from_attribute("float64", item.get("speed"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["write", "write_bulk"])
def test_only_newer_event_times_replace_online_values(table: str, mode: str) -> None:
    w = writer.OnlineWriter(table, _view())
    write = getattr(w, mode)
    created = T0 + dt.timedelta(days=1)

    first = write([_row(1, 10, 1.0, created_timestamp=created), _row(2, 10, 2.0)])
    older = write([_row(1, 5, 9.0)])
    tie_earlier = write([_row(1, 10, 8.0, created_timestamp=created - dt.timedelta(seconds=1))])
    tie_later = write([_row(1, 10, 3.0, created_timestamp=created + dt.timedelta(seconds=1))])
    newer = write([_row(2, 11, None, status="on-trip")])

    assert first == writer.OnlineWriteResult(entities=2, written=2, stale=0)
    assert older == tie_earlier == writer.OnlineWriteResult(entities=1, written=0, stale=1)
    assert tie_later == newer == writer.OnlineWriteResult(entities=1, written=1, stale=0)
    assert _speed(table, 1) == 3.0
    item = _stored(table, 2)
    assert item is not None
    assert "speed" not in item  # a null is an absent attribute
    assert item["status"] == {"S": "on-trip"}
    event = int(item[layout.EVENT_TIME]["N"])
    assert event == int((T0 + dt.timedelta(minutes=11)).timestamp()) * 1_000_000
    assert int(item[layout.EXPIRES_AT]["N"]) == event // 1_000_000 + 3600
    # The bulk writer's lease is gone once it is done.
    assert (
        boto3.client("dynamodb")
        .get_item(TableName=table, Key={layout.ENTITY_KEY: {"S": online_writer.LEASE_KEY}})
        .get("Item")
        is None
    )


def test_rows_of_one_entity_reduce_to_the_newest_and_arrow_input_works(table: str) -> None:
    rows = pa.Table.from_pylist(
        [_row(1, m, float(m)) for m in (3, 9, 1)] + [_row(d, 0, 0.5) for d in range(2, 3000)]
    )

    result = writer.OnlineWriter(table, _view(ttl=None)).write_bulk(rows)

    assert result == writer.OnlineWriteResult(entities=2999, written=2999, stale=0)
    assert _speed(table, 1) == 9.0
    item = _stored(table, 2)
    assert item is not None and layout.EXPIRES_AT not in item


def test_a_bulk_write_prepares_before_its_first_item_and_calls_back_once(table: str) -> None:
    # A window's pending record settles while the write takes its lease and builds
    # items (materialize/publish.py): nothing of the window is stored before the call.
    seen: list[tuple[bool, bool]] = []

    def first_item() -> None:
        seen.append((_stored(table, 1) is not None, _stored(table, 2999) is not None))

    rows = [_row(d, 1, 1.0) for d in range(1, 3000)]
    settings = writer.OnlineWriteSettings(chunk_entities=1000)
    bulk = writer.OnlineWriter(table, _view(), settings=settings)

    result = bulk.write_bulk(rows, before_first_item=first_item)

    assert seen == [(False, False)] and result.written == 2999
    assert _speed(table, 1) == 1.0 and _speed(table, 2999) == 1.0


def test_a_held_lease_keeps_a_second_bulk_writer_out(table: str) -> None:
    settings = writer.OnlineWriteSettings(lease_wait_seconds=1.0)
    first = writer.OnlineWriter(table, _view())
    second = writer.OnlineWriter(table, _view(), settings=settings)

    with first._lease(), pytest.raises(writer.LeaseError, match="write lease of online table"):
        second.write_bulk([_row(1, 1, 1.0)])

    assert second.write_bulk([_row(1, 1, 1.0)]).written == 1


def test_an_item_over_400_kb_fails_naming_the_entity_and_view(table: str) -> None:
    huge = _row(7, 1, 1.0, path=[0.5] * 60_000)  # 480 KB of float64

    for method in ("write", "write_bulk"):
        with pytest.raises(writer.ItemTooLargeError) as error:
            getattr(writer.OnlineWriter(table, _view()), method)([_row(6, 1, 1.0), huge])
        message = str(error.value)
        assert "FeatureView rides/live" in message
        assert "driver_id:i:7/zone:s:SF%2FNorth" in message
        assert "largest feature is path" in message
    assert _stored(table, 6) is None  # nothing of the chunk was sent


def test_rows_that_do_not_fit_name_the_row_and_column(table: str) -> None:
    w = writer.OnlineWriter(table, _view())

    with pytest.raises(writer.RowError, match=r"row 1 column 'speed': 'fast' is not"):
        w.write([_row(1, 1, 1.0), _row(2, 1, "fast")])  # type: ignore[arg-type]
    with pytest.raises(writer.RowError, match=r"row 0 has column 'colour'"):
        w.write([_row(1, 1, 1.0, colour="red")])
    with pytest.raises(writer.RowError, match=r"row 0 has no zone"):
        w.write([{"driver_id": 1, "event_timestamp": T0}])


def _offline(uri: str) -> list[dict[str, Any]]:
    rows = deltalake.DeltaTable(uri).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["event_timestamp"], r["driver_id"]))


def test_a_window_replace_swaps_exactly_its_rows_in_one_commit(s3_prefix: str) -> None:
    uri = f"{s3_prefix}live"
    w = writer.OfflineWriter(uri, _view())
    w.append([_row(1, m, float(m)) for m in (0, 30, 60, 90)])
    ingested = T0 + dt.timedelta(days=3)

    result = w.replace_window(
        [_row(1, 45, 4.5), _row(2, 50, 5.0)],
        T0 + dt.timedelta(minutes=30),
        T0 + dt.timedelta(minutes=90),
        now=ingested,
    )

    rows = _offline(uri)
    assert [(r["driver_id"], r["speed"]) for r in rows] == [(1, 0.0), (1, 4.5), (2, 5.0), (1, 90.0)]
    assert result.rows == 2 and result.version == 1
    replaced = rows[1]
    assert replaced["created_timestamp"] == replaced["ingestion_timestamp"] == ingested
    assert replaced["event_date"] == dt.date(2026, 1, 1)
    assert deltalake.DeltaTable(uri).metadata().partition_columns == ["event_date"]


def test_a_row_outside_the_window_fails_the_replace_and_commits_nothing(s3_prefix: str) -> None:
    uri = f"{s3_prefix}live"
    w = writer.OfflineWriter(uri, _view())
    w.append([_row(1, 0, 0.0)])

    def rows() -> Any:
        yield pa.RecordBatch.from_pylist([_row(1, 10, 1.0)])
        yield pa.RecordBatch.from_pylist([_row(1, 70, 7.0)])

    with pytest.raises(writer.RowError, match="outside the window being replaced"):
        w.replace_window(rows(), T0, T0 + dt.timedelta(hours=1))

    assert deltalake.DeltaTable(uri).version() == 0
    assert [r["speed"] for r in _offline(uri)] == [0.0]


def test_an_empty_replace_creates_the_table_or_empties_the_window(s3_prefix: str) -> None:
    uri = f"{s3_prefix}live"
    w = writer.OfflineWriter(uri, _view())

    w.replace_window([], T0, T0 + dt.timedelta(hours=1))
    assert _offline(uri) == []
    w.append([_row(1, 10, 1.0), _row(1, 70, 7.0)])
    w.replace_window([], T0, T0 + dt.timedelta(hours=1))

    assert [r["speed"] for r in _offline(uri)] == [7.0]


def test_concurrent_windows_and_appends_all_land(s3_prefix: str) -> None:
    uri = f"{s3_prefix}live"
    writer.OfflineWriter(uri, _view()).append([_row(0, 0, 0.0)])

    def replace(hour: int) -> None:
        start = T0 + dt.timedelta(hours=hour)
        rows = pa.Table.from_pylist([_row(hour, 60 * hour + 5, float(hour))])
        writer.OfflineWriter(uri, _view()).replace_window(
            rows, start, start + dt.timedelta(hours=1)
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(replace, range(1, 5)))

    assert sorted(r["driver_id"] for r in _offline(uri)) == [0, 1, 2, 3, 4]


def test_bulk_writes_in_order_skip_the_read_and_late_ones_are_checked(table: str) -> None:
    client = boto3.client("dynamodb")
    reads: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.BatchGetItem", lambda **_: reads.append("read")
    )
    bulk = writer.OnlineWriter(table, _view(), client)
    push = writer.OnlineWriter(table, _view())

    bulk.write_bulk([_row(d, 10, 1.0) for d in range(1, 50)])
    bulk.write_bulk([_row(d, 20, 2.0) for d in range(1, 50)])
    assert reads == []  # later than the watermark: newer than anything stored
    push.write([_row(1, 40, 4.0)])  # conditional writers raise the watermark too
    late = bulk.write_bulk([_row(1, 30, 3.0), _row(2, 30, 3.0)])

    assert reads and late == writer.OnlineWriteResult(entities=2, written=1, stale=1)
    assert _speed(table, 1) == 4.0 and _speed(table, 2) == 3.0


def test_chunks_of_one_bulk_write_read_only_entities_they_wrote_before(table: str) -> None:
    client = boto3.client("dynamodb")
    read_keys: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        wanted = params["RequestItems"][table]["Keys"]
        read_keys.extend(k[layout.ENTITY_KEY]["S"] for k in wanted)

    client.meta.events.register("provide-client-params.dynamodb.BatchGetItem", count)
    settings = writer.OnlineWriteSettings(chunk_entities=2)
    bulk = writer.OnlineWriter(table, _view(), client, settings=settings)
    # Chunks of two entities, event times out of order across chunks: driver 1 comes
    # back older in the third chunk (its first chunk done by then) and in the fourth
    # (the third still in flight, or not).
    rows = [
        _row(1, 50, 5.0),
        _row(2, 90, 9.0),
        _row(3, 10, 1.0),
        _row(4, 20, 2.0),
        _row(1, 30, 3.0),
        _row(5, 5, 0.5),
        _row(1, 40, 4.0),
        _row(6, 1, 0.1),
    ]

    result = bulk.write_bulk(rows)

    assert result == writer.OnlineWriteResult(entities=8, written=6, stale=2)
    assert _speed(table, 1) == 5.0
    assert [_speed(table, d) for d in (2, 3, 4, 5, 6)] == [9.0, 1.0, 2.0, 0.5, 0.1]
    # Older than what the chunks before wrote, yet never stored before this write:
    # only driver 1 (written by an earlier chunk) needed a read.
    assert set(read_keys) == {"driver_id:i:1/zone:s:SF%2FNorth"}
