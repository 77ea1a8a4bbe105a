"""Per-window statistics and drift, written by both engines to the platform's S3.

Expected statistics are computed here from the raw rows with the definitions of
docs/monitoring.md (nearest-rank quantiles, top values by count then value); drift is
checked on constructed data: windows drawn like the reference have a PSI near 0,
shifted ones above 0.2.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurekube.materialize import python_job, spark_job
from featurekube.monitoring import stats, stats_store
from featurekube.offline import layout
from featurekube.spec import v1alpha1
from featurekube.store import FeatureStore

pytestmark = pytest.mark.spark

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)
FEATURES = {"speed": "float64", "trips": "int64", "status": "string", "premium": "bool"}
STATUSES = ["idle", "busy", "offline", "break"]


@pytest.fixture(params=["spark", "python"])
def engine(request: pytest.FixtureRequest) -> str:
    """Both engines: they must store the same statistics."""
    return str(request.param)


def _view(source: str, drift: dict[str, Any] | None = None) -> v1alpha1.FeatureView:
    spec: dict[str, Any] = {
        "owner": "tests",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": source, "timestampField": "ts"}},
        "features": [{"name": n, "type": t} for n, t in FEATURES.items()],
    }
    if drift is not None:
        spec["monitoring"] = {"drift": drift}
    return v1alpha1.FeatureView.model_validate(
        {"metadata": {"name": "driver-state", "namespace": "rides"}, "spec": spec}
    )


def _day(day: int, shift: float, rows: int = 600, seed: int | None = None) -> list[dict[str, Any]]:
    """One day of rows; ``shift`` moves every feature's distribution."""
    rng = random.Random(seed if seed is not None else day)
    weights = [4, 3, 2, 1] if shift == 0 else [1, 1, 4, 6]
    out = []
    for i in range(rows):
        out.append(
            {
                "driver_id": i % 50,
                "ts": T0 + day * DAY + dt.timedelta(seconds=i * 86400 // rows),
                "speed": None if i % 37 == 0 else round(rng.gauss(30 + 15 * shift, 5), 3),
                "trips": rng.randrange(0, 20) + int(25 * shift),
                "status": rng.choices(STATUSES, weights)[0],
                "premium": rng.random() < 0.3 + 0.5 * shift,
            }
        )
    return out


def _source(prefix: str, rows: list[dict[str, Any]]) -> str:
    uri = f"{prefix}raw/"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    schema = pa.schema(
        [
            ("driver_id", pa.int64()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("speed", pa.float64()),
            ("trips", pa.int64()),
            ("status", pa.string()),
            ("premium", pa.bool_()),
        ]
    )
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schema),
        f"{path.rstrip('/')}/part-0.parquet",
        filesystem=filesystem,
    )
    return uri


def _run(
    spark: SparkSession,
    engine: str,
    view: v1alpha1.FeatureView,
    day: int,
    offline: str,
    settings: spark_job.JobSettings | None = None,
) -> Any:
    start, end = T0 + day * DAY, T0 + (day + 1) * DAY
    if engine == "python":
        return python_job.run(view, start, end, offline_uri=offline, online_table=None)
    return spark_job.run(
        spark, view, start, end, offline_uri=offline, online_table=None, settings=settings
    )


def _expected(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, type_ in FEATURES.items():
        values = [r[name] for r in rows if r[name] is not None]
        entry: dict[str, Any] = {"count": len(values), "nulls": len(rows) - len(values)}
        if type_ in stats.NUMERIC_TYPES:
            entry |= {
                "min": float(min(values)),
                "max": float(max(values)),
                "quantiles": stats.quantiles_of(values),
            }
        else:
            counts: dict[str, int] = {}
            for v in values:
                text = str(v).lower() if isinstance(v, bool) else v
                counts[text] = counts.get(text, 0) + 1
            entry["top_values"] = [
                {"value": v, "count": n} for v, n in stats.rank_top_values(counts)
            ]
        out[name] = entry
    return out


def test_a_window_stores_its_statistics_and_a_rerun_replaces_them(
    spark: SparkSession, engine: str, s3_prefix: str
) -> None:
    rows = _day(0, 0.0)
    view = _view(_source(s3_prefix, rows))
    offline = f"{s3_prefix}offline/v1"

    first = _run(spark, engine, view, 0, offline)
    stored = stats_store.read_statistics(offline)
    again = _run(spark, engine, view, 0, offline)
    rerun = stats_store.read_statistics(offline)

    assert first.published and first.notes == [] and first.drift is None
    assert "statistics" in first.timings and first.to_json()["drift"] is None
    assert stored.schema == stats.STATS_SCHEMA
    assert stored.column("feature").to_pylist() == sorted(FEATURES)
    expected = _expected(rows)
    for row in stored.to_pylist():
        want = expected[row["feature"]]
        assert {k: row[k] for k in want} == want, row["feature"]
        assert row["window_start"] == T0 and row["window_end"] == T0 + DAY
        assert row["engine"] == engine and row["psi"] is None
        assert row["type"] == FEATURES[row["feature"]]
        if row["type"] in ("float64", "int64"):
            values = [r[row["feature"]] for r in rows if r[row["feature"]] is not None]
            assert row["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
            assert row["stddev"] > 0 and row["top_values"] is None
        else:
            assert row["quantiles"] is None and row["mean"] is None
    # The re-run replaced the window's rows: no duplicates, newer written_at.
    assert again.published and rerun.num_rows == len(FEATURES)
    assert rerun.drop(["written_at"]).equals(stored.drop(["written_at"]))
    assert min(rerun.column("written_at").to_pylist()) >= max(
        stored.column("written_at").to_pylist()
    )
    # Other windows add rows beside it; the reader filters by time and feature.
    _run(spark, engine, view, 1, offline)
    assert stats_store.read_statistics(offline).num_rows == 2 * len(FEATURES)
    later = stats_store.read_statistics(offline, since=T0 + DAY, features=["speed"])
    assert later.column("window_start").to_pylist() == [T0 + DAY]
    assert stats_store.read_statistics(f"{s3_prefix}nothing/v1").num_rows == 0


def test_both_engines_store_the_same_statistics(spark: SparkSession, s3_prefix: str) -> None:
    rows = _day(0, 0.0, rows=2000) + _day(0, 0.5, rows=500, seed=7)
    rows = [dict(r, speed=math.nan) if i == 5 else r for i, r in enumerate(rows)]
    view = _view(_source(s3_prefix, rows))
    tables = {}
    # Spark computes a small window's statistics at the driver with DuckDB, a large
    # one's in Spark: both must agree with the python engine.
    in_spark = spark_job.JobSettings(driver_statistics_max_rows=0)
    for engine, settings in (("spark", None), ("in-spark", in_spark), ("python", None)):
        offline = f"{s3_prefix}{engine}/v1"
        _run(spark, engine.removeprefix("in-"), view, 0, offline, settings)
        tables[engine] = stats_store.read_statistics(offline).to_pylist()
    for ours, theirs in zip(tables["spark"], tables["python"], strict=True):
        same = {"engine": "python", "written_at": None}
        assert _nan_safe(ours | same) == _nan_safe(theirs | same)  # to the last bit
    for spark_row, python_row in zip(tables["in-spark"], tables["python"], strict=True):
        for column in ("mean", "stddev"):
            ours, theirs = spark_row.pop(column), python_row.pop(column)
            if theirs is None:
                assert ours is None
            else:
                assert ours == pytest.approx(theirs, rel=1e-12, nan_ok=True)
        for column in ("engine", "written_at"):
            del spark_row[column], python_row[column]
        assert _nan_safe(spark_row) == _nan_safe(python_row)


def _nan_safe(row: dict[str, Any]) -> dict[str, Any]:
    def fix(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return "NaN"
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return {k: fix(v) for k, v in row.items()}


def test_drift_against_a_period_of_the_views_own_rows(
    spark: SparkSession, engine: str, s3_prefix: str
) -> None:
    rows = _day(0, 0.0) + _day(1, 0.0) + _day(2, 1.0)
    period = {"start": T0.isoformat(), "end": (T0 + DAY).isoformat()}
    source = _source(s3_prefix, rows)
    view = _view(source, {"reference": {"period": period}})
    offline = f"{s3_prefix}offline/v1"

    within = _run(spark, engine, view, 0, offline)
    alike = _run(spark, engine, view, 1, offline)
    shifted = _run(spark, engine, view, 2, offline)

    assert within.published and within.drift is None
    assert "starts before the end of the period" in within.notes[0]
    assert alike.notes == [] and shifted.notes == []
    assert set(alike.drift) == set(FEATURES) == set(shifted.drift)
    assert all(psi < 0.1 for psi in alike.drift.values()), alike.drift
    assert all(psi > 0.2 for psi in shifted.drift.values()), shifted.drift
    assert shifted.to_json()["drift"] == {k: round(v, 4) for k, v in shifted.drift.items()}
    stored = stats_store.read_statistics(offline, since=T0 + 2 * DAY).to_pylist()
    assert {r["feature"]: r["psi"] for r in stored} == shifted.drift
    # The profile was computed once and stored under the period's key.
    references = deltalake.DeltaTable(layout.references_uri(offline)).to_pyarrow_table()
    assert set(references.column("reference").to_pylist()) == {
        "period:2026-03-01T00:00:00Z/2026-03-02T00:00:00Z"
    }
    assert deltalake.DeltaTable(layout.references_uri(offline)).version() == 0
    # Another period is another profile, computed from its own rows.
    moved = {"start": (T0 + DAY).isoformat(), "end": (T0 + 2 * DAY).isoformat()}
    view = _view(source, {"reference": {"period": moved}})
    again = _run(spark, engine, view, 2, offline)
    assert all(psi > 0.2 for psi in again.drift.values()) and again.drift != shifted.drift
    references = deltalake.DeltaTable(layout.references_uri(offline)).to_pyarrow_table()
    assert len(set(references.column("reference").to_pylist())) == 2


def test_drift_against_a_saved_training_pull(
    spark: SparkSession, engine: str, s3_prefix: str
) -> None:
    rows = _day(0, 0.0) + _day(1, 0.0) + _day(2, 1.0)
    view = _view(_source(s3_prefix, rows), {"reference": {"trainingPull": "eta-train"}})
    root = f"{s3_prefix}offline"
    offline = layout.table_uri(root, "rides", "driver-state", 1)

    before = _run(spark, engine, view, 0, offline)
    assert before.published and before.drift is None
    assert "no training pull was saved as 'eta-train'" in before.notes[0]

    # A training pull of day 0, its columns under the view's feature names.
    store = FeatureStore([view], namespace="rides", offline_uri=root)
    entities = pa.table(
        {
            "driver_id": pa.array([r["driver_id"] for r in rows[:600]], pa.int64()),
            "event_timestamp": pa.array(
                [r["ts"] for r in rows[:600]], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    pull = store.get_historical_features(entities, [f"driver-state:{name}" for name in FEATURES])
    saved = store.save_reference("eta-train", pull)
    assert saved == {"rides/driver-state": offline}

    alike = _run(spark, engine, view, 1, offline)
    shifted = _run(spark, engine, view, 2, offline)
    assert alike.notes == [] and set(alike.drift) == set(FEATURES)
    assert all(psi < 0.1 for psi in alike.drift.values()), alike.drift
    assert all(psi > 0.2 for psi in shifted.drift.values()), shifted.drift

    # Saved again from plain rows, under a prefix, it replaces the reference.
    prefixed = pa.table({f"ds__{name}": pull.to_arrow().column(name) for name in FEATURES})
    store.save_reference("eta-train", prefixed, view="driver-state", prefix="ds__")
    references = deltalake.DeltaTable(layout.references_uri(offline)).to_pyarrow_table()
    assert references.num_rows == len(FEATURES)


def test_a_statistics_store_that_cannot_be_written_does_not_fail_the_window(
    spark: SparkSession, engine: str, s3_prefix: str
) -> None:
    rows = _day(0, 0.0)
    view = _view(_source(s3_prefix, rows))
    offline = f"{s3_prefix}offline/v1"
    # A statistics "table" whose log is not Delta: every read and write of it fails.
    filesystem, path = pyarrow.fs.FileSystem.from_uri(layout.stats_uri(offline))
    with filesystem.open_output_stream(f"{path}/_delta_log/00000000000000000000.json") as out:
        out.write(b"this is not a Delta log\n")

    result = _run(spark, engine, view, 0, offline)

    assert result.published and result.error is None
    assert any(note.startswith("statistics not stored") for note in result.notes), result.notes
    assert result.to_json()["notes"] == result.notes
    assert deltalake.DeltaTable(offline).to_pyarrow_table().num_rows == len(rows)
