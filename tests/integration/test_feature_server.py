"""The feature server for real: an in-process grpc.aio server on loopback, read through
the SDK's client, over moto's DynamoDB (items written in the online layout with boto3)
and over the in-memory store, with one suite run against both backends."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import grpc
import grpc.aio
import pytest
import pytest_asyncio
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
from featurekube.online import client, keys, layout, values
from featurekube_server import limits, metrics, plan, server, servicer
from featurekube_server.stores import base, dynamodb, memory
from featurekube_server.stores import writer as pushing

NOW = (time.time_ns() // 1000 // 1_000_000) * 1_000_000  # request time, whole seconds
DAY = 86_400_000_000
MINUTE = 60_000_000
REPO = Path(__file__).parents[2]


LIVE_SPEC = {
    "owner": "dispatch-platform@rides.example.com",
    "entities": [{"name": "driver_id", "type": "int64"}],
    "source": {"push": {"timestampField": "event_timestamp"}},
    "features": [
        {"name": "current_zone_id", "type": "int64"},
        {"name": "current_speed_kmh", "type": "float64"},
    ],
    "ttl": "2m",
    "materialization": {"online": True, "offline": True},
}


def plan_document(prefix: str, offline_uri: str | None = None) -> dict[str, Any]:
    return {
        "featureService": "eta-model",
        "namespace": "rides",
        "featureViews": [
            {
                "name": "driver-trip-stats",
                "namespace": "rides",
                "onlineTable": f"{prefix}stats",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "ttl": "1d",
                "features": [
                    {"name": "trips_30m", "source": "trips_30m", "type": "int64"},
                    {"name": "avg_speed_7d", "source": "avg_trip_speed_kmh_7d", "type": "float64"},
                    {"name": "last_zone", "source": "last_zone", "type": "string"},
                    {"name": "is_active", "source": "is_active", "type": "bool"},
                    {"name": "last_trip_at", "source": "last_trip_at", "type": "timestamp"},
                    {"name": "embedding", "source": "embedding", "type": "float64_array"},
                ],
                # Requests for all of these read whole items, others a projection.
                "storedFeatures": [
                    "trips_30m",
                    "avg_trip_speed_kmh_7d",
                    "last_zone",
                    "is_active",
                    "last_trip_at",
                    "embedding",
                ],
            },
            {
                "name": "driver-zone",
                "namespace": "rides",
                "onlineTable": f"{prefix}zone",
                "entities": [
                    {"name": "zone", "type": "string"},
                    {"name": "driver_id", "type": "int64"},
                ],
                "features": [{"name": "zone_rank", "source": "rank", "type": "int64"}],
                "storedFeatures": ["rank"],
            },
            {
                "name": "driver-location-live",
                "namespace": "rides",
                "onlineTable": f"{prefix}live",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "ttl": "2m",
                "features": [
                    {"name": "current_zone_id", "source": "current_zone_id", "type": "int64"}
                ],
                "push": {"spec": LIVE_SPEC, "offlineUri": offline_uri},
            },
        ],
        "requestData": [{"name": "trip_distance_km", "type": "float64"}],
        "transformations": [
            {
                "name": "naive_eta_min",
                "type": "float64",
                "expression": "trip_distance_km / NULLIF(avg_speed_7d, 0) * 60",
            },
            {"name": "huge", "type": "int64", "expression": "trips_30m * 4611686018427387904"},
        ],
    }


STATS_FEATURES = [
    "trips_30m",
    "avg_speed_7d",
    "last_zone",
    "is_active",
    "last_trip_at",
    "embedding",
]


def stats_item(driver_id: int, event_time: int, **features: Any) -> dict[str, Any]:
    types = {
        "trips_30m": "int64",
        "avg_trip_speed_kmh_7d": "float64",
        "last_zone": "string",
        "is_active": "bool",
        "last_trip_at": "timestamp",
        "embedding": "float64_array",
    }
    item = {
        layout.ENTITY_KEY: {
            "S": keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": driver_id})
        },
        layout.EVENT_TIME: {"N": str(event_time)},
        layout.CREATED_TIME: {"N": str(event_time)},
    }
    for name, value in features.items():
        attribute = values.to_attribute(types[name], value)
        if attribute is not None:
            item[name] = attribute
    return item


# --- backends ------------------------------------------------------------------------


@dataclass
class Backend:
    """A store of one kind, with its tables made, and how to put items into it."""

    name: str
    store: Any
    put_items: Callable[[str, Sequence[dict[str, Any]]], None]
    writer: base.PushWriter | None


def _create_tables(names: Sequence[str]) -> None:
    dynamo = boto3.client("dynamodb")
    for name in names:
        dynamo.create_table(**layout.table_definition(name, {"test": "feature-server"}))
    for name in names:
        dynamo.get_waiter("table_exists").wait(TableName=name)


def _put_with_boto3(table: str, items: Sequence[dict[str, Any]]) -> None:
    dynamo = boto3.client("dynamodb")
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
        answer = dynamo.batch_write_item(RequestItems={table: batch})
        while answer.get("UnprocessedItems"):
            answer = dynamo.batch_write_item(RequestItems=answer["UnprocessedItems"])


@pytest.fixture
def document(table_prefix: str, s3_prefix: str) -> dict[str, Any]:
    return plan_document(table_prefix, f"{s3_prefix}rides/driver-location-live/")


@pytest.fixture
def serving(document: dict[str, Any]) -> plan.ServingPlan:
    return plan.parse_plan(document)


@pytest_asyncio.fixture(params=["dynamodb", "memory"])
async def backend(
    request: pytest.FixtureRequest, serving: plan.ServingPlan, platform: Any
) -> AsyncIterator[Backend]:
    tables = [v.online_table for v in serving.feature_views]
    if request.param == "memory":
        store = memory.MemoryStore()
        for table in tables:
            store.create_table(table)

        def put(table: str, items: Sequence[dict[str, Any]]) -> None:
            for item in items:
                store.put_item(table, item)

        yield Backend("memory", store, put, store)
        return
    await asyncio.to_thread(_create_tables, tables)
    async with dynamodb.DynamoDBStore() as dynamo_store:
        yield Backend("dynamodb", dynamo_store, _put_with_boto3, pushing.WritePathPusher())


@contextlib.asynccontextmanager
async def running(
    serving: plan.ServingPlan,
    store: Any,
    *,
    writer: base.PushWriter | None = None,
    clock: Callable[[], int] | None = None,
    settings: servicer.ServingSettings | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[tuple[server.FeatureServer, str]]:
    feature_server = server.FeatureServer(
        serving,
        store,
        writer=writer,
        settings=settings,
        clock=clock or (lambda: NOW),
        health_interval=0.1,
    )
    port = await feature_server.start("127.0.0.1:0")
    try:
        if wait_ready:
            await asyncio.wait_for(feature_server.ready.wait(), 30)
        yield feature_server, f"127.0.0.1:{port}"
    finally:
        await feature_server.stop(0)


async def call(target: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call the SDK's (blocking) client from a thread, as an application would."""

    def run() -> Any:
        with client.OnlineClient(target) as online:
            return getattr(online, method)(*args, **kwargs)

    return await asyncio.to_thread(run)


# --- one suite, every backend --------------------------------------------------------


@pytest.mark.asyncio
async def test_every_status_every_value_type_and_ttl_boundary(
    backend: Backend, serving: plan.ServingPlan
) -> None:
    stats = serving.feature_views[0].online_table
    last_trip = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    backend.put_items(
        stats,
        [
            stats_item(
                1,
                NOW - MINUTE,
                trips_30m=3,
                avg_trip_speed_kmh_7d=0.1,
                last_zone="SF/North",
                is_active=True,
                last_trip_at=last_trip,
                embedding=[1.5, -2.0],
            ),
            stats_item(2, NOW - DAY, trips_30m=4),  # exactly ttl old: still present
            stats_item(3, NOW - DAY - 1, trips_30m=5),  # one microsecond too old
            stats_item(5, NOW),  # stored, every feature null
        ],
    )
    async with running(serving, backend.store) as (_, target):
        result = await call(
            target,
            "get_online_features",
            [{"driver_id": i} for i in (1, 2, 3, 4, 5)],
            features=STATS_FEATURES,
            include_event_times=True,
        )

    present, absent, old = (
        client.FeatureStatus.PRESENT,
        client.FeatureStatus.NOT_FOUND,
        client.FeatureStatus.OUTSIDE_MAX_AGE,
    )
    assert result.to_dict() == {
        "driver_id": [1, 2, 3, 4, 5],
        "trips_30m": [3, 4, None, None, None],
        "avg_speed_7d": [0.1, None, None, None, None],
        "last_zone": ["SF/North", None, None, None, None],
        "is_active": [True, None, None, None, None],
        "last_trip_at": [last_trip, None, None, None, None],
        "embedding": [[1.5, -2.0], None, None, None, None],
    }
    assert result.statuses["trips_30m"] == [present, present, old, absent, present]
    assert result.event_times is not None
    micros = dt.timedelta(microseconds=1)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert result.event_times["trips_30m"] == [
        epoch + (NOW - MINUTE) * micros,
        epoch + (NOW - DAY) * micros,
        epoch + (NOW - DAY - 1) * micros,
        None,
        epoch + NOW * micros,
    ]
    table = result.to_arrow(statuses=True)
    assert str(table.schema.field("last_trip_at").type) == "timestamp[us, tz=UTC]"
    assert table["trips_30m__status"].to_pylist()[2] == "OUTSIDE_MAX_AGE"


@pytest.mark.asyncio
async def test_composite_keys(backend: Backend, serving: plan.ServingPlan) -> None:
    zone = serving.feature_views[1]
    key = keys.encode_entity_key(zone.key_types, {"zone": "SF/N", "driver_id": 7})
    backend.put_items(
        zone.online_table,
        [{layout.ENTITY_KEY: {"S": key}, layout.EVENT_TIME: {"N": "0"}, "rank": {"N": "2"}}],
    )
    async with running(serving, backend.store) as (_, target):
        result = await call(
            target,
            "get_online_features",
            columns={"driver_id": [7, 7, 8], "zone": ["SF/N", "SF", "SF/N"]},
            features=["zone_rank"],
        )
    assert result.values["zone_rank"] == [2, None, None]


@pytest.mark.asyncio
async def test_more_than_a_batch_of_keys_with_duplicates(
    backend: Backend, serving: plan.ServingPlan
) -> None:
    stats = serving.feature_views[0].online_table
    backend.put_items(stats, [stats_item(i, NOW, trips_30m=i) for i in range(0, 250, 2)])
    driver_ids = [i % 250 for i in range(400)]  # 250 distinct keys, 150 repeats
    async with running(serving, backend.store) as (_, target):
        result = await call(
            target, "get_online_features", columns={"driver_id": driver_ids}, features=["trips_30m"]
        )
    assert result.values["trips_30m"] == [i if i % 2 == 0 else None for i in driver_ids]


@pytest.mark.asyncio
async def test_transformations_and_their_per_request_failures(
    backend: Backend, serving: plan.ServingPlan
) -> None:
    stats = serving.feature_views[0].online_table
    backend.put_items(
        stats,
        [
            stats_item(1, NOW, trips_30m=1, avg_trip_speed_kmh_7d=30.0),
            stats_item(2, NOW, trips_30m=2, avg_trip_speed_kmh_7d=0.0),
        ],
    )
    async with running(serving, backend.store) as (_, target):
        result = await call(
            target,
            "get_online_features",
            columns={"driver_id": [1, 2, 3]},
            features=["naive_eta_min"],
            request_data={"trip_distance_km": 5},
        )
        assert result.values["naive_eta_min"] == [10.0, None, None]
        assert result.statuses["naive_eta_min"][2] == client.FeatureStatus.NOT_FOUND
        with pytest.raises(client.InvalidRequestError) as failed:
            await call(target, "get_online_features", columns={"driver_id": [2]}, features=["huge"])
        assert "huge (trips_30m * 4611686018427387904) failed on these values" in str(failed.value)
        # The server carries on.
        again = await call(
            target, "get_online_features", columns={"driver_id": [1]}, features=["huge"]
        )
        assert again.values["huge"] == [4611686018427387904]


@pytest.mark.asyncio
async def test_requests_that_cannot_be_served_answer_invalid_argument(
    backend: Backend, serving: plan.ServingPlan
) -> None:
    settings = servicer.ServingSettings(max_rows=50)
    async with running(serving, backend.store, settings=settings) as (_, target):
        cases: list[tuple[dict[str, Any], type[client.FeatureServerError], str]] = [
            (
                {"features": ["trips_31m"]},
                client.InvalidRequestError,
                "unknown feature 'trips_31m'",
            ),
            (
                {"columns": {"driver_id": ["1001"]}, "features": ["trips_30m"]},
                client.InvalidRequestError,
                "join key driver_id is int64, but the request sent string values",
            ),
            (
                {"columns": {"driver_id": [1]}, "features": ["zone_rank"]},
                client.InvalidRequestError,
                "missing join key zone (string)",
            ),
            (
                {"columns": {"driver_id": list(range(51))}, "features": ["trips_30m"]},
                client.InvalidRequestError,
                "51 entity rows in one request; this server takes at most 50",
            ),
            (
                {"feature_service": "pricing"},
                client.InvalidRequestError,
                "serves feature service rides/eta-model, not 'pricing'",
            ),
        ]
        for arguments, error, message in cases:
            arguments.setdefault("columns", {"driver_id": [1]})
            with pytest.raises(error) as refused:
                await call(target, "get_online_features", **arguments)
            assert message in str(refused.value)
            assert refused.value.code in ("INVALID_ARGUMENT", "NOT_FOUND")


@pytest.mark.asyncio
async def test_push_validates_rows_naming_row_and_column(
    backend: Backend, serving: plan.ServingPlan
) -> None:
    async with running(serving, backend.store, writer=backend.writer) as (_, target):
        good = {
            "driver_id": [1, 2],
            "event_timestamp": [dt.datetime.fromtimestamp(NOW / 1_000_000, dt.UTC)] * 2,
            "current_zone_id": [5, None],
            "current_speed_kmh": [10.5, 3.0],
        }
        bad = {**good, "driver_id": [1, None]}
        with pytest.raises(client.InvalidRequestError) as refused:
            await call(target, "push", "driver-location-live", bad)
        assert "row 1, column driver_id: null" in str(refused.value)
        wrong = {**good, "current_zone_id": ["a", "b"]}
        with pytest.raises(client.InvalidRequestError, match="column current_zone_id is a feature"):
            await call(target, "push", "driver-location-live", wrong)
        with pytest.raises(client.InvalidRequestError, match="does not serve feature view"):
            await call(target, "push", "driver-location", good)
        # Event times that would pin a value forever, or that are no time at all.
        future = {**good, "event_timestamp": [dt.datetime(2200, 1, 1, tzinfo=dt.UTC)] * 2}
        with pytest.raises(client.InvalidRequestError, match="ahead of this server's clock"):
            await call(target, "push", "driver-location-live", future)
        before = {**good, "event_timestamp": [dt.datetime(1969, 7, 20, tzinfo=dt.UTC)] * 2}
        with pytest.raises(client.InvalidRequestError, match="before 1970"):
            await call(target, "push", "driver-location-live", before)
        assert await call(target, "push", "driver-location-live", good) == 2
        # An older row for driver 1 is not served: the newer value stays.
        older = {
            **good,
            "event_timestamp": [good["event_timestamp"][0] - dt.timedelta(seconds=5)] * 2,
            "current_zone_id": [99, 99],
        }
        assert await call(target, "push", "driver-location-live", older) == 2
        result = await call(
            target,
            "get_online_features",
            columns={"driver_id": [1, 2]},
            features=["current_zone_id"],
        )
    assert result.values["current_zone_id"] == [5, None]
    assert result.statuses["current_zone_id"] == [client.FeatureStatus.PRESENT] * 2
    push = serving.feature_views[2].push
    if backend.name == "dynamodb" and push is not None and push.offline_uri:
        # Appended offline too, both pushes, as the materialization job appends.
        import deltalake

        from featurekube.writer import offline

        uri = push.offline_uri
        table = deltalake.DeltaTable(uri, storage_options=offline.storage_options_for(uri))
        assert table.to_pyarrow_table().num_rows == 4


@pytest.mark.asyncio
async def test_many_concurrent_clients(backend: Backend, serving: plan.ServingPlan) -> None:
    stats = serving.feature_views[0].online_table
    backend.put_items(stats, [stats_item(i, NOW, trips_30m=i) for i in range(20)])
    async with running(serving, backend.store) as (_, target):

        def client_loop(offset: int) -> list[list[int]]:
            answers = []
            with client.OnlineClient(target) as online:
                for i in range(15):
                    ids = [(offset + i + j) % 20 for j in range(5)]
                    result = online.get_online_features(
                        columns={"driver_id": ids}, features=["trips_30m"]
                    )
                    assert result.values["trips_30m"] == ids
                    answers.append(ids)
            return answers

        done = await asyncio.gather(*(asyncio.to_thread(client_loop, n) for n in range(8)))
    assert sum(len(d) for d in done) == 8 * 15


# --- DynamoDB only -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_ten_thousand_row_request(serving: plan.ServingPlan, platform: Any) -> None:
    stats = serving.feature_views[0].online_table
    await asyncio.to_thread(_create_tables, [v.online_table for v in serving.feature_views])
    await asyncio.to_thread(
        _put_with_boto3, stats, [stats_item(i, NOW, trips_30m=i) for i in range(0, 5000)]
    )
    driver_ids = list(range(10_000))
    async with dynamodb.DynamoDBStore() as store, running(serving, store) as (_, target):
        started = time.perf_counter()
        result = await call(
            target,
            "get_online_features",
            columns={"driver_id": driver_ids},
            features=["trips_30m"],
            timeout=60,
        )
        elapsed = time.perf_counter() - started
    assert result.values["trips_30m"] == [i if i < 5000 else None for i in driver_ids]
    assert elapsed < 60


@pytest.mark.asyncio
async def test_the_deadline_bounds_the_store_reads(
    serving: plan.ServingPlan, platform: Any
) -> None:
    await asyncio.to_thread(_create_tables, [v.online_table for v in serving.feature_views])
    async with dynamodb.DynamoDBStore() as store, running(serving, store) as (_, target):
        started = time.perf_counter()
        with pytest.raises(client.DeadlineExceededError):
            await call(
                target,
                "get_online_features",
                columns={"driver_id": list(range(5000))},
                features=["trips_30m"],
                timeout=0.05,
            )
        assert time.perf_counter() - started < 2
        # Served well within its deadline otherwise.
        result = await call(
            target,
            "get_online_features",
            columns={"driver_id": [1]},
            features=["trips_30m"],
            timeout=5,
        )
        assert result.statuses["trips_30m"] == [client.FeatureStatus.NOT_FOUND]


def _sample(server_metrics: metrics.ServerMetrics, name: str, **labels: str) -> float:
    for family in server_metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@dataclass
class _SlowStore:
    """A store whose reads take ``delay`` seconds and that records being cancelled."""

    inner: memory.MemoryStore
    delay: float
    cancelled: int = 0
    completed: int = 0

    async def read(self, reads: Sequence[base.TableRead]) -> dict[str, Mapping[str, base.Item]]:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.completed += 1
        return await self.inner.read(reads)

    async def check(self, tables: Sequence[str]) -> None:
        await self.inner.check(tables)


def _slow_store(serving: plan.ServingPlan, delay: float) -> _SlowStore:
    inner = memory.MemoryStore()
    for view in serving.feature_views:
        inner.create_table(view.online_table)
    return _SlowStore(inner, delay)


@dataclass
class _HeldStore:
    """A store whose reads wait until ``go`` is set."""

    inner: memory.MemoryStore
    go: asyncio.Event

    async def read(self, reads: Sequence[base.TableRead]) -> dict[str, Mapping[str, base.Item]]:
        await self.go.wait()
        return await self.inner.read(reads)

    async def check(self, tables: Sequence[str]) -> None:
        await self.inner.check(tables)


@pytest.mark.asyncio
async def test_requests_past_the_bytes_in_flight_wait_their_turn_or_are_refused() -> None:
    serving = plan.parse_plan(plan_document("busy-"))
    inner = memory.MemoryStore()
    for view in serving.feature_views:
        inner.create_table(view.online_table)
    store = _HeldStore(inner, asyncio.Event())
    request = pb.GetOnlineFeaturesRequest(features=pb.FeatureList(names=["trips_30m"]))
    request.entities["driver_id"].int64_values.values.append(1)
    size = request.ByteSize()
    # Room for one request in flight and one waiting.
    settings = servicer.ServingSettings(max_in_flight_bytes=size, max_waiting_bytes=size)
    async with running(serving, store, settings=settings) as (feature_server, target):
        gate = feature_server.servicer.gate

        def get() -> Any:
            return call(
                target, "get_online_features", columns={"driver_id": [1]}, features=["trips_30m"]
            )

        async def until(condition: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline, "the gate did not get there in 30 s"
                await asyncio.sleep(0.01)

        first = asyncio.create_task(get())
        await until(lambda: gate.in_flight > 0)
        second = asyncio.create_task(get())
        await until(lambda: gate.waiting > 0)
        with pytest.raises(client.FeatureServerError) as refused:
            await get()
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        assert "the server is busy" in str(refused.value)
        assert "retry with backoff" in str(refused.value)

        store.go.set()
        for answered in await asyncio.gather(first, second):
            assert answered.statuses["trips_30m"] == [client.FeatureStatus.NOT_FOUND]
        assert (gate.in_flight, gate.waiting) == (0, 0)
        # What does not parse is the caller's to fix, and holds nothing.
        code, details = await _send_bytes(target, b"\xff\xff\xff")
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "Error parsing message" in details
        assert gate.in_flight == 0


@pytest.mark.asyncio
async def test_a_passed_deadline_cancels_the_store_read(serving: plan.ServingPlan) -> None:
    store = _slow_store(serving, delay=2.0)
    async with running(serving, store) as (feature_server, target):
        started = time.perf_counter()
        with pytest.raises(client.DeadlineExceededError):
            await call(
                target,
                "get_online_features",
                columns={"driver_id": [1]},
                features=["trips_30m"],
                timeout=0.2,
            )
        for _ in range(20):
            if store.cancelled:
                break
            await asyncio.sleep(0.05)
        ended = {
            code: _sample(
                feature_server.metrics, "featurekube_server_request_seconds_count", code=code
            )
            for code in ("DEADLINE_EXCEEDED", "CANCELLED")
        }
    assert time.perf_counter() - started < 1.5
    assert store.cancelled == 1
    assert store.completed == 0
    assert sum(ended.values()) == 1


@pytest.mark.asyncio
async def test_graceful_shutdown_drains_requests_in_flight(serving: plan.ServingPlan) -> None:
    store = _slow_store(serving, delay=0.5)
    feature_server = server.FeatureServer(serving, store, clock=lambda: NOW, health_interval=0.1)
    port = await feature_server.start("127.0.0.1:0")
    target = f"127.0.0.1:{port}"
    await asyncio.wait_for(feature_server.ready.wait(), 10)
    in_flight = asyncio.create_task(
        call(target, "get_online_features", columns={"driver_id": [1]}, features=["trips_30m"])
    )
    await asyncio.sleep(0.25)  # the request is inside its half-second store read now
    assert not in_flight.done()
    await feature_server.stop(grace=5)
    result = await in_flight
    assert result.statuses["trips_30m"] == [client.FeatureStatus.NOT_FOUND]
    with pytest.raises(client.ServerUnavailableError):
        await call(
            target,
            "get_online_features",
            columns={"driver_id": [1]},
            features=["trips_30m"],
            timeout=1,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _moto(port: int) -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield moto
    finally:
        moto.stop()


async def _health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(answer.status)


@pytest.mark.asyncio
async def test_a_store_outage_answers_unavailable_quickly_and_recovers(
    serving: plan.ServingPlan, platform: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    tables = [v.online_table for v in serving.feature_views]
    settings = dynamodb.DynamoDBSettings(endpoint_url=endpoint, connect_timeout=0.5)
    async with (
        dynamodb.DynamoDBStore(settings) as store,
        running(serving, store, wait_ready=False) as (feature_server, target),
    ):
        # Nothing answers at the endpoint yet: loaded, but not serving.
        await asyncio.sleep(0.3)
        assert await _health(target) == health_pb2.HealthCheckResponse.NOT_SERVING
        with _moto(port):
            await asyncio.to_thread(_create_tables, tables)
            await asyncio.to_thread(_put_with_boto3, tables[0], [stats_item(1, NOW, trips_30m=3)])
            await asyncio.wait_for(feature_server.ready.wait(), 10)
            assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
            result = await call(
                target, "get_online_features", columns={"driver_id": [1]}, features=["trips_30m"]
            )
            assert result.values["trips_30m"] == [3]
        started = time.perf_counter()
        with pytest.raises(client.ServerUnavailableError) as down:
            await call(
                target, "get_online_features", columns={"driver_id": [1]}, features=["trips_30m"]
            )
        assert time.perf_counter() - started < 2
        assert f"DynamoDB at {endpoint} did not answer" in str(down.value)
        # Still SERVING: an outage of the store is no reason to restart every replica.
        assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
        with _moto(port):
            result = await call(
                target, "get_online_features", columns={"driver_id": [1]}, features=["trips_30m"]
            )
            assert result.values["trips_30m"] == [3]


@pytest.mark.asyncio
async def test_health_and_reflection(serving: plan.ServingPlan) -> None:
    store = _slow_store(serving, delay=0)
    async with running(serving, store) as (_, target):
        assert await _health(target) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            answers = [a async for a in stub.ServerReflectionInfo(iter([request]))]
    services = {s.name for s in answers[0].list_services_response.service}
    assert "featurekube.serving.v1.FeatureServing" in services
    assert "grpc.health.v1.Health" in services


# --- the process, as the operator's Deployment runs it ------------------------------


def _start_process(
    plan_path: Path, port: int, metrics_port: int, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurekube_server",
            "--plan",
            str(plan_path),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env=os.environ.copy(),
    )


async def _wait_serving(target: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(grpc.aio.AioRpcError):
            if await _health(target) == health_pb2.HealthCheckResponse.SERVING:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the server did not become SERVING:\n{log.read_text()}")


@pytest.mark.asyncio
async def test_the_server_process_serves_reports_metrics_and_picks_up_a_new_plan(
    document: dict[str, Any], serving: plan.ServingPlan, tmp_path: Path
) -> None:
    tables = [v.online_table for v in serving.feature_views]
    await asyncio.to_thread(_create_tables, tables)
    await asyncio.to_thread(
        _put_with_boto3, tables[0], [stats_item(1, NOW, trips_30m=1, last_zone="north")]
    )
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(document))
    port, metrics_port = _free_port(), _free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"

    process = _start_process(plan_path, port, metrics_port, log)
    try:
        await _wait_serving(target, process, log)
        result = await call(
            target,
            "get_online_features",
            columns={"driver_id": [1], "zone": ["north"]},
            feature_service="eta-model",
            request_data={"trip_distance_km": 1.0},
            timeout=10,
        )
        assert "last_zone" in result.values
        scraped = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
        )
        text = scraped.decode()
        assert (
            'featurekube_server_request_seconds_count{code="OK",feature_service="eta-model"' in text
        )
        assert (
            'featurekube_server_values_total{feature_service="eta-model",status="PRESENT"}' in text
        )
        # A new plan (one feature fewer) rolls the pods; the new process serves it.
        trimmed = copy.deepcopy(document)
        trimmed["featureViews"][0]["features"] = [
            f for f in trimmed["featureViews"][0]["features"] if f["name"] != "last_zone"
        ]
        plan_path.write_text(yaml.safe_dump(trimmed))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process = _start_process(plan_path, port, metrics_port, log)
        await _wait_serving(target, process, log)
        with pytest.raises(client.InvalidRequestError, match="unknown feature 'last_zone'"):
            await call(
                target,
                "get_online_features",
                columns={"driver_id": [1]},
                features=["last_zone"],
                timeout=10,
            )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    lines = [yaml.safe_load(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("message") == "serving" for line in lines)
    assert any(line.get("message") == "feature server stopped" for line in lines)


def _peak_mib(pid: int) -> float:
    """The process's resident memory high-water mark (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def _lookup_bytes(rows: int, zone_bytes: int, extra_ids: int = 0) -> bytes:
    """A request for every feature of ``rows`` entities, with zones of ``zone_bytes``
    bytes, and ``extra_ids`` more driver ids than rows; as bytes, to send as they are."""
    request = pb.GetOnlineFeaturesRequest(feature_service="eta-model")
    request.entities["driver_id"].int64_values.values.extend(range(-1, -rows - extra_ids - 1, -1))
    zones = [f"{i:09d}".ljust(zone_bytes, "z") for i in range(rows)]
    request.entities["zone"].string_values.values.extend(zones)
    request.request_data["trip_distance_km"].float64_values.values.extend([4.2] * rows)
    return request.SerializeToString()


async def _send_bytes(target: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        method = channel.unary_unary("/featurekube.serving.v1.FeatureServing/GetOnlineFeatures")
        try:
            await method(body, timeout=60)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.asyncio
async def test_requests_over_the_limit_are_refused_before_they_cost_memory(
    tmp_path: Path,
) -> None:
    document = plan_document("limits-")
    sizes = limits.estimate_request_bytes(plan.parse_plan(document), max_rows=10_000)
    limit = limits.derive_max_message_bytes(sizes)  # the server's default
    largest = _lookup_bytes(10_000, zone_bytes=1024)  # every value at its limit
    over = _lookup_bytes(10_000, zone_bytes=1400)
    huge = _lookup_bytes(10_000, zone_bytes=0, extra_ids=6_200_000)  # 63 MB, as issue 15's
    assert len(largest) <= sizes.largest < limit < len(over) < 2 * limit < len(huge)

    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(document))
    port = _free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = _start_process(plan_path, port, 0, log, "--store", "memory")
    try:
        await _wait_serving(target, process, log)
        assert await _send_bytes(target, _lookup_bytes(10, 16)) == (grpc.StatusCode.OK, "")
        started = _peak_mib(process.pid)

        code, details = await _send_bytes(target, huge)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in details
        code, details = await _send_bytes(target, over)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"this server takes at most {limit}" in details
        assert "send fewer rows per request" in details
        # Refused before they were decoded: 63 MB took 445 MiB to decode and refuse.
        assert _peak_mib(process.pid) - started < 64

        answers = await asyncio.gather(*(_send_bytes(target, largest) for _ in range(4)))
        assert answers == [(grpc.StatusCode.OK, "")] * 4
        # Decoded in turn: within the pod's default memory limit, 512 MiB.
        assert _peak_mib(process.pid) - started < 200
        assert _peak_mib(process.pid) < 512
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.asyncio
async def test_featurekube_get_prints_a_table(
    serving: plan.ServingPlan, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from featurekube.cli import get

    store = _slow_store(serving, delay=0)
    for item in [stats_item(1001, NOW, trips_30m=1, avg_trip_speed_kmh_7d=30.0)]:
        store.inner.put_item(serving.feature_views[0].online_table, item)
    parser = argparse.ArgumentParser()
    get.register(parser.add_subparsers())
    async with running(serving, store) as (_, target):
        args = parser.parse_args(
            [
                "get",
                "--target",
                target,
                "--features",
                "trips_30m,naive_eta_min",
                "--entity",
                "driver_id=1001",
                "--entity",
                "driver_id=7",
                "--request",
                "trip_distance_km=5",
            ]
        )
        assert await asyncio.to_thread(args.run, args) == 0
        shown = capsys.readouterr().out
        args = parser.parse_args(
            [
                "get",
                "eta-model",
                "--target",
                target,
                "--features",
                "trips_30m",
                "--entity",
                "driver_id=1001",
                "-o",
                "json",
            ]
        )
        assert await asyncio.to_thread(args.run, args) == 0
        printed = yaml.safe_load(capsys.readouterr().out)
    lines = shown.splitlines()
    assert lines[0] == "driver_id=1001"
    assert lines[1].split() == ["FEATURE", "VALUE", "STATUS", "EVENT", "TIME"]
    assert lines[2].split()[:3] == ["trips_30m", "1", "PRESENT"]
    assert lines[3].split()[:3] == ["naive_eta_min", "10.0", "PRESENT"]
    assert "driver_id=7" in lines
    assert lines[-1].split() == ["naive_eta_min", "-", "NOT_FOUND", "-"]
    assert printed[0]["features"]["trips_30m"]["value"] == 1
