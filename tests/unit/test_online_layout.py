"""The online store's key and value encodings: deterministic, unambiguous, exact."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from featurekube.online import keys, layout, values


def test_int_and_string_keys_never_collide() -> None:
    as_int = keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": 1001})
    as_str = keys.encode_entity_key({"driver_id": "string"}, {"driver_id": "1001"})

    assert as_int != as_str


def test_composite_keys_are_ordered_by_name_whatever_the_input_order() -> None:
    types = {"zone": "string", "driver_id": "int64"}

    one = keys.encode_entity_key(types, {"zone": "SF", "driver_id": 7})
    two = keys.encode_entity_key(dict(reversed(types.items())), {"driver_id": 7, "zone": "SF"})

    assert one == two == "driver_id:i:7/zone:s:SF"


@pytest.mark.parametrize(("a", "b"), [("a/b", "a%2Fb"), ("x:s:y", "x"), ("", " ")])
def test_string_values_cannot_forge_separators(a: str, b: str) -> None:
    types = {"k": "string"}

    assert keys.encode_entity_key(types, {"k": a}) != keys.encode_entity_key(types, {"k": b})


@pytest.mark.parametrize(
    "key_types",
    [{"driver_id": "int64"}, {"zone": "string"}, {"zone": "string", "driver_id": "int64"}],
)
def test_keys_encoded_a_column_at_a_time_equal_those_of_one_row(key_types: dict[str, str]) -> None:
    columns: dict[str, list[object]] = {
        "driver_id": [7, -1, 0, 2**63 - 1, 7],
        "zone": ["SF/N", "", "a b%c", "ü", "SF/N"],
    }
    rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    encoded = keys.encode_entity_keys(key_types, columns)

    assert encoded == [keys.encode_entity_key(key_types, row) for row in rows]


def test_a_wrong_key_type_or_missing_key_is_refused() -> None:
    with pytest.raises(TypeError, match="driver_id is int64"):
        keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": "7"})
    with pytest.raises(TypeError, match="int64"):
        keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": True})
    with pytest.raises(KeyError, match="zone"):
        keys.encode_entity_key({"driver_id": "int64", "zone": "string"}, {"driver_id": 7})


@pytest.mark.parametrize(
    ("value_type", "value"),
    [
        ("int64", -(2**63)),
        ("int64", 2**63 - 1),
        ("float64", 0.1),
        ("float64", 1e-310),
        ("float64", -1.7976931348623157e308),
        ("float64", math.inf),
        ("string", "naïve / café"),
        ("bool", False),
        ("timestamp", dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)),
        ("float64_array", [0.1, -2.5, 1e300]),
    ],
)
def test_values_round_trip_exactly(value_type: str, value: object) -> None:
    assert values.from_attribute(value_type, values.to_attribute(value_type, value)) == value


def test_nan_round_trips_and_null_is_absent() -> None:
    assert math.isnan(values.from_attribute("float64", values.to_attribute("float64", math.nan)))
    assert values.to_attribute("int64", None) is None
    assert values.from_attribute("string", None) is None


def test_naive_timestamps_are_utc() -> None:
    naive = values.to_attribute("timestamp", dt.datetime(1970, 1, 1, 0, 0, 1))

    assert naive == {"N": "1000000"}


def test_the_write_condition_orders_by_event_then_created_time() -> None:
    condition = layout.newer_condition()["ConditionExpression"]

    assert "event_time < :e" in condition and "created_time <= :c" in condition
