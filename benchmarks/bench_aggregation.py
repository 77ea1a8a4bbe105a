"""Aggregations: a steady-state window of a view with 1-day and 30-day windows beside
the same view with only the 1-day window, on the python engine and on Spark.

A view on a 10-minute schedule computes one boundary per window. With tiles
(sdk/featurekube/materialize/tiles.py) such a window reads the source only for its own
10 minutes and combines stored tiles for its long windows, so its time should not
depend on the longest window; the figure is the ratio of the two views' times.

Everything runs against one moto server the benchmark starts (S3 and DynamoDB). The
source holds 31 days of events of ``FEATUREKUBE_BENCH_AGGREGATION_ENTITIES`` entities
(default 200), one every ``FEATUREKUBE_BENCH_AGGREGATION_EVERY`` minutes per entity on
average (default 5). Each view is first backfilled for one hour at the end of day 30
(which computes and stores every tile its windows need), then runs two windows to warm
up and ``REPEAT`` consecutive 10-minute windows, each timed in this process from
``python_job.run`` being called to its return (offline and online written), and the
job's own ``read_compute`` time beside it. For scale, the same windows of the 1d+30d
view are also computed without tiles, from the events of their whole read range (the
job's path before tiles; compute only, nothing written).

Engines: ``FEATUREKUBE_BENCH_AGGREGATION_ENGINES`` (default ``python,spark``). On Spark
(one local session, started once and not timed) the same steps run through
``spark_job.run``; its windows without tiles are run without an offline table (the
Spark job's path before it kept tiles, statistics included, nothing written).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from benchmarks import _harness, _moto
from featurekube._platform import processes
from featurekube.materialize import plan as planning
from featurekube.materialize import python_job, spark_job
from featurekube.online import layout
from featurekube.spec import v1alpha1

BUCKET = "featurekube-bench-aggregation"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 31
REPEAT = 6
WARM_UP = 2
STEP = dt.timedelta(minutes=10)


def _engines() -> list[str]:
    text = os.environ.get("FEATUREKUBE_BENCH_AGGREGATION_ENGINES", "python,spark")
    return [part.strip() for part in text.split(",") if part.strip()]


def _settings() -> tuple[int, int]:
    entities = int(os.environ.get("FEATUREKUBE_BENCH_AGGREGATION_ENTITIES", "200"))
    every = int(os.environ.get("FEATUREKUBE_BENCH_AGGREGATION_EVERY", "5"))
    return entities, every


def _events(entities: int, every_minutes: int) -> pa.Table:
    rng = np.random.default_rng(18)
    count = entities * DAYS * 24 * 60 // every_minutes
    start = int(T0.timestamp()) * 1_000_000
    span = DAYS * 86_400_000_000
    return pa.table(
        {
            "driver_id": pa.array(rng.integers(1, entities + 1, count), pa.int64()),
            "event_timestamp": pa.array(start + rng.integers(0, span, count), pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "fare": np.round(rng.uniform(3, 60, count), 2),
            "distance_km": rng.integers(1, 40, count),
        }
    )


def _aggregations(windows: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for window in windows:
        out += [
            {"name": f"trips_{window}", "column": "fare", "function": "count", "window": window},
            {
                "name": f"fares_{window}",
                "column": "fare",
                "function": "sum",
                "window": window,
                "type": "float64",
            },
            {"name": f"mean_fare_{window}", "column": "fare", "function": "mean", "window": window},
            {
                "name": f"longest_{window}",
                "column": "distance_km",
                "function": "max",
                "window": window,
                "type": "int64",
            },
        ]
    return out


def _view(name: str, source: str, windows: list[str]) -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "owner": "bench@example.com",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": source}},
                "aggregationInterval": "10m",
                "aggregations": _aggregations(windows),
                "materialization": {"schedule": "*/10 * * * *"},
            },
        }
    )


Run = Callable[..., Any]
"""``python_job.run``, or ``spark_job.run`` bound to a session."""


def _steady_windows(
    view: v1alpha1.FeatureView, tag: str, run: Run = python_job.run
) -> tuple[list[float], list[float], float, int]:
    """Seconds of each measured window, end to end and computing; of the backfill; and
    the rows the last window read."""
    table = f"fk-bench-agg-{tag}"
    boto3.client("dynamodb").create_table(**layout.table_definition(table, {}))
    offline = f"s3://{BUCKET}/offline/{tag}"
    at = T0 + dt.timedelta(days=DAYS - 1)
    began = time.perf_counter()
    run(view, at - dt.timedelta(hours=1), at, offline_uri=offline, online_table=table)
    backfill = time.perf_counter() - began
    samples, computing = [], []
    rows_read = 0
    for i in range(WARM_UP + REPEAT):
        began = time.perf_counter()
        result = run(view, at, at + STEP, offline_uri=offline, online_table=table)
        if i >= WARM_UP:
            samples.append(time.perf_counter() - began)
            computing.append(result.timings["read_compute"])
        rows_read = result.rows_read
        at += STEP
    boto3.client("dynamodb").delete_table(TableName=table)
    return samples, computing, backfill, rows_read


def _from_events(view: v1alpha1.FeatureView) -> tuple[list[float], int]:
    """Seconds computing the same windows from the events of their read range, without
    tiles, and the rows the last one read."""
    at = T0 + dt.timedelta(days=DAYS - 1) + WARM_UP * STEP
    samples, rows_read = [], 0
    for _ in range(REPEAT):
        window = planning.plan_materialization(view, at, at + STEP)
        with python_job._connection(python_job.PythonSettings()) as (connection, _):
            began = time.perf_counter()
            rows_read = python_job._load_rows(
                connection, window, dt.datetime.now(dt.UTC), None, None
            )
            samples.append(time.perf_counter() - began)
        at += STEP
    return samples, rows_read


def _spark_from_events(run: Run, view: v1alpha1.FeatureView) -> tuple[list[float], int]:
    """Seconds of the same windows on Spark without an offline table (so without
    tiles: from the events of their read range), and the rows the last one read."""
    at = T0 + dt.timedelta(days=DAYS - 1) + WARM_UP * STEP
    samples, rows_read = [], 0
    for _ in range(REPEAT):
        result = run(view, at, at + STEP, offline_uri=None, online_table=None)
        samples.append(result.timings["read_compute"])
        rows_read = result.rows_read
        at += STEP
    return samples, rows_read


def _spark_run() -> Run:
    from featurekube import spark_session

    session = spark_session.create_session(
        spark_session.SparkSettings(app_name="featurekube-bench-aggregation")
    )
    return functools.partial(spark_job.run, session)


def run() -> _harness.Report:
    report = _harness.Report(
        name="aggregation",
        description="a steady-state 10-minute window of a 1d+30d aggregation view beside "
        "the 1d-only view, python engine and Spark (moto S3 and DynamoDB)",
        baseline="1d only",
    )
    entities, every = _settings()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        pid, env = _moto.start(tmp)
        os.environ.update(env)
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            events = _events(entities, every)
            filesystem, path = pyarrow.fs.FileSystem.from_uri(f"s3://{BUCKET}/raw/trips")
            pq.write_table(events, f"{path}/part-000.parquet", filesystem=filesystem)
            source = f"s3://{BUCKET}/raw/trips/"
            for engine in _engines():
                run_ = python_job.run if engine == "python" else _spark_run()
                on = "" if engine == "python" else ", spark"
                for subject, windows in (("1d only", ["1d"]), ("1d and 30d", ["1d", "30d"])):
                    tag = f"{subject.replace(' ', '-')}-{engine}"
                    view = _view(f"trips-{tag}", source, windows)
                    samples, computing, backfill, rows_read = _steady_windows(view, tag, run_)
                    report.add(subject + on, "steady window", "s", samples)
                    report.add(subject + on, "steady window: compute", "s", computing)
                    report.add(subject + on, "backfill of 1h (tiles of 30d)", "s", [backfill])
                    report.notes[f"{subject}{on}: rows read by a steady window"] = str(rows_read)
                    print(f"aggregation benchmark: {subject}{on}: {samples}", flush=True)
                if engine == "python":
                    samples, rows_read = _from_events(view)
                else:
                    samples, rows_read = _spark_from_events(run_, view)
                report.add(f"1d and 30d without tiles{on}", "steady window: compute", "s", samples)
                report.notes[f"1d and 30d{on}: rows read without tiles"] = str(rows_read)
        finally:
            processes.stop(pid)
    report.notes["data"] = (
        f"{events.num_rows} events over {DAYS} days, {entities} entities, one per entity "
        f"every {every} minutes on average; 4 aggregations per window length"
    )
    return report
