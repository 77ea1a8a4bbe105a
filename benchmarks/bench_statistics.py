"""Per-window statistics: what they add to a window, what they cost to compute beside
pandas, and how large the statistics table grows.

Everything runs against one moto server the benchmark starts (S3):

- the window: a plain view of five features (three numeric, two categorical) whose
  1M-row window the python engine materializes offline, timed end to end (the window
  run again each time, untimed once first); the job's report says how much of it the
  statistics took (``timingsSeconds.statistics``: finding the reference, the two
  queries, writing the rows);
- computing them: featurekube's statistics of the same 1M rows in memory (DuckDB,
  :func:`featurekube.monitoring.profiling.window_statistics`), beside pandas'
  ``describe`` with the same 21 percentiles and ``value_counts`` of the categorical
  columns (the baseline);
- the quantiles in Spark (with ``spark`` among the engines): the numeric features'
  quantiles as Spark's job finds them for a window too large for its driver
  (:mod:`featurekube.materialize.spark_quantiles`), beside Spark's ``percentile_disc``
  over the same cached rows (its failure, as at 10M rows in a 2 GiB driver, is noted);
- the table: the rows of :data:`WINDOWS` windows of a 10-feature view written one
  window (one commit) at a time, as the job writes them; the bytes on S3 then, and
  after ``optimize.compact()`` and a vacuum.

Rows of the window: ``FEATUREKUBE_BENCH_STATISTICS_ROWS`` (default 1,000,000). Engines
that run it: ``FEATUREKUBE_BENCH_STATISTICS_ENGINES`` (default ``python``; ``spark``
runs it in a local Spark session too). Windows of the table:
``FEATUREKUBE_BENCH_STATISTICS_WINDOWS`` (default 1,000; 0 leaves the table out).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from benchmarks import _harness, _moto
from featurekube._platform import processes
from featurekube.spec import v1alpha1

BUCKET = "featurekube-bench-statistics"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
WINDOWS = int(os.environ.get("FEATUREKUBE_BENCH_STATISTICS_WINDOWS", "1000"))
ROWS = int(os.environ.get("FEATUREKUBE_BENCH_STATISTICS_ROWS", "1000000"))
ENGINES = os.environ.get("FEATUREKUBE_BENCH_STATISTICS_ENGINES", "python").split(",")
REPEAT = 3
VEHICLES = np.array(["sedan", "suv", "hatchback", "electric", "van"])


def _rows(rows: int) -> pa.Table:
    rng = np.random.default_rng(1)
    day_us = 86_400_000_000
    event = (int(T0.timestamp()) * 1_000_000 + rng.integers(0, day_us, rows)).astype("int64")
    return pa.table(
        {
            "driver_id": pa.array(rng.integers(0, 100_000, rows), pa.int64()),
            "event_timestamp": pa.array(event).cast(pa.timestamp("us", tz="UTC")),
            "rating": pa.array(rng.normal(4.5, 0.3, rows)),
            "trips": pa.array(rng.integers(0, 200, rows), pa.int64()),
            "speed": pa.array(rng.gamma(4.0, 8.0, rows)),
            "vehicle": pa.array(VEHICLES[rng.integers(0, len(VEHICLES), rows)]),
            "premium": pa.array(rng.random(rows) < 0.2),
        }
    )


def _view(source: str) -> v1alpha1.FeatureView:
    features = {
        "rating": "float64",
        "trips": "int64",
        "speed": "float64",
        "vehicle": "string",
        "premium": "bool",
    }
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "bench-statistics", "namespace": "bench"},
            "spec": {
                "owner": "bench",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": source}},
                "features": [{"name": n, "type": t} for n, t in features.items()],
            },
        }
    )


def _bytes(prefix: str) -> tuple[int, int, int]:
    """Bytes under ``s3://BUCKET/prefix``: all, in data files, in the Delta log."""
    total = data = log = 0
    for page in (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    ):
        for item in page.get("Contents", []):
            total += item["Size"]
            if "/_delta_log/" in item["Key"]:
                log += item["Size"]
            elif item["Key"].endswith(".parquet"):
                data += item["Size"]
    return total, data, log


def _engine_window(report: _harness.Report, engine: str, view: v1alpha1.FeatureView) -> None:
    """The window run by ``engine``: once untimed, then :data:`REPEAT` times."""
    from featurekube.materialize import python_job

    offline = f"s3://{BUCKET}/offline/bench/bench-statistics-{engine}/v1"
    run: Any = functools.partial(python_job.run, view, T0, T0 + DAY)
    if engine == "spark":
        from featurekube import spark_session
        from featurekube.materialize import spark_job

        session = spark_session.create_session(
            spark_session.SparkSettings(app_name="featurekube-bench-statistics")
        )
        run = functools.partial(spark_job.run, session, view, T0, T0 + DAY)
    run(offline_uri=offline, online_table=None)  # untimed
    totals, added = [], []
    for _ in range(REPEAT):
        began = time.perf_counter()
        result = run(offline_uri=offline, online_table=None)
        totals.append(time.perf_counter() - began)
        added.append(result.timings["statistics"])
    subject = f"featurekube {engine} window"
    label = f"{ROWS // 1000}k-row window"
    report.add(subject, f"{label}: whole window", "s", totals)
    report.add(subject, f"{label}: statistics in it", "s", added)
    share = [100 * a / t for a, t in zip(added, totals, strict=True)]
    report.add(subject, f"{label}: statistics share", "%", share)


def _window(report: _harness.Report) -> None:
    table = _rows(ROWS)
    source = f"s3://{BUCKET}/raw/"
    filesystem, path = pyarrow.fs.FileSystem.from_uri(source)
    pq.write_table(table, f"{path.rstrip('/')}/part-0.parquet", filesystem=filesystem)
    view = _view(source)
    for engine in ENGINES:
        _engine_window(report, engine, view)
    if "spark" in ENGINES:
        _spark_quantiles(report, table, view)

    import duckdb

    from featurekube.monitoring import profiling, stats

    columns = [(n, n, t) for n, t in view.spec.feature_types().items()]
    features = table.select([c for c, _, _ in columns])

    def ours() -> None:
        with duckdb.connect(config={"threads": 2}) as connection:
            connection.register("rows", features)
            profiling.window_statistics(connection, "rows", columns)

    frame = features.to_pandas()
    percentiles = [p / 100 for p in stats.PERCENTS]

    def pandas_describe() -> None:
        frame[["rating", "trips", "speed"]].describe(percentiles=percentiles)
        for name in ("vehicle", "premium"):
            frame[name].value_counts().head(stats.TOP_VALUES)

    ours()
    pandas_describe()
    metric = f"statistics of {ROWS // 1000}k rows, 5 features"
    report.add("featurekube (DuckDB)", metric, "s", _harness.timed(ours, REPEAT))
    report.add("pandas describe", metric, "s", _harness.timed(pandas_describe, REPEAT))


def _spark_quantiles(report: _harness.Report, table: pa.Table, view: v1alpha1.FeatureView) -> None:
    """The quantiles of the numeric features as Spark finds them for windows too
    large for its driver (featurekube.materialize.spark_quantiles), beside Spark's
    ``percentile_disc`` over the same cached rows, in the window's session."""
    from pyspark.sql import functions as F

    from featurekube import spark_session
    from featurekube.materialize import spark_quantiles
    from featurekube.monitoring import stats

    numeric = [(n, t) for n, t in view.spec.feature_types().items() if t in stats.NUMERIC_TYPES]
    session = spark_session.create_session(
        spark_session.SparkSettings(app_name="featurekube-bench-statistics")
    )
    # Partitions of 1M rows (at least 2).
    rows = session.createDataFrame(table.select([n for n, _ in numeric]))
    rows = rows.repartition(max(2, ROWS // 1_000_000)).cache()
    rows.count()
    levels = ", ".join(f"{level!r}D" for level in stats.PROBE_LEVELS)
    by_spark = [
        F.expr(f"percentile_disc(array({levels})) WITHIN GROUP (ORDER BY `{n}`)").alias(n)
        for n, _ in numeric
    ]
    found: dict[str, Any] = {}

    def ours() -> None:
        # Its counts taken alone: in the job they join the window's other statistics.
        counted = rows.agg(*spark_quantiles.counts(numeric)).first()
        assert counted is not None
        settings = spark_quantiles.QuantileSettings()
        found.update(spark_quantiles.quantiles(rows, numeric, counted, settings))

    def percentile_disc() -> None:
        row = rows.agg(*by_spark).first()
        assert row is not None
        for name, _ in numeric:
            if [float(v) for v in row[name]] != found[name]:
                raise AssertionError(f"{name}: percentile_disc and the search disagree")

    metric = f"quantiles of {ROWS // 1000}k rows, {len(numeric)} features, in Spark"
    report.add("featurekube (Spark, narrowing)", metric, "s", _harness.timed(ours, REPEAT))
    try:
        peer = _harness.timed(percentile_disc, REPEAT)
    except Exception as exc:  # an OutOfMemoryError is what this measures
        report.notes["Spark percentile_disc"] = f"failed: {exc}"[:500]
    else:
        report.add("Spark percentile_disc", metric, "s", peer)


def _table_size(report: _harness.Report) -> None:
    import deltalake

    from featurekube.monitoring import stats, stats_store

    offline = f"s3://{BUCKET}/sized/bench/ten-features/v1"
    prefix = "sized/bench/ten-features/v1/_stats/"
    store = stats_store.StatsStore(offline)
    rng = np.random.default_rng(2)
    written_at = dt.datetime.now(dt.UTC)
    seconds = []
    for window in range(WINDOWS):
        start = T0 + window * dt.timedelta(hours=1)
        features = []
        for index in range(10):
            if index < 7:
                q = sorted(rng.normal(0, 1, 21).tolist())
                features.append(
                    stats.FeatureStatistics(
                        f"feature_{index}",
                        "float64",
                        10_000,
                        12,
                        q[0],
                        q[-1],
                        0.1,
                        1.0,
                        q,
                        psi=0.01,
                    )
                )
            else:
                top = [(f"value-{v}", int(1000 - v)) for v in range(20)]
                features.append(
                    stats.FeatureStatistics(
                        f"feature_{index}", "string", 10_000, 0, top_values=top, psi=0.02
                    )
                )
        rows = stats.statistics_table(
            start, start + dt.timedelta(hours=1), features, engine="python", written_at=written_at
        )
        began = time.perf_counter()
        store.replace_window(rows, start)
        seconds.append(time.perf_counter() - began)
    total, data, log = _bytes(prefix)
    label = f"{WINDOWS} windows x 10 features"
    report.add("statistics table", f"{label}: bytes on S3", "B", [float(total)])
    report.add("statistics table", f"{label}: data files", "B", [float(data)])
    report.add("statistics table", f"{label}: Delta log", "B", [float(log)])
    report.add("statistics table", "write of one window's rows", "s", seconds)
    table = deltalake.DeltaTable(store.uri, storage_options={"conditional_put": "etag"})
    table.optimize.compact()
    table.create_checkpoint()
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    total, data, log = _bytes(prefix)
    report.add("statistics table", f"{label}: bytes after compact+vacuum", "B", [float(total)])
    report.add("statistics table", f"{label}: data after compact+vacuum", "B", [float(data)])
    rows = stats_store.read_statistics(offline).num_rows
    report.notes["table rows"] = str(rows)


def run() -> _harness.Report:
    report = _harness.Report(
        name="statistics",
        description="per-window statistics: time added to a 1M-row python window, their "
        "computation beside pandas describe, and the statistics table's size (moto S3)",
        baseline="pandas describe",
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        pid, aws = _moto.start(Path(tmp_dir))
        os.environ.update(aws)
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            _window(report)
            if WINDOWS:
                _table_size(report)
        finally:
            processes.stop(pid)
    report.notes["window"] = (
        f"{', '.join(ENGINES)} engine, {ROWS} rows of 100k entities, offline only, on moto's S3; "
        "statistics: reference lookup, one aggregate and one top-values query, one commit"
    )
    report.notes["table"] = (
        "each window's rows written in a commit of their own, as the job does; bytes "
        "summed over the table's prefix; compact+vacuum: delta-rs optimize.compact(), a "
        "checkpoint, vacuum with zero retention"
    )
    return report
