"""Tiles without stores: built from events, merged, and combined, they give exactly the
rows the aggregation kernel computes from the events themselves."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import statistics
from typing import Any

# pyarrow's first conversion of Python values imports pandas, seconds on a busy machine:
# done here, at collection, rather than within a test's time limit.
import pandas  # type: ignore[import-untyped]  # noqa: F401
import pyarrow as pa
import pytest

from featurekube.materialize import aggregate, moments, plan, tiles
from featurekube.spec import v1alpha1

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
BIG = 2**53 + 1
HOUR_DT = dt.timedelta(hours=1)


def _view(aggregations: list[dict[str, Any]], interval: str = "10m") -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "trips", "namespace": "rides"},
            "spec": {
                "owner": "team@example.com",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": "s3://bucket/raw/trips/"}},
                "aggregationInterval": interval,
                "aggregations": aggregations,
            },
        }
    )


EVERY_FUNCTION = [
    {"name": "n_30m", "column": "trip_id", "function": "count", "window": "30m"},
    {"name": "n_2d", "column": "fare", "function": "count", "window": "2d"},
    {"name": "riders_1d", "column": "rider_id", "function": "count_distinct", "window": "1d"},
    {"name": "zones_2d", "column": "zone_name", "function": "count_distinct", "window": "2d"},
    {"name": "fare_2d", "column": "fare", "function": "sum", "window": "2d", "type": "float64"},
    {"name": "mean_fare_1h", "column": "fare", "function": "mean", "window": "1h"},
    {"name": "sd_fare_1d", "column": "fare", "function": "stddev", "window": "1d"},
    {"name": "min_fare_2d", "column": "fare", "function": "min", "window": "2d", "type": "float64"},
    {"name": "max_zone_1d", "column": "zone", "function": "max", "window": "1d", "type": "int64"},
    {"name": "last_zone_2d", "column": "zone", "function": "last", "window": "2d", "type": "int64"},
    {
        "name": "first_name",
        "column": "zone_name",
        "function": "min",
        "window": "2d",
        "type": "string",
    },
    {
        "name": "last_name",
        "column": "zone_name",
        "function": "last",
        "window": "1h",
        "type": "string",
    },
    {"name": "tips_1d", "column": "tip", "function": "sum", "window": "1d", "type": "int64"},
    {"name": "mean_tip_2d", "column": "tip", "function": "mean", "window": "2d"},
    {"name": "sd_tip_2d", "column": "tip", "function": "stddev", "window": "2d"},
    {"name": "paid_1d", "column": "paid", "function": "max", "window": "1d", "type": "bool"},
]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema(
        [
            ("driver_id", pa.int64()),
            (plan.EVENT_MICROS, pa.int64()),
            (plan.CREATED_MICROS, pa.int64()),
            ("trip_id", pa.int64()),
            ("rider_id", pa.int64()),
            ("fare", pa.float64()),
            ("zone", pa.int64()),
            ("zone_name", pa.string()),
            ("tip", pa.int64()),
            ("paid", pa.bool_()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _events(rng: random.Random, start: int, end: int, n: int, drivers: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        # Whole minutes: events land on boundaries, and tie, now and then.
        moment = rng.randrange(start, end) // MINUTE * MINUTE
        rows.append(
            {
                "driver_id": rng.randrange(drivers),
                plan.EVENT_MICROS: moment,
                plan.CREATED_MICROS: moment + rng.choice([0, 0, MINUTE]),
                "trip_id": 100 + i,
                "rider_id": rng.choice([1, 2, 3, None]),
                "fare": rng.choice([round(rng.uniform(5, 40), 2), None, 0.1, 0.2, 1e-3]),
                "zone": rng.choice([1, 2, 3, 4, None]),
                "zone_name": rng.choice(["north", "south", None, "east"]),
                "tip": rng.choice([BIG, -BIG, 2**62, 7, None]),
                "paid": rng.choice([True, False, None]),
            }
        )
    return rows


def _direct(events: pa.Table, agg: plan.AggregationPlan) -> list[dict[str, Any]]:
    """The kernel over each driver's events, as the job computes without tiles."""
    out = []
    for driver in sorted(set(events.column("driver_id").to_pylist())):
        mine = events.filter(pa.compute.equal(events.column("driver_id"), driver))
        for row in aggregate.aggregate_entity(mine, agg).to_pylist():
            out.append({"driver_id": driver} | row)
    return out


def _tiled(
    events: pa.Table,
    agg: plan.AggregationPlan,
    stored: pa.Table | None = None,
    stored_keys: set[tiles.TileKey] | None = None,
) -> tuple[list[dict[str, Any]], pa.Table, tiles.Resolution]:
    """The rows from tiles, as the job computes them: the resolution's intervals from
    ``events``, the rest from ``stored``; and every tile the run made."""
    assert agg.first_boundary is not None and agg.last_boundary is not None
    layout = tiles.layout_for(agg, ["driver_id"], events.schema)
    assert layout is not None
    needed = tiles.needed_tiles(agg, layout.sizes)
    resolution = tiles.resolve(
        needed, (agg.first_boundary, agg.last_boundary), stored_keys or set(), layout.sizes
    )
    times = events.column(plan.EVENT_MICROS).to_pylist()
    ends = set(resolution.from_source)
    keep = [-(-t // agg.interval) * agg.interval in ends for t in times]
    if stored is None:
        stored = layout.schema().empty_table()
    else:
        stored = stored.filter(
            pa.array(
                [
                    (s, e) in resolution.stored
                    for s, e in zip(
                        stored.column(tiles.TILE_SIZE).to_pylist(),
                        stored.column(tiles.TILE_END).to_pylist(),
                        strict=True,
                    )
                ]
            )
        )
    everything, made = tiles.complete(
        events.filter(pa.array(keep)), resolution.from_source, stored, resolution.built, layout
    )
    rows = tiles.combine(everything, agg, layout).to_pylist()
    rows.sort(key=lambda r: (r["driver_id"], r["event_timestamp"]))
    return rows, made, resolution


def _agg(view: v1alpha1.FeatureView, start: dt.datetime, end: dt.datetime) -> plan.AggregationPlan:
    agg = plan.plan_materialization(view, start, end).aggregation
    assert agg is not None
    return agg


def _same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Equal, NaN included: the tiles' values are the kernel's, bit for bit."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for name in x:
            if isinstance(x[name], float) and math.isnan(x[name]):
                assert isinstance(y[name], float) and math.isnan(y[name]), name
            else:
                assert x[name] == y[name], (name, x, y)


# -- decomposition ---------------------------------------------------------------------------


def test_a_window_is_covered_by_whole_tiles_and_few_of_them() -> None:
    sizes = tiles.tile_sizes(10 * MINUTE)
    t = plan.to_micros(T0) + 7 * HOUR + 40 * MINUTE

    span = tiles.decompose(t - 30 * DAY, t, sizes)

    covered = sorted((end - size, end) for size, end in span)
    assert covered[0][0] == t - 30 * DAY and covered[-1][1] == t
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert all(end % size == 0 for size, end in span)
    assert len(span) <= 2 * (5 + 23) + 29
    assert tiles.decompose(t, t, sizes) == []


def test_coarse_tiles_are_made_of_the_next_smaller_size() -> None:
    sizes = tiles.tile_sizes(10 * MINUTE)
    day = plan.to_micros(T0) + DAY

    hours = tiles.children((DAY, day), sizes)

    assert hours == [(HOUR, day - DAY + HOUR * (i + 1)) for i in range(24)]
    assert tiles.children((HOUR, day), sizes)[0] == (10 * MINUTE, day - 50 * MINUTE)


# -- tiles against the kernel ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_tiles_combined_equal_the_kernel_over_the_events(seed: int) -> None:
    rng = random.Random(seed)
    start = T0 + dt.timedelta(days=2, hours=rng.randrange(24), minutes=rng.choice([0, 5, 10]))
    end = start + dt.timedelta(hours=rng.choice([1, 7, 20]))
    view = _view(EVERY_FUNCTION)
    agg = _agg(view, start, end)
    lo, hi = plan.to_micros(start) - 2 * DAY - 20 * MINUTE, plan.to_micros(end)
    events = _table(_events(rng, lo, hi, 600, drivers=4))

    tiled, _, _ = _tiled(events, agg)

    direct = _direct(events, agg)
    assert len(direct) > 10
    _same_rows(tiled, direct)


def test_stored_tiles_give_the_rows_of_tiles_computed_now_and_a_window_reads_only_its_own() -> None:
    rng = random.Random(7)
    view = _view(EVERY_FUNCTION)
    begin = T0 + dt.timedelta(days=3)
    lo = plan.to_micros(begin) - 2 * DAY - 20 * MINUTE
    events = _table(_events(rng, lo, plan.to_micros(begin) + 2 * HOUR, 500, drivers=3))
    first = _agg(view, begin, begin + HOUR_DT)
    _, made, resolution = _tiled(events, first)
    assert resolution.from_source[0] == first.first_boundary - 2 * DAY  # type: ignore[operator]
    stored_keys = set(
        zip(
            made.column(tiles.TILE_SIZE).to_pylist(),
            made.column(tiles.TILE_END).to_pylist(),
            strict=True,
        )
    ) | {(10 * MINUTE, e) for e in resolution.from_source}

    second = _agg(view, begin + HOUR_DT, begin + 2 * HOUR_DT)
    rows, _, again = _tiled(events, second, made, stored_keys)

    assert second.first_boundary is not None and second.last_boundary is not None
    own = range(second.first_boundary, second.last_boundary + 1, 10 * MINUTE)
    assert again.from_source == list(own)
    _same_rows(rows, _direct(events, second))


def test_a_stale_coarse_tile_is_rebuilt_from_its_intervals() -> None:
    sizes = tiles.tile_sizes(10 * MINUTE)
    day = plan.to_micros(T0) + DAY
    hours = set(tiles.children((DAY, day), sizes))
    stored = {(DAY, day)} | hours

    # A re-run of the day's last interval: the day and its last hour are stale.
    resolution = tiles.resolve({(DAY, day)}, (day, day), stored, sizes)

    assert resolution.built == [(HOUR, day), (DAY, day)]
    assert resolution.stored == (hours - {(HOUR, day)}) | {
        (10 * MINUTE, day - i * 10 * MINUTE) for i in range(1, 6)
    } - {(10 * MINUTE, e) for e in resolution.from_source}
    assert resolution.from_source[-1] == day


# -- the exact merges -------------------------------------------------------------------------


def test_int64_sums_beyond_2_to_the_53_merge_exactly() -> None:
    view = _view(
        [
            {"name": "s", "column": "tip", "function": "sum", "window": "2d", "type": "int64"},
            {"name": "m", "column": "tip", "function": "mean", "window": "2d"},
            {"name": "sd", "column": "tip", "function": "stddev", "window": "2d"},
            {"name": "hi", "column": "tip", "function": "max", "window": "2d", "type": "int64"},
        ]
    )
    start = plan.to_micros(T0 + dt.timedelta(days=2))
    tips = [BIG, 1, BIG + 2, 2**62, 2**62]  # the last two wrap an int64 sum, as numpy does
    rows: list[dict[str, Any]] = [
        {"driver_id": 1, plan.EVENT_MICROS: start - i * 7 * HOUR, plan.CREATED_MICROS: 0, "tip": v}
        for i, v in enumerate(tips)
    ]
    agg = _agg(view, T0 + dt.timedelta(days=2), T0 + dt.timedelta(days=2, minutes=10))

    (row,) = _tiled(_table(rows), agg)[0]

    total = sum(tips)
    assert row["s"] == (total + 2**63) % 2**64 - 2**63
    assert row["m"] == total / 5
    assert row["sd"] == math.sqrt(_var(tips))
    assert row["hi"] == 2**62


def _var(values: list[int]) -> Any:
    from fractions import Fraction

    n = len(values)
    return Fraction(n * sum(v * v for v in values) - sum(values) ** 2, n * (n - 1))


def test_nulls_ties_and_a_single_value() -> None:
    view = _view(
        [
            {"name": "n", "column": "fare", "function": "count", "window": "1h"},
            {"name": "sd", "column": "fare", "function": "stddev", "window": "1h"},
            {"name": "last", "column": "zone", "function": "last", "window": "1h", "type": "int64"},
            {"name": "mean", "column": "fare", "function": "mean", "window": "1h"},
        ]
    )
    at = plan.to_micros(T0) + 5 * MINUTE
    rows: list[dict[str, Any]] = [
        {"driver_id": 1, plan.EVENT_MICROS: at, plan.CREATED_MICROS: 3, "fare": 2.5, "zone": 4},
        # Equal in event and created time: the greatest value is last.
        {"driver_id": 1, plan.EVENT_MICROS: at, plan.CREATED_MICROS: 3, "fare": None, "zone": 9},
        {"driver_id": 1, plan.EVENT_MICROS: at, plan.CREATED_MICROS: 3, "fare": None, "zone": 6},
        # Later, but null: ignored by last.
        {"driver_id": 1, plan.EVENT_MICROS: at + 20 * MINUTE, plan.CREATED_MICROS: 0},
    ]
    agg = _agg(view, T0, T0 + dt.timedelta(hours=2))

    tiled = _tiled(_table(rows), agg)[0]

    first = tiled[0]
    assert (first["n"], first["sd"], first["last"], first["mean"]) == (1, None, 9, 2.5)
    assert [r["latest_event_timestamp"] for r in tiled[:2]] == [at, at + 20 * MINUTE]
    assert tiled[-1]["n"] == 0 and tiled[-1]["last"] is None and tiled[-1]["mean"] is None
    _same_rows(tiled, _direct(_table(rows), agg))


def test_float_sums_are_exactly_rounded_whatever_the_split() -> None:
    values = [1e16, 1.0, -1e16, 0.1, 0.2, 0.3, 1e-3] * 3
    whole = moments.of_floats(values)
    split = moments.of_floats(values[:5]).merge(moments.of_floats(values[5:]))

    assert whole == split
    assert whole.float_sum() == math.fsum(values)
    assert moments.Moments.from_text(whole.to_text()) == whole
    with_nan = moments.of_floats([1.0, math.nan])
    assert math.isnan(with_nan.float_sum()) and math.isnan(with_nan.sample_stddev(2) or 0.0)
    assert moments.of_floats([1.0]).sample_stddev(1) is None
    assert moments.of_floats([1.0, 2.0, 4.0]).sample_stddev(3) == statistics.stdev([1.0, 2.0, 4.0])


def test_a_column_tiles_cannot_keep_falls_back_to_the_events() -> None:
    view = _view(
        [
            {
                "name": "v",
                "column": "vec",
                "function": "last",
                "window": "1h",
                "type": "float64_array",
            }
        ]
    )
    agg = _agg(view, T0, T0 + HOUR_DT)
    schema = pa.schema([("driver_id", pa.int64()), ("vec", pa.list_(pa.float64()))])

    assert tiles.layout_for(agg, ["driver_id"], schema) is None
    counted = _view([{"name": "v", "column": "vec", "function": "count", "window": "1h"}])
    assert tiles.layout_for(_agg(counted, T0, T0 + HOUR_DT), ["driver_id"], schema) is not None
