"""The feature server's limits on a request: the size a plan needs, the per-value
limits, the checks made before a request is decoded, and the gate on bytes in flight."""

from __future__ import annotations

import asyncio
import doctest
from typing import Any

import pytest

from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb
from featurekube_server import admission, errors, limits, metrics, plan, servicer
from featurekube_server.stores import memory

MIB = 1024 * 1024

PLAN: dict[str, Any] = {
    "featureService": "eta-model",
    "namespace": "rides",
    "featureViews": [
        {
            "name": "driver-zone",
            "onlineTable": "zone",
            "entities": [
                {"name": "zone", "type": "string"},
                {"name": "driver_id", "type": "int64"},
            ],
            "features": [{"name": "zone_rank", "source": "rank", "type": "int64"}],
        },
        {
            "name": "driver-location-live",
            "onlineTable": "live",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "features": [{"name": "current_zone_id", "type": "int64"}],
            "push": {
                "timestampField": "event_timestamp",
                "features": [
                    {"name": "current_zone_id", "type": "int64"},
                    {"name": "heading", "type": "float64"},
                    {"name": "is_moving", "type": "bool"},
                    {"name": "last_stop", "type": "string"},
                    {"name": "embedding", "type": "float64_array"},
                ],
            },
        },
    ],
    "requestData": [
        {"name": "trip_distance_km", "type": "float64"},
        {"name": "pickup_at", "type": "timestamp"},
    ],
}


def _largest_column(value_type: str, rows: int, string_bytes: int, array_length: int) -> pb.Values:
    """A column of ``rows`` values, each as large as the limits allow, one of them null
    (so the null flags are sent too)."""
    column = pb.Values(nulls=[True] + [False] * (rows - 1))
    if value_type in ("int64", "float64"):
        # float64 columns may come as int64 values, which take more bytes.
        column.int64_values.values.extend([-1] * rows)
    elif value_type == "timestamp":
        column.timestamp_values.micros.extend([-1] * rows)
    elif value_type == "bool":
        column.bool_values.values.extend([True] * rows)
    elif value_type == "string":
        column.string_values.values.extend(["é" * (string_bytes // 2)] * rows)
    else:
        for _ in range(rows):
            column.float64_array_values.arrays.add().values.extend([0.5] * array_length)
    return column


@pytest.mark.parametrize(("rows", "string_bytes", "array_length"), [(1, 8, 1), (100, 1024, 64)])
def test_the_estimate_bounds_the_largest_requests_tightly(
    rows: int, string_bytes: int, array_length: int
) -> None:
    serving = plan.parse_plan(PLAN)
    sizes = limits.estimate_request_bytes(
        serving, max_rows=rows, max_string_bytes=string_bytes, max_array_length=array_length
    )

    get = pb.GetOnlineFeaturesRequest(include_event_times=True)
    get.features.names.extend(serving.feature_names)
    for name, key_type in serving.join_keys.items():
        get.entities[name].CopyFrom(_largest_column(key_type, rows, string_bytes, array_length))
    for field in serving.request_data:
        get.request_data[field.name].CopyFrom(
            _largest_column(field.type, rows, string_bytes, array_length)
        )
    push = pb.PushRequest(feature_view="driver-location-live", namespace="rides")
    view = serving.feature_views[1]
    assert view.push is not None
    typed = {"driver_id": "int64", "event_timestamp": "timestamp"}
    typed |= {f.source: f.type for f in view.push.features}
    for name, value_type in typed.items():
        push.columns[name].CopyFrom(_largest_column(value_type, rows, string_bytes, array_length))

    for estimate, request in (
        (sizes.get_online_features, get),
        (sizes.push["rides/driver-location-live"], push),
    ):
        actual = request.ByteSize()
        assert actual <= estimate <= actual + 1024
    assert sizes.largest == max(sizes.get_online_features, *sizes.push.values())


def test_the_default_limit_follows_the_plan_with_headroom_between_floor_and_ceiling() -> None:
    serving = plan.parse_plan(PLAN)

    small = limits.estimate_request_bytes(serving, max_rows=10)
    usual = limits.estimate_request_bytes(serving, max_rows=5_000, max_array_length=64)
    huge = limits.estimate_request_bytes(serving, max_rows=10_000)

    assert limits.derive_max_message_bytes(small) == limits.MIN_MESSAGE_BYTES
    assert limits.MIN_MESSAGE_BYTES < usual.largest < limits.MAX_DEFAULT_MESSAGE_BYTES
    assert limits.derive_max_message_bytes(usual) == int(usual.largest * 1.25)
    # 10,000 arrays of 2,048 doubles would be 160 MiB: the ceiling holds.
    assert huge.largest > 100 * MIB
    assert limits.derive_max_message_bytes(huge) == limits.MAX_DEFAULT_MESSAGE_BYTES


def test_a_plan_without_strings_or_arrays_needs_little() -> None:
    only_numbers = {**PLAN, "featureViews": PLAN["featureViews"][1:2], "requestData": []}
    only_numbers["featureViews"] = [
        {**only_numbers["featureViews"][0], "push": None},
    ]
    sizes = limits.estimate_request_bytes(plan.parse_plan(only_numbers), max_rows=10_000)

    assert sizes.push == {}
    assert sizes.get_online_features < 200_000  # 10,000 int64 keys and their null flags


def test_the_module_s_examples_run() -> None:
    assert doctest.testmod(limits).failed == 0


def _servicer(**settings: Any) -> servicer.FeatureServingServicer:
    serving = plan.parse_plan(PLAN)
    return servicer.FeatureServingServicer(
        serving,
        memory.MemoryStore(),
        metrics.ServerMetrics("eta-model"),
        servicer.ServingSettings(**settings),
    )


def test_the_servicer_takes_the_derived_limit_unless_one_is_set() -> None:
    derived = _servicer(max_rows=100)
    assert derived.max_message_bytes == limits.derive_max_message_bytes(derived.request_sizes)
    assert _servicer(max_rows=100, max_message_bytes=12345).max_message_bytes == 12345


def _settings(**overrides: Any) -> servicer.ServingSettings:
    return servicer.ServingSettings(
        **{"max_rows": 3, "max_string_bytes": 8, "max_array_length": 2, **overrides}
    )


def test_too_many_values_are_refused_before_any_column_is_decoded() -> None:
    columns = {
        "driver_id": pb.Values(int64_values=pb.Int64List(values=[1, 2])),
        "zone": pb.Values(nulls=[True] * 4),
    }

    with pytest.raises(
        errors.TooManyRowsError,
        match=r"4 entity rows in one request; this server takes at most 3: split the request "
        r"\(entities\[zone\] has 4 values\)",
    ):
        servicer._columns(columns, "entities", _settings())


def test_values_over_their_limit_are_refused_naming_column_and_row() -> None:
    arrays = pb.Values()
    for length in (2, 3):
        arrays.float64_array_values.arrays.add().values.extend([1.0] * length)
    with pytest.raises(errors.InvalidColumnError, match=r"request_data\[v\], row 1: an array of 3"):
        servicer._columns({"v": arrays}, "request_data", _settings())

    # The limit is in UTF-8 bytes: four 2-byte characters fit in 8, five do not.
    fits = pb.Values(string_values=pb.StringList(values=["abc", "éééé"]))
    assert servicer._columns({"s": fits}, "columns", _settings())["s"].values == ["abc", "éééé"]
    over = pb.Values(string_values=pb.StringList(values=["abc", "ééééé"]), nulls=[True, False])
    with pytest.raises(errors.InvalidColumnError, match=r"columns\[s\], row 1: a string of 10 b"):
        servicer._columns({"s": over}, "columns", _settings())


@pytest.mark.asyncio
async def test_the_gate_admits_what_fits_and_queues_the_rest_in_order() -> None:
    gate = admission.ByteGate(capacity=10, queue_capacity=10)
    assert await gate.acquire(6)
    admitted: list[str] = []

    async def wait(name: str, size: int) -> None:
        assert await gate.acquire(size)
        admitted.append(name)

    first = asyncio.create_task(wait("first", 5))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait("second", 5))
    await asyncio.sleep(0)
    # A small request fits beside the one in flight: it does not queue behind them.
    assert await gate.acquire(2)
    assert (gate.in_flight, gate.waiting, admitted) == (8, 10, [])
    # The queue is full: refused at once.
    assert not await gate.acquire(3)

    gate.release(6)
    await asyncio.sleep(0)
    assert admitted == ["first"]  # 2 + 5 in flight: no room for the second yet
    gate.release(2)
    await asyncio.gather(first, second)
    assert admitted == ["first", "second"]
    assert (gate.in_flight, gate.waiting) == (10, 0)


@pytest.mark.asyncio
async def test_a_request_over_capacity_runs_alone_and_a_cancelled_wait_gives_up_its_place() -> None:
    gate = admission.ByteGate(capacity=10, queue_capacity=100)
    assert await gate.acquire(5)
    big = asyncio.create_task(gate.acquire(50))
    await asyncio.sleep(0)
    medium = asyncio.create_task(gate.acquire(6))
    await asyncio.sleep(0)
    assert not big.done() and not medium.done()

    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    gate.release(5)
    assert await medium  # no longer behind the big one
    assert (gate.in_flight, gate.waiting) == (6, 0)

    gate.release(6)
    assert await gate.acquire(50)  # alone, nothing else in flight
    small = asyncio.create_task(gate.acquire(1))
    await asyncio.sleep(0)
    assert not small.done()
    gate.release(50)
    assert await small
