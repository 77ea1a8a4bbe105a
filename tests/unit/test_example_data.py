"""The example's raw-data functions (``examples/generate_data.py``) are deterministic
and make data with the awkward parts real data has: late rows, ties on event time
broken by the created time, missing tips, idle days, a daily rhythm; and only
microsecond UTC timestamps. No I/O but a local temporary directory."""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    """``examples/generate_data.py``, imported once."""
    name = "featurekube_examples_generate_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / "generate_data.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def tables(gen: ModuleType) -> dict[str, pa.Table]:
    return gen.make_tables(gen.Settings(days=3, drivers=40, riders=150, seed=5))


def test_the_same_seed_makes_the_same_tables_and_another_seed_others(gen: ModuleType) -> None:
    settings = gen.Settings(days=2, drivers=10, riders=30, seed=1)

    first, again = gen.make_tables(settings), gen.make_tables(settings)
    other = gen.make_tables(gen.Settings(days=2, drivers=10, riders=30, seed=2))

    assert all(first[name].equals(again[name]) for name in first)
    assert not any(first[name].equals(other[name]) for name in first)


def test_every_table_has_its_schema_and_only_microsecond_utc_timestamps(
    gen: ModuleType, tables: dict[str, pa.Table]
) -> None:
    assert set(tables) == set(gen.SCHEMAS) == {"trips", "drivers", "riders"}
    for name, table in tables.items():
        assert table.schema.equals(gen.SCHEMAS[name]), name
        assert table.num_rows > 0, name
        stamps = [f for f in table.schema if pa.types.is_timestamp(f.type)]
        assert stamps, name
        for field in stamps:
            assert field.type == pa.timestamp("us", tz="UTC"), (name, field)


def test_the_written_files_keep_microseconds(gen: ModuleType, tmp_path: Path) -> None:
    assert gen.main(["--out", str(tmp_path), "--days", "1", "--drivers", "5", "--riders", "9"]) == 0

    files = sorted(tmp_path.glob("*/part-*.parquet"))
    assert {f.parent.name for f in files} == set(gen.SCHEMAS)
    for path in files:
        schema = pq.read_schema(path)
        for field in schema:
            assert not pa.types.is_timestamp(field.type) or field.type.unit == "us", path
        logical = pq.ParquetFile(path).schema.column(schema.get_field_index("event_timestamp"))
        assert '"timeUnit":"microseconds"' in logical.logical_type.to_json()


def test_trips_happen_in_the_period_with_unique_ids_and_known_keys(
    gen: ModuleType, tables: dict[str, pa.Table]
) -> None:
    settings = gen.Settings(days=3, drivers=40, riders=150, seed=5)
    trips = tables["trips"].to_pylist()
    drivers = set(tables["drivers"].column("driver_id").to_pylist())
    riders = set(tables["riders"].column("rider_id").to_pylist())

    assert len({t["trip_id"] for t in trips}) == len(trips)
    assert all(settings.start_time <= t["event_timestamp"] < settings.end_time for t in trips)
    assert all(t["created_timestamp"] > t["event_timestamp"] for t in trips)
    assert {t["driver_id"] for t in trips} <= drivers
    assert {t["rider_id"] for t in trips if t["status"] == "completed"} <= riders
    completed = [t for t in trips if t["status"] == "completed"]
    assert all(t["pickup_timestamp"] < t["event_timestamp"] for t in completed)
    assert all(t["distance_km"] > 0 and t["duration_min"] > 0 for t in completed)
    assert all(t["fare_usd"] >= 6 for t in completed)
    assert {t["status"] for t in trips} == {
        "completed",
        "cancelled_by_rider",
        "cancelled_by_driver",
    }


def test_some_trip_rows_arrive_hours_late(gen: ModuleType, tables: dict[str, pa.Table]) -> None:
    tiny = gen.make_trips(gen.Settings(days=1, drivers=2, riders=2))
    assert tiny.num_rows > 0
    for table in (tables["trips"], tiny):
        delays = [
            t["created_timestamp"] - t["event_timestamp"]
            for t in table.select(["event_timestamp", "created_timestamp"]).to_pylist()
        ]
        late = [d for d in delays if d > dt.timedelta(hours=1)]
        assert late
        assert len(late) < len(delays) / 5 or len(delays) < 10


def test_late_rows_land_in_the_file_of_the_day_they_arrived(
    gen: ModuleType, tables: dict[str, pa.Table]
) -> None:
    trips = tables["trips"]

    parts = gen.split_by_day(trips, "created_timestamp")

    assert [day for day, _ in parts] == sorted(day for day, _ in parts)
    assert sum(part.num_rows for _, part in parts) == trips.num_rows
    for day, part in parts:
        assert {c.date() for c in part.column("created_timestamp").to_pylist()} == {day}
    last_event_day = max(trips.column("event_timestamp").to_pylist()).date()
    assert parts[-1][0] > last_event_day


def test_driver_exports_tie_on_event_time_and_differ_in_created_time_and_values(
    gen: ModuleType, tables: dict[str, pa.Table]
) -> None:
    for table in (tables["drivers"], gen.make_drivers(gen.Settings(days=1, drivers=1))):
        groups: dict[tuple[int, dt.datetime], list[dict[str, object]]] = defaultdict(list)
        for row in table.to_pylist():
            groups[row["driver_id"], row["event_timestamp"]].append(row)
        ties = [rows for rows in groups.values() if len(rows) > 1]

        assert ties
        for rows in ties:
            assert len({r["created_timestamp"] for r in rows}) == len(rows)
            values = {(r["rating"], r["vehicle_class"]) for r in rows}
            assert len(values) > 1


def test_drivers_skip_days_and_some_sign_up_during_the_period(gen: ModuleType) -> None:
    settings = gen.Settings(days=7, drivers=100, riders=300, seed=7)
    trips = gen.make_trips(settings).to_pylist()
    drivers = gen.make_drivers(settings).to_pylist()
    days: dict[int, set[dt.date]] = defaultdict(set)
    for trip in trips:
        days[trip["driver_id"]].add(trip["event_timestamp"].date())

    assert any(0 < len(active) < settings.days for active in days.values())
    new = {d["driver_id"] for d in drivers if d["signup_date"] > settings.start}
    assert new
    for driver_id in new:
        signup = min(d["event_timestamp"] for d in drivers if d["driver_id"] == driver_id)
        first_trip = min(
            (t["event_timestamp"] for t in trips if t["driver_id"] == driver_id), default=None
        )
        assert first_trip is None or first_trip > signup
    # Until a day after sign-up, a new driver has no rating.
    assert any(d["rating"] is None for d in drivers)


def test_test_accounts_are_in_the_driver_table_only(
    gen: ModuleType, tables: dict[str, pa.Table]
) -> None:
    drivers = tables["drivers"].to_pylist()
    flagged = {d["driver_id"] for d in drivers if d["is_test_account"]}

    assert flagged == set(gen.TEST_ACCOUNT_IDS)
    assert not flagged & set(tables["trips"].column("driver_id").to_pylist())


def test_tips_are_missing_for_cash_and_sometimes_otherwise(tables: dict[str, pa.Table]) -> None:
    completed = [t for t in tables["trips"].to_pylist() if t["status"] == "completed"]
    cash = [t for t in completed if t["payment_type"] == "cash"]
    other = [t for t in completed if t["payment_type"] != "cash"]

    assert cash
    assert all(t["tip_usd"] is None for t in cash)
    assert any(t["tip_usd"] is None for t in other)
    assert any(t["tip_usd"] == 0 for t in other)
    assert any((t["tip_usd"] or 0) > 0 for t in other)


def test_trip_volume_and_speed_follow_the_day(tables: dict[str, pa.Table]) -> None:
    completed = [t for t in tables["trips"].to_pylist() if t["status"] == "completed"]
    by_hour = Counter(t["event_timestamp"].hour for t in completed)

    def speed(hours: range) -> float:
        trips = [t for t in completed if t["event_timestamp"].hour in hours]
        return sum(t["distance_km"] / t["duration_min"] * 60 for t in trips) / len(trips)

    evening_peak = sum(by_hour[h] for h in range(17, 20))
    small_hours = sum(by_hour[h] for h in range(2, 5))
    assert evening_peak > 3 * small_hours
    assert speed(range(17, 19)) < speed(range(0, 5))


def test_rider_snapshots_count_only_trips_ended_before_them(
    gen: ModuleType, tables: dict[str, pa.Table]
) -> None:
    completed = [t for t in tables["trips"].to_pylist() if t["status"] == "completed"]
    snapshots: dict[int, dict[dt.datetime, int]] = defaultdict(dict)
    for row in tables["riders"].to_pylist():
        assert row["event_timestamp"].time() == dt.time()
        assert row["created_timestamp"] > row["event_timestamp"]
        snapshots[row["rider_id"]][row["event_timestamp"]] = row["lifetime_trips"]

    trips_of: dict[int, list[dt.datetime]] = defaultdict(list)
    for trip in completed:
        trips_of[trip["rider_id"]].append(trip["event_timestamp"])
    for rider_id, counts in snapshots.items():
        for before, after in itertools.pairwise(sorted(counts)):
            between = sum(1 for ended in trips_of[rider_id] if before <= ended < after)
            assert counts[after] - counts[before] == between, rider_id
    nulls = Counter(
        column for row in tables["riders"].to_pylist() for column, v in row.items() if v is None
    )
    assert set(nulls) <= {"avg_tip_rate", "rating"}


def test_settings_refuse_an_empty_population(gen: ModuleType) -> None:
    with pytest.raises(ValueError, match="drivers must be at least 1"):
        gen.Settings(drivers=0)
    assert gen.main(["--out", "unused", "--days", "0"]) == 2
