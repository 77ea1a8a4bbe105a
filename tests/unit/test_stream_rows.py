"""A stream micro-batch's events in Arrow: which the stream owns, and one row per
(keys, event time) by the batch windows' rule."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import pyarrow as pa
import pytest

from featurekube.materialize import stream_rows

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
EVENT, CREATED = stream_rows.EVENT, stream_rows.CREATED


def _table(rows: list[dict[str, Any]], features: dict[str, pa.DataType]) -> pa.Table:
    schema = pa.schema([("driver_id", pa.int64()), *features.items(), (EVENT, TS), (CREATED, TS)])
    return pa.Table.from_pylist(rows, schema=schema)


def _reference(rows: list[dict[str, Any]], features: list[str]) -> dict[tuple[Any, ...], Any]:
    """Each (key, event time)'s winner, by the rule written out: the greatest created
    time, then the greatest feature values in order (Spark's order of values)."""
    best: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    winners: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        group = (row["driver_id"], row[EVENT])
        rank = tuple(stream_rows.spark_order(row[n]) for n in [CREATED, *features])
        if group not in best or rank > best[group]:
            best[group], winners[group] = rank, row
    return {g: _comparable(r, features) for g, r in winners.items()}


def _comparable(row: dict[str, Any], features: list[str]) -> tuple[Any, ...]:
    """A row's created time and features with NaN spelled out (NaN != NaN)."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return (row[CREATED], *(plain(row[n]) for n in features))


def _float(draw: random.Random) -> float | None:
    return draw.choice([None, math.nan, -1.5, 0.0, 2.0, math.inf])


@pytest.mark.parametrize("seed", range(20))
def test_deduplicated_keeps_the_winner_the_rule_names_for_every_key_and_event_time(
    seed: int,
) -> None:
    draw = random.Random(seed)
    with_arrays = seed % 2 == 1
    features: dict[str, pa.DataType] = {"fare": pa.float64(), "zone": pa.string()}
    if with_arrays:  # an array between two scalars: Python ranks the ties
        features = {"fare": pa.float64(), "path": pa.list_(pa.float64()), "zone": pa.string()}
    rows = []
    for _ in range(draw.randint(2, 60)):
        row: dict[str, Any] = {
            "driver_id": draw.randint(1, 3),
            "fare": _float(draw),
            "zone": draw.choice([None, "east", "north", "é"]),
            EVENT: T0 + dt.timedelta(seconds=draw.randint(0, 2)),
            CREATED: T0 + dt.timedelta(seconds=draw.randint(0, 1)),
        }
        if with_arrays:
            row["path"] = draw.choice(
                [None, [], [1.0], [1.0, None], [1.0, math.nan], [2.0], [None]]
            )
        rows.append(row)
    names = list(features)
    table = _table(rows, features)
    declared = {"fare": "float64", "zone": "string", "path": "float64_array"}
    types = [(n, declared[n]) for n in names]

    found = stream_rows.deduplicated(table, ["driver_id"], types).to_pylist()

    groups = [(r["driver_id"], r[EVENT]) for r in found]
    assert groups == sorted(set(groups)), "one row per (key, event time), in their order"
    assert {g: _comparable(r, names) for g, r in zip(groups, found, strict=True)} == _reference(
        rows, names
    )


def test_deduplicated_ranks_a_nan_above_every_number_and_a_null_below() -> None:
    rows = [{"driver_id": 1, "fare": f, EVENT: T0, CREATED: T0} for f in [None, 3.0, math.inf, 1.0]]
    table = _table(rows, {"fare": pa.float64()})

    assert stream_rows.deduplicated(table, ["driver_id"], [("fare", "float64")])[
        "fare"
    ].to_pylist() == [math.inf]
    with_nan = _table([*rows, {**rows[0], "fare": math.nan}], {"fare": pa.float64()})
    (kept,) = stream_rows.deduplicated(with_nan, ["driver_id"], [("fare", "float64")])[
        "fare"
    ].to_pylist()
    assert math.isnan(kept)


def test_the_later_created_time_wins_before_any_feature() -> None:
    rows = [
        {"driver_id": 1, "fare": 9.0, EVENT: T0, CREATED: T0},
        {"driver_id": 1, "fare": 1.0, EVENT: T0, CREATED: T0 + dt.timedelta(seconds=1)},
        {"driver_id": 2, "fare": 5.0, EVENT: T0, CREATED: T0},
    ]
    found = stream_rows.deduplicated(
        _table(rows, {"fare": pa.float64()}), ["driver_id"], [("fare", "float64")]
    )
    assert found.column("fare").to_pylist() == [1.0, 5.0]


def test_owned_events_are_keyed_and_from_the_start_on_or_after_a_split() -> None:
    rows: list[dict[str, Any]] = [
        {"driver_id": 1, "fare": 1.0, EVENT: T0, CREATED: T0},
        {"driver_id": 1, "fare": 1.0, EVENT: T0 - dt.timedelta(seconds=1), CREATED: T0},
        {"driver_id": None, "fare": 1.0, EVENT: T0, CREATED: T0},
        {"driver_id": 2, "fare": 1.0, EVENT: None, CREATED: T0},
    ]
    table = _table(rows, {"fare": pa.float64()})

    keyed = stream_rows.keyed(table, ["driver_id"])
    assert keyed.to_pylist() == [True, True, False, False]
    assert stream_rows.owned(table, ["driver_id"], T0, after=False).to_pylist() == [
        True,
        False,
        False,
        False,
    ]
    assert stream_rows.owned(table, ["driver_id"], T0, after=True).to_pylist() == [False] * 4
    assert stream_rows.false_count(keyed) == 2


def test_appended_micros_leave_out_records_without_a_kafka_timestamp() -> None:
    column = pa.chunked_array([pa.array([T0, None], TS)])
    assert stream_rows.appended_micros(column) == [int(T0.timestamp() * 1_000_000)]


def test_newest_keeps_each_entitys_latest_event_of_the_deduplicated_rows() -> None:
    rows = [
        {"driver_id": d, "fare": float(s), EVENT: T0 + dt.timedelta(seconds=s), CREATED: T0}
        for d, s in [(2, 5), (1, 3), (2, 1), (1, 4), (3, 0), (1, 4)]
    ]
    table = stream_rows.deduplicated(
        _table(rows, {"fare": pa.float64()}), ["driver_id"], [("fare", "float64")]
    )

    found = stream_rows.newest(table, ["driver_id"])

    assert found.column("driver_id").to_pylist() == [1, 2, 3]
    assert found.column("fare").to_pylist() == [4.0, 5.0, 0.0]
