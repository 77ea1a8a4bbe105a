"""Raw sample data for the ride-hailing example feature repo.

Writes the three tables the example's batch feature views read, as parquet, one
directory each under ``--out`` (S3 or a local directory)::

    trips/    one row per trip request: completed or cancelled   -> driver-trip-stats
    drivers/  nightly export of driver profiles, with corrections -> driver-profile
    riders/   nightly snapshot of rider statistics               -> rider-features

Usage::

    python examples/generate_data.py --out s3://featurekube-demo/raw/ \\
        --start 2026-01-01 --days 7 --drivers 200 --riders 1000 --seed 7

The data is shaped like a real city's: trip volume follows the day (morning and
evening peaks, quiet nights), traffic slows trips at the peaks, drivers work shifts
and skip some days, some sign up during the period, cash trips and a few others have
no recorded tip, some trip rows arrive hours late (their ``created_timestamp`` is far
after their ``event_timestamp``), and some driver profiles are corrected after the
fact with a second row at the same event time and a later ``created_timestamp``.

Every timestamp is ``timestamp('us', 'UTC')``: Spark 4 refuses nanoseconds.

The functions that make the data are pure and deterministic for a seed: they take a
:class:`Settings` and return pyarrow Tables. Only :func:`main` does I/O, through
``pyarrow.fs``, which reads the standard AWS settings (``AWS_ENDPOINT_URL`` and
credentials) from the environment, so the same command reaches AWS and the local
platform's S3. Each table's files are named after the UTC day their rows were
created (``trips/part-2026-01-03.parquet``), so late rows land in a later file, as
they would in a real lake; running again replaces the files written before.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import math
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

__all__ = [
    "SCHEMAS",
    "TIMESTAMP",
    "Settings",
    "main",
    "make_drivers",
    "make_riders",
    "make_tables",
    "make_trips",
    "split_by_day",
]

UTC = dt.UTC
TIMESTAMP = pa.timestamp("us", tz="UTC")
"""The type of every timestamp column: microseconds, UTC."""

SCHEMAS: dict[str, pa.Schema] = {
    "trips": pa.schema(
        [
            ("trip_id", pa.int64()),
            ("driver_id", pa.int64()),
            ("rider_id", pa.int64()),
            # Drop-off time of a completed trip, cancellation time of a cancelled one.
            ("event_timestamp", TIMESTAMP),
            # When the row reached the lake; hours after the event for late rows.
            ("created_timestamp", TIMESTAMP),
            ("pickup_timestamp", TIMESTAMP),
            ("status", pa.string()),
            ("pickup_zone_id", pa.int64()),
            ("dropoff_zone_id", pa.int64()),
            ("distance_km", pa.float64()),
            ("duration_min", pa.float64()),
            ("fare_usd", pa.float64()),
            ("tip_usd", pa.float64()),
            ("payment_type", pa.string()),
            ("surge_multiplier", pa.float64()),
        ]
    ),
    "drivers": pa.schema(
        [
            ("driver_id", pa.int64()),
            # The time the profile is valid from: the nightly export, or sign-up.
            ("event_timestamp", TIMESTAMP),
            # A correction has the same event time and a later created time.
            ("created_timestamp", TIMESTAMP),
            ("rating", pa.float64()),
            ("signup_date", pa.date32()),
            ("vehicle_class", pa.string()),
            ("tier", pa.string()),
            ("is_test_account", pa.bool_()),
        ]
    ),
    "riders": pa.schema(
        [
            ("rider_id", pa.int64()),
            # The snapshot covers trips that ended before this instant (midnight UTC).
            ("event_timestamp", TIMESTAMP),
            ("created_timestamp", TIMESTAMP),
            ("lifetime_trips", pa.int64()),
            ("avg_tip_rate", pa.float64()),
            ("preferred_payment", pa.string()),
            ("rating", pa.float64()),
        ]
    ),
}
"""Table name (and directory under --out) -> its columns."""

FIRST_DRIVER_ID = 1001
FIRST_RIDER_ID = 500_001
FIRST_TRIP_ID = 10_000_001
TEST_ACCOUNT_IDS = (990_001, 990_002)
ZONES = 40
VEHICLE_CLASSES = {"SEDAN": 0.55, "SUV": 0.18, "HATCHBACK": 0.15, "ELECTRIC": 0.08, "VAN": 0.04}
PAYMENT_TYPES = {"card": 0.6, "wallet": 0.25, "cash": 0.1, "corporate": 0.05}
# Shift starts (hour of day, UTC) and how common they are.
SHIFTS = {6.5: 0.35, 10.5: 0.25, 16.5: 0.3, 21.0: 0.1}
LATE_ROW_SHARE = 0.02
CORRECTION_SHARE = 0.03
NEW_DRIVER_SHARE = 0.05

Row = dict[str, Any]
"""One row of a table being made, column name -> value."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to generate: the period, the population and the seed."""

    start: dt.date = dt.date(2026, 1, 1)
    """The first day of trips (UTC)."""
    days: int = 7
    """How many days of trips."""
    drivers: int = 200
    """Drivers in the city (two test accounts come on top, in the driver table only)."""
    riders: int = 1000
    """Riders in the city."""
    seed: int = 7
    """The same seed gives the same tables."""

    def __post_init__(self) -> None:
        for name in ("days", "drivers", "riders"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def start_time(self) -> dt.datetime:
        """Midnight UTC of the first day."""
        return dt.datetime.combine(self.start, dt.time(), tzinfo=UTC)

    @property
    def end_time(self) -> dt.datetime:
        """Midnight UTC after the last day: trips end before it."""
        return self.start_time + dt.timedelta(days=self.days)

    def rng(self, purpose: str) -> random.Random:
        """A random stream of its own for each purpose, so that changing how one table
        is made leaves the others as they were."""
        return random.Random(f"{self.seed}:{purpose}")


@dataclasses.dataclass(frozen=True)
class _Driver:
    driver_id: int
    signup: dt.datetime
    vehicle_class: str
    tier: str
    rating: float
    activity: float
    """Probability of driving on a given day."""
    shift_start_hour: float
    shift_hours: float
    speed_factor: float
    home_zone: int


@dataclasses.dataclass(frozen=True)
class _Rider:
    rider_id: int
    prior_trips: int
    """Trips taken before the period."""
    preferred_payment: str
    tip_propensity: float
    tip_rate: float
    """Tip as a share of the fare, when tipping."""
    rating: float
    weight: float
    """How often this rider rides, relative to the others."""


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _bump(hour: float, centre: float, width: float) -> float:
    """A bell around ``centre`` on the 24-hour clock."""
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-((distance / width) ** 2))


def _demand(hour: float) -> float:
    """Trip demand at an hour of the day, 0 (dead of night) to 1 (peak)."""
    peaks = 0.85 * _bump(hour, 8.5, 1.5) + 0.95 * _bump(hour, 18.0, 2.0)
    return _clamp(0.1 + peaks + 0.4 * _bump(hour, 23.0, 1.5), 0.0, 1.0)


def _speed_kmh(hour: float) -> float:
    """Typical door-to-door speed at an hour of the day: slow at rush hour."""
    congestion = max(_bump(hour, 8.5, 1.3), _bump(hour, 17.5, 1.8))
    night = _bump(hour, 3.0, 2.5)
    return 34.0 - 16.0 * congestion + 12.0 * night


def _hour(moment: dt.datetime) -> float:
    return moment.hour + moment.minute / 60


def _drivers(settings: Settings) -> list[_Driver]:
    rng = settings.rng("drivers")
    drivers = []
    for index in range(settings.drivers):
        if settings.days > 1 and rng.random() < NEW_DRIVER_SHARE:
            day = rng.randint(1, settings.days - 1)
            signup = settings.start_time + dt.timedelta(days=day, hours=rng.uniform(8, 18))
        else:
            signup = settings.start_time - dt.timedelta(days=rng.uniform(30, 9 * 365))
        vehicle_class = _pick(rng, VEHICLE_CLASSES)
        premium_odds = 0.35 if vehicle_class in ("SUV", "ELECTRIC") else 0.08
        activity = rng.choice((0.45, 0.75, 0.92))
        drivers.append(
            _Driver(
                driver_id=FIRST_DRIVER_ID + index,
                signup=signup,
                vehicle_class=vehicle_class,
                tier="premium" if rng.random() < premium_odds else "standard",
                rating=_clamp(rng.gauss(4.75, 0.15), 3.6, 5.0),
                activity=activity,
                shift_start_hour=float(rng.choices(list(SHIFTS), list(SHIFTS.values()))[0]),
                shift_hours=rng.uniform(4, 7) if activity < 0.5 else rng.uniform(6, 10),
                speed_factor=_clamp(rng.gauss(1.0, 0.08), 0.75, 1.25),
                home_zone=rng.randint(1, ZONES),
            )
        )
    return drivers


def _riders(settings: Settings) -> list[_Rider]:
    rng = settings.rng("riders")
    riders = []
    for index in range(settings.riders):
        new = rng.random() < 0.1
        riders.append(
            _Rider(
                rider_id=FIRST_RIDER_ID + index,
                prior_trips=0 if new else int(rng.lognormvariate(2.5, 1.1)) + 1,
                preferred_payment=_pick(rng, PAYMENT_TYPES),
                tip_propensity=rng.uniform(0.1, 0.9),
                tip_rate=rng.uniform(0.05, 0.22),
                rating=_clamp(rng.gauss(4.8, 0.15), 3.5, 5.0),
                weight=rng.lognormvariate(0.0, 1.0),
            )
        )
    return riders


def _shifts(settings: Settings, driver: _Driver, rng: random.Random) -> Iterator[dt.datetime]:
    """Start times of the driver's shifts: not before sign-up, not every day."""
    for day in range(settings.days):
        active = rng.random() < driver.activity
        start = settings.start_time + dt.timedelta(
            days=day, hours=driver.shift_start_hour + rng.gauss(0, 0.75)
        )
        if active and start >= driver.signup:
            yield start


def make_trips(settings: Settings) -> pa.Table:
    """Every trip request of the period, in event-time order; see ``SCHEMAS['trips']``.

    Completed trips are drop-offs; cancelled ones have no pick-up, distance or tip.
    At least one row arrives late (``created_timestamp`` hours after the event).
    """
    rng = settings.rng("trips")
    riders = _riders(settings)
    cumulative = list(itertools.accumulate(rider.weight for rider in riders))
    rows: list[Row] = []
    for driver in _drivers(settings):
        for shift_start in _shifts(settings, driver, rng):
            shift_end = shift_start + dt.timedelta(hours=driver.shift_hours)
            moment, zone = shift_start, driver.home_zone
            while True:
                # Waiting for the next request: short at the peaks, long at night.
                gap_min = rng.expovariate(1 / (3 + 30 * (1 - _demand(_hour(moment)))))
                moment += dt.timedelta(minutes=gap_min)
                if moment >= shift_end or moment >= settings.end_time:
                    break
                rider = rng.choices(riders, cum_weights=cumulative)[0]
                row = _trip(rng, driver, rider, moment, zone)
                if row["event_timestamp"] >= settings.end_time:
                    break
                rows.append(row)
                moment = row["event_timestamp"]
                zone = row["dropoff_zone_id"] or zone
    rows.sort(key=lambda r: (r["event_timestamp"], r["driver_id"]))
    for offset, row in enumerate(rows):
        row["trip_id"] = FIRST_TRIP_ID + offset
    if rows and not any(_is_late(row) for row in rows):
        late = rows[len(rows) // 2]
        late["created_timestamp"] = late["event_timestamp"] + dt.timedelta(hours=26)
    return pa.Table.from_pylist(rows, schema=SCHEMAS["trips"])


def _is_late(row: Row) -> bool:
    delay: dt.timedelta = row["created_timestamp"] - row["event_timestamp"]
    return delay > dt.timedelta(hours=1)


def _trip(
    rng: random.Random, driver: _Driver, rider: _Rider, requested: dt.datetime, zone: int
) -> Row:
    """One trip, requested at ``requested`` from ``zone``."""
    hour = _hour(requested)
    payment = rider.preferred_payment if rng.random() < 0.85 else _pick(rng, PAYMENT_TYPES)
    surge = 1.0
    if _demand(hour) > 0.8 and rng.random() < 0.25:
        surge = round(rng.uniform(1.2, 2.0), 1)
    status = "completed"
    draw = rng.random()
    if draw < 0.04:
        status = "cancelled_by_rider"
    elif draw < 0.06:
        status = "cancelled_by_driver"
    if status != "completed":
        waited = rng.uniform(1, 6)
        event = requested + dt.timedelta(minutes=waited)
        pickup, dropoff_zone, distance, duration, tip = None, None, 0.0, round(waited, 2), None
        fare = 5.0 if status == "cancelled_by_rider" else 0.0
    else:
        # Driving to the rider, then the ride itself.
        pickup = requested + dt.timedelta(minutes=rng.uniform(2, 9))
        distance = round(_clamp(rng.lognormvariate(math.log(5.5), 0.6), 0.6, 60.0), 2)
        speed = _speed_kmh(_hour(pickup)) * driver.speed_factor * rng.gauss(1.0, 0.1)
        duration = round(distance / _clamp(speed, 6.0, 80.0) * 60 + rng.uniform(0.5, 2.0), 2)
        event = pickup + dt.timedelta(minutes=duration)
        dropoff_zone = _wrap_zone(zone + rng.randint(-6, 6))
        fare = round(max(6.0, (2.5 + 1.15 * distance + 0.32 * duration) * surge), 2)
        tip = _tip(rng, rider, payment, fare)
    delay = dt.timedelta(seconds=rng.uniform(20, 300))
    if rng.random() < LATE_ROW_SHARE:
        # The driver's phone was offline; the trip synced hours later.
        delay = dt.timedelta(hours=rng.uniform(1.5, 36))
    return {
        "driver_id": driver.driver_id,
        "rider_id": rider.rider_id,
        "event_timestamp": event,
        "created_timestamp": event + delay,
        "pickup_timestamp": pickup,
        "status": status,
        "pickup_zone_id": zone,
        "dropoff_zone_id": dropoff_zone,
        "distance_km": distance,
        "duration_min": duration,
        "fare_usd": fare,
        "tip_usd": tip,
        "payment_type": payment,
        "surge_multiplier": surge,
    }


def _wrap_zone(zone: int) -> int:
    return (zone - 1) % ZONES + 1


def _tip(rng: random.Random, rider: _Rider, payment: str, fare: float) -> float | None:
    """The recorded tip: none for cash, occasionally missing, often zero."""
    if payment == "cash" or rng.random() < 0.02:
        return None
    if rng.random() >= rider.tip_propensity:
        return 0.0
    return round(fare * _clamp(rng.gauss(rider.tip_rate, 0.03), 0.0, 0.5), 2)


def make_drivers(settings: Settings) -> pa.Table:
    """The driver table's nightly exports (02:00 UTC, from the night before the first
    day), plus a row at each sign-up; see ``SCHEMAS['drivers']``.

    Some exports are corrected later: a second row with the same ``event_timestamp``,
    a later ``created_timestamp`` and different values; the later created row is the
    truth. There is at least one. New drivers have no rating until a day after sign-up.
    Two test accounts appear in every export and are not real drivers.
    """
    rng = settings.rng("driver-exports")
    drivers = _drivers(settings)
    state = {d.driver_id: (d.rating, d.vehicle_class, d.tier) for d in drivers}
    rows: list[Row] = []

    def emit(driver: _Driver, event: dt.datetime, created: dt.datetime) -> Row:
        rating, vehicle_class, tier = state[driver.driver_id]
        row: Row = {
            "driver_id": driver.driver_id,
            "event_timestamp": event,
            "created_timestamp": created,
            "rating": None if event - driver.signup < dt.timedelta(days=1) else round(rating, 2),
            "signup_date": driver.signup.date(),
            "vehicle_class": vehicle_class,
            "tier": tier,
            "is_test_account": False,
        }
        rows.append(row)
        return row

    first_export = settings.start_time - dt.timedelta(days=1) + dt.timedelta(hours=2)
    for driver in drivers:
        if driver.signup > first_export:
            emit(driver, driver.signup, driver.signup + dt.timedelta(minutes=rng.uniform(1, 10)))
    corrected = 0
    for day in range(-1, settings.days):
        export = settings.start_time + dt.timedelta(days=day, hours=2)
        for driver in drivers:
            if driver.signup > export:
                continue
            rating, vehicle_class, tier = state[driver.driver_id]
            if rng.random() < 0.01:
                vehicle_class = _pick(rng, VEHICLE_CLASSES)
            rating = _clamp(rating + rng.gauss(0, 0.02), 3.0, 5.0)
            state[driver.driver_id] = (rating, vehicle_class, tier)
            row = emit(driver, export, export + dt.timedelta(minutes=rng.uniform(3, 40)))
            if rng.random() < CORRECTION_SHARE:
                corrected += 1
                _correct(rng, state, driver.driver_id, rated=row["rating"] is not None)
                emit(driver, export, row["created_timestamp"] + _correction_delay(rng))
        for test_id in TEST_ACCOUNT_IDS:
            rows.append(
                {
                    "driver_id": test_id,
                    "event_timestamp": export,
                    "created_timestamp": export + dt.timedelta(minutes=1),
                    "rating": 5.0,
                    "signup_date": settings.start - dt.timedelta(days=400),
                    "vehicle_class": "SEDAN",
                    "tier": "standard",
                    "is_test_account": True,
                }
            )
    if not corrected:
        # Small populations may draw none: correct the latest row of a real driver.
        row = max(
            (r for r in rows if not r["is_test_account"]),
            key=lambda r: (r["event_timestamp"], r["driver_id"]),
        )
        vehicle_class = "SUV" if row["vehicle_class"] == "SEDAN" else "SEDAN"
        created = row["created_timestamp"] + _correction_delay(rng)
        rows.append(row | {"created_timestamp": created, "vehicle_class": vehicle_class})
    rows.sort(key=lambda r: (r["event_timestamp"], r["driver_id"], r["created_timestamp"]))
    return pa.Table.from_pylist(rows, schema=SCHEMAS["drivers"])


def _correction_delay(rng: random.Random) -> dt.timedelta:
    return dt.timedelta(hours=rng.uniform(1, 6))


def _correct(
    rng: random.Random,
    state: dict[int, tuple[float, str, str]],
    driver_id: int,
    *,
    rated: bool,
) -> None:
    """A later fix of a driver's export: a re-computed rating (if the export shows
    one) or a corrected vehicle; either way the values change."""
    rating, vehicle_class, tier = state[driver_id]
    if rated and rng.random() < 0.7:
        step = rng.uniform(0.05, 0.25)
        rating = rng.choice([r for r in (rating - step, rating + step) if 3.0 <= r <= 5.0])
    else:
        vehicle_class = rng.choice([c for c in VEHICLE_CLASSES if c != vehicle_class])
    state[driver_id] = (rating, vehicle_class, tier)


def make_riders(settings: Settings, trips: pa.Table) -> pa.Table:
    """Nightly snapshots of every rider who has ridden, as of each midnight UTC from the
    first day to the day after the last, computed from ``trips`` and the riders'
    history before the period; see ``SCHEMAS['riders']``.

    A snapshot as of midnight counts only trips that ended before it, so it never
    leaks the future; it lands about an hour later. ``avg_tip_rate`` is null for riders
    with no recorded tip (cash only), ``rating`` for riders with fewer than 3 trips.
    """
    rng = settings.rng("rider-snapshots")
    riders = _riders(settings)
    lifetime = {r.rider_id: r.prior_trips for r in riders}
    tipped = {r.rider_id: 0 if r.preferred_payment == "cash" else r.prior_trips for r in riders}
    tip_rates = {r.rider_id: tipped[r.rider_id] * r.tip_rate * r.tip_propensity for r in riders}
    payments = {r.rider_id: Counter({r.preferred_payment: r.prior_trips}) for r in riders}
    completed = [
        row
        for row in trips.select(
            ["rider_id", "event_timestamp", "status", "fare_usd", "tip_usd", "payment_type"]
        ).to_pylist()
        if row["status"] == "completed"
    ]
    completed.sort(key=lambda r: (r["event_timestamp"], r["rider_id"]))
    rows: list[Row] = []
    position = 0
    for day in range(settings.days + 1):
        as_of = settings.start_time + dt.timedelta(days=day)
        while position < len(completed) and completed[position]["event_timestamp"] < as_of:
            trip = completed[position]
            rider_id = trip["rider_id"]
            lifetime[rider_id] += 1
            payments[rider_id][trip["payment_type"]] += 1
            if trip["tip_usd"] is not None and trip["fare_usd"] > 0:
                tipped[rider_id] += 1
                tip_rates[rider_id] += trip["tip_usd"] / trip["fare_usd"]
            position += 1
        for rider in riders:
            rider_id = rider.rider_id
            if not lifetime[rider_id]:
                continue
            counts = payments[rider_id]
            rows.append(
                {
                    "rider_id": rider_id,
                    "event_timestamp": as_of,
                    "created_timestamp": as_of + dt.timedelta(minutes=rng.uniform(50, 95)),
                    "lifetime_trips": lifetime[rider_id],
                    "avg_tip_rate": (
                        round(tip_rates[rider_id] / tipped[rider_id], 4)
                        if tipped[rider_id]
                        else None
                    ),
                    "preferred_payment": max(sorted(counts), key=counts.__getitem__),
                    "rating": (
                        round(_clamp(rider.rating + rng.gauss(0, 0.02), 1.0, 5.0), 2)
                        if lifetime[rider_id] >= 3
                        else None
                    ),
                }
            )
    return pa.Table.from_pylist(rows, schema=SCHEMAS["riders"])


def make_tables(settings: Settings) -> dict[str, pa.Table]:
    """Every table, by the name of its directory under --out."""
    trips = make_trips(settings)
    return {
        "trips": trips,
        "drivers": make_drivers(settings),
        "riders": make_riders(settings, trips),
    }


def split_by_day(table: pa.Table, column: str) -> list[tuple[dt.date, pa.Table]]:
    """The table's rows grouped by the UTC day of ``column``, days in order."""
    groups: dict[dt.date, list[int]] = {}
    for index, moment in enumerate(table.column(column).to_pylist()):
        groups.setdefault(moment.astimezone(UTC).date(), []).append(index)
    return [(day, table.take(groups[day])) for day in sorted(groups)]


def _open(out: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem and root path of --out: a URI (s3://...) or a local directory."""
    if "://" in out:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(out)
        return filesystem, path.rstrip("/")
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return pyarrow.fs.LocalFileSystem(), root.as_posix()


def _parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="generate_data.py",
        description="Write the ride-hailing example's raw data (trips/, drivers/, riders/) "
        "as parquet under OUT, replacing what an earlier run wrote there.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="where to write: s3://bucket/prefix/ (AWS_ENDPOINT_URL is honoured) or a "
        "local directory; the example views read s3://featurekube-demo/raw/",
    )
    parser.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=defaults.start,
        help="first day of trips, UTC (default %(default)s)",
    )
    parser.add_argument("--days", type=int, default=defaults.days, help="default %(default)s")
    parser.add_argument("--drivers", type=int, default=defaults.drivers, help="default %(default)s")
    parser.add_argument("--riders", type=int, default=defaults.riders, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Generate every table and write it under --out, one file per created day."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings(
            start=args.start,
            days=args.days,
            drivers=args.drivers,
            riders=args.riders,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"generate_data.py: error: {exc}", file=sys.stderr)
        return 2
    filesystem, root = _open(args.out)
    for name, table in make_tables(settings).items():
        directory = f"{root}/{name}"
        if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            filesystem.create_dir(directory, recursive=True)
        # Remove only what an earlier run wrote, so a shorter run leaves no stale days.
        earlier = filesystem.get_file_info(pyarrow.fs.FileSelector(directory, allow_not_found=True))
        for info in earlier:
            if info.is_file and info.base_name.startswith("part-"):
                filesystem.delete_file(info.path)
        parts = split_by_day(table, "created_timestamp")
        for day, part in parts:
            pq.write_table(
                part, f"{directory}/part-{day.isoformat()}.parquet", filesystem=filesystem
            )
        print(
            f"{name}: {table.num_rows} rows in {len(parts)} files under "
            f"{args.out.rstrip('/')}/{name}/"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
