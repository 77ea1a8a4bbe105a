"""The python engine reads a plain view's window once, writing its offline rows while
it reads (featurekube.materialize.spill): the offline table must hold exactly the
rows of the one-row-per-(keys, event time) rule whether or not rows tie, however the
source's files and batches split them.

The platform's S3 (moto) and delta-rs: no JVM.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

from featurekube.materialize import python_job
from featurekube.spec import v1alpha1

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
MICROS = pa.timestamp("us", tz="UTC")


def _view(source: str, transformation: str | None = None) -> v1alpha1.FeatureView:
    spec: dict[str, Any] = {
        "owner": "tests",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": source, "createdTimestampField": "created"}},
        "features": [
            {"name": "rate", "type": "float64"},
            {"name": "trips", "type": "int64"},
        ],
        "materialization": {"engine": "python"},
    }
    if transformation is not None:
        spec["transformation"] = {"sql": transformation}
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": "driver-stats", "namespace": "rides"}, "spec": spec}
    )


def _rows(count: int, entities: int, *, ties: bool, seed: int) -> list[dict[str, Any]]:
    """``count`` rows over ``entities`` drivers in one day; with ``ties``, some rows
    repeat an earlier row's driver and event time with another created time or value
    (a null among them), as corrections and redeliveries do."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for _ in range(count):
        if ties and rows and rng.random() < 0.2:
            earlier = rng.choice(rows)
            created = earlier["created"] + dt.timedelta(seconds=rng.choice([0, 0, 5]))
            rate = rng.choice([None, round(rng.random(), 3)])
            rows.append({**earlier, "created": created, "rate": rate})
            continue
        event = T0 + dt.timedelta(microseconds=rng.randrange(86_400_000_000))
        rows.append(
            {
                "driver_id": rng.randrange(entities),
                "event": event,
                "created": event + dt.timedelta(seconds=rng.randrange(1, 60)),
                "rate": round(rng.random(), 3),
                "trips": rng.randrange(100),
            }
        )
    return rows


def _write_source(rows: list[dict[str, Any]], uri: str, files: int) -> None:
    filesystem, directory = pyarrow.fs.FileSystem.from_uri(uri)
    schema = pa.schema(
        [
            ("driver_id", pa.int64()),
            ("event_timestamp", MICROS),
            ("created", MICROS),
            ("rate", pa.float64()),
            ("trips", pa.int64()),
        ]
    )
    step = -(-len(rows) // files)
    for part in range(files):
        chunk = rows[part * step : (part + 1) * step]
        table = pa.Table.from_pylist(
            [
                {
                    "driver_id": r["driver_id"],
                    "event_timestamp": r["event"],
                    "created": r["created"],
                    "rate": r["rate"],
                    "trips": r["trips"],
                }
                for r in chunk
            ],
            schema=schema,
        )
        # Small row groups: the rows reach the offline write in many batches.
        pq.write_table(
            table, f"{directory}/part-{part}.parquet", row_group_size=97, filesystem=filesystem
        )


def _expected(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """One row per (driver, event time): the greatest created time, then the greatest
    feature values in declared order, a null lowest (docs/semantics.md)."""

    def rank(row: dict[str, Any]) -> tuple[Any, ...]:
        values = [(v is not None, v if v is not None else 0) for v in (row["rate"], row["trips"])]
        return (row["created"], *values)

    kept: dict[tuple[int, dt.datetime], dict[str, Any]] = {}
    for row in rows:
        key = (row["driver_id"], row["event"])
        if key not in kept or rank(row) > rank(kept[key]):
            kept[key] = row
    return sorted(
        (r["driver_id"], r["event"], r["created"], r["rate"], r["trips"]) for r in kept.values()
    )


def _offline_rows(uri: str) -> list[tuple[Any, ...]]:
    table = deltalake.DeltaTable(uri).to_pyarrow_table()
    names = ["driver_id", "event_timestamp", "created_timestamp", "rate", "trips"]
    return sorted(zip(*(table.column(n).to_pylist() for n in names), strict=True))


@pytest.mark.parametrize("ties", [False, True], ids=["unique", "ties"])
def test_the_offline_table_holds_one_row_per_event_whether_or_not_rows_tie(
    s3_prefix: str, ties: bool
) -> None:
    rows = _rows(3_000, 40, ties=ties, seed=7)
    source, offline = f"{s3_prefix}source/", f"{s3_prefix}offline"
    _write_source(rows, source, files=3)
    view = _view(source)

    result = python_job.run(view, T0, T0 + DAY, offline_uri=offline, online_table=None)

    expected = _expected(rows)
    assert (len(expected) < len(rows)) is ties  # the data has ties exactly when asked
    assert result.rows_read == len(rows)
    assert result.rows_offline == len(expected)
    assert _offline_rows(offline) == expected
    # One commit: the abandoned write of the tied rows committed nothing.
    assert deltalake.DeltaTable(offline).version() == 0


def test_a_rerun_replaces_the_window_with_the_same_rows(s3_prefix: str) -> None:
    rows = _rows(2_000, 25, ties=True, seed=11)
    source, offline = f"{s3_prefix}source/", f"{s3_prefix}offline"
    _write_source(rows, source, files=2)
    view = _view(source)

    python_job.run(view, T0, T0 + DAY, offline_uri=offline, online_table=None)
    python_job.run(view, T0, T0 + DAY, offline_uri=offline, online_table=None)

    assert _offline_rows(offline) == _expected(rows)


# Busy drivers' rates doubled; the others under keys of their own. Each output row comes
# from one source row, the event time passed through: run one source batch at a time.
ROW_WISE = """
WITH busy AS (SELECT driver_id, event_timestamp, created, rate, trips FROM source
              WHERE trips >= 30)
SELECT driver_id, event_timestamp, created, rate * 2 AS rate, trips FROM busy
UNION ALL
SELECT driver_id + 1000 AS driver_id, event_timestamp, created, rate, trips FROM source
WHERE trips < 30
"""


def _transformed(row: dict[str, Any]) -> dict[str, Any]:
    if row["trips"] >= 30:
        rate = None if row["rate"] is None else row["rate"] * 2
        return {**row, "rate": rate}
    return {**row, "driver_id": row["driver_id"] + 1000}


@pytest.mark.parametrize(
    ("sql", "per_batch"),
    [(ROW_WISE, True), (f"SELECT DISTINCT * FROM ({ROW_WISE})", False)],
    ids=["row-wise", "distinct"],
)
def test_a_transformation_gives_the_windows_rows_whether_or_not_it_runs_per_batch(
    s3_prefix: str, monkeypatch: pytest.MonkeyPatch, sql: str, per_batch: bool
) -> None:
    rows = _rows(3_000, 40, ties=False, seed=5)
    # The next day's rows, between the window's in the files: pruned, never written.
    later = [
        {**r, "event": r["event"] + DAY, "created": r["created"] + DAY}
        for r in _rows(1_000, 40, ties=False, seed=6)
    ]
    source, offline = f"{s3_prefix}source/", f"{s3_prefix}offline"
    _write_source(rows[:1_500] + later + rows[1_500:], source, files=4)
    batched = []
    each_batch = python_job._each_batch

    def spied(*args: Any) -> Any:
        batched.append(args[1])
        return each_batch(*args)

    monkeypatch.setattr(python_job, "_each_batch", spied)

    result = python_job.run(
        _view(source, sql), T0, T0 + DAY, offline_uri=offline, online_table=None
    )

    expected = _expected([_transformed(r) for r in rows])
    assert result.rows_read == len(rows)
    assert _offline_rows(offline) == expected
    assert bool(batched) is per_batch
