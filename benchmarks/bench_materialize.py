"""Materialization: end-to-end time and peak memory of one window, beside Feast's
``materialize`` of the same rows into its DynamoDB online store, and the online write
beside a bare parallel BatchWriteItem loop over the same items.

Everything runs against one moto server the benchmark starts (S3 and DynamoDB). For
each size (source rows, distinct entities) it generates a plain view's rows (one day of
events, five features), then runs, each in a process of its own whose tree's peak
resident memory is measured (the sum of each process's high-water mark,
benchmarks/_memory.py):

- featurekube: ``python -m featurekube.materialize --engine ENGINE``, from the source
  on S3 to the offline Delta table on S3 and the online table, end to end, once per
  engine: ``spark`` (local Spark, its start included) and ``python`` (one process, no
  JVM; what ``auto`` picks for windows of at most 10M input rows), each started as the
  operator starts it, the window's pending record written first (untimed) and taken
  over by the job. The job's report gives where the time went. At sizes of at most
  10k entities, the python engine also runs a transformed view
  (:data:`TRANSFORMATION`: the same features computed by SQL, run one source batch at
  a time), whose memory should match the plain view's.
- Feast: ``FeatureStore.materialize`` of the same rows (read from local parquet files:
  Feast's file offline store) into DynamoDB, from a virtualenv of its own
  (``$FEATUREKUBE_CACHE/bench/feast-<version>``, made on first use), with
  ``apply`` done beforehand and not timed. Feast writes online only.
- the floor: the items featurekube writes (each entity's newest row, with the same
  attributes, its TTL's expiry included), built before the clock starts and written
  with BatchWriteItem from 8 threads, nothing else. featurekube's ``online_write`` also
  builds its items, holds the write lease, raises the watermark, waits the pending
  record's settle time and runs beside the offline write (which shares the CPU and
  moto), so the ratio is an upper bound of the writer's own overhead.

Before the sizes, a steady state: a view on a 10-minute schedule whose windows hold
10k rows each (of 10k entities), each engine running one window untimed and then the
next ones, each timed from the job's start to its exit; the job's report adds
``published``, the seconds from its process's start to the window's publication,
before the statistics are stored and the interpreter exits. A few
thousand items are all such a window writes, and moto takes most of its time serving
them; so the python engine's windows, and their bare loop, run a second time with the
online table on dynalite (benchmarks/_dynalite.py, when Node is there), a DynamoDB
that does not share the job's interpreter.

Every Python process runs from compiled bytecode, as the images ship it (they install
with ``--compile-bytecode``): the subjects get ``PYTHONPYCACHEPREFIX`` under
``$FEATUREKUBE_CACHE/bench/pycache`` whatever ``PYTHONDONTWRITEBYTECODE`` says, and
each subject runs once untimed first (Feast on the steady state's rows), so that no
timed run compiles its imports.

Sizes: ``FEATUREKUBE_BENCH_MATERIALIZE_SIZES``, e.g. ``1000000:10000,10000000:1000000``
(rows:entities; default: 1M and 10M rows, each with 10k and 1M entities). Engines:
``FEATUREKUBE_BENCH_MATERIALIZE_ENGINES`` (default ``spark,python``). Timed steady
windows per engine: ``FEATUREKUBE_BENCH_MATERIALIZE_STEADY`` (default 3; 0 runs only
the untimed ones).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import yaml

from benchmarks import _dynalite, _harness, _memory, _moto
from benchmarks.peers import feast as feast_peer
from featurekube._platform import processes
from featurekube.online import keys, layout, values
from featurekube.spec import v1alpha1
from featurekube_operator.dynamo import OnlineTables

FEAST_VERSION = feast_peer.VERSION
DEFAULT_SIZES = (
    (1_000_000, 10_000),
    (10_000_000, 10_000),
    (1_000_000, 1_000_000),
    (10_000_000, 1_000_000),
)
BUCKET = "featurekube-bench"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FILE_ROWS = 1_000_000
VEHICLES = np.array(["sedan", "suv", "hatchback", "electric", "van"])
STEADY_ROWS = 10_000
"""Rows of one steady-state window (and the entities they are drawn from)."""
STEADY_STEP = dt.timedelta(minutes=10)
DYNAMODB_ENDPOINT = "AWS_ENDPOINT_URL_DYNAMODB"
"""botocore's endpoint for DynamoDB alone, ahead of ``AWS_ENDPOINT_URL``."""
TTL_SECONDS = 2 * 86_400
"""The view's TTL (``2d``): the bare loop's items carry its expiry, as featurekube's do."""


def _steady_windows() -> int:
    return int(os.environ.get("FEATUREKUBE_BENCH_MATERIALIZE_STEADY", "3"))


def _engines() -> list[str]:
    text = os.environ.get("FEATUREKUBE_BENCH_MATERIALIZE_ENGINES", "spark,python")
    return [part.strip() for part in text.split(",") if part.strip()]


def _sizes() -> list[tuple[int, int]]:
    text = os.environ.get("FEATUREKUBE_BENCH_MATERIALIZE_SIZES")
    if not text:
        return list(DEFAULT_SIZES)
    return [(int(r), int(e)) for r, e in (part.split(":") for part in text.split(","))]


def _label(rows: int, entities: int) -> str:
    def short(n: int) -> str:
        return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"

    return f"{short(rows)} rows/{short(entities)} ent"


# -- data ---------------------------------------------------------------------------------


def _chunk(rows: int, entities: int, start: int, count: int) -> pa.Table:
    """Rows [start, start + count) of the deterministic data set: every entity appears
    (the first ``entities`` rows), then entities at random; one day of event times."""
    rng = np.random.default_rng(start)
    index = np.arange(start, start + count)
    ids = np.where(index < entities, index, rng.integers(0, entities, count)) + 1
    day_us = 86_400_000_000
    event = (T0.timestamp() * 1_000_000 + rng.integers(0, day_us, count)).astype("int64")
    created = event + rng.integers(1_000_000, 600_000_000, count)
    timestamp = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(event, pa.int64()).cast(timestamp),
            "created_timestamp": pa.array(created, pa.int64()).cast(timestamp),
            "conv_rate": rng.random(count),
            "acc_rate": rng.random(count),
            "avg_daily_trips": rng.integers(0, 100, count),
            "rating": np.round(rng.uniform(3, 5, count), 2),
            "vehicle_type": pa.array(VEHICLES[rng.integers(0, 5, count)]),
        }
    )


def _write_data(rows: int, entities: int, local: Path, s3_uri: str) -> None:
    filesystem, s3_path = pyarrow.fs.FileSystem.from_uri(s3_uri)
    local.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, rows, FILE_ROWS)):
        table = _chunk(rows, entities, start, min(FILE_ROWS, rows - start))
        pq.write_table(table, local / f"part-{part:03d}.parquet")
        pq.write_table(table, f"{s3_path}/part-{part:03d}.parquet", filesystem=filesystem)


def _write_steady_data(windows: int, local: Path, s3_uri: str) -> None:
    """``windows`` files of one steady window each: :data:`STEADY_ROWS` rows of as many
    entities, event times within the window, created a second later."""
    filesystem, s3_path = pyarrow.fs.FileSystem.from_uri(s3_uri)
    local.mkdir(parents=True, exist_ok=True)
    for window in range(windows):
        table = _steady_table(window)
        pq.write_table(table, local / f"part-{window:03d}.parquet")
        pq.write_table(table, f"{s3_path}/part-{window:03d}.parquet", filesystem=filesystem)


def _steady_table(window: int) -> pa.Table:
    """The rows of steady window ``window``."""
    step_us = int(STEADY_STEP.total_seconds()) * 1_000_000
    timestamp = pa.timestamp("us", tz="UTC")
    table = _chunk(STEADY_ROWS, STEADY_ROWS, window * STEADY_ROWS, STEADY_ROWS)
    rng = np.random.default_rng(window)
    start = int(T0.timestamp()) * 1_000_000 + window * step_us
    event = start + rng.integers(0, step_us, STEADY_ROWS)
    table = table.set_column(1, "event_timestamp", pa.array(event).cast(timestamp))
    return table.set_column(2, "created_timestamp", pa.array(event + 1_000_000).cast(timestamp))


TRANSFORMATION = (
    "SELECT driver_id, event_timestamp, created_timestamp, conv_rate * 2 AS conv_rate, "
    "acc_rate, avg_daily_trips + 1 AS avg_daily_trips, rating, "
    "UPPER(vehicle_type) AS vehicle_type FROM source WHERE acc_rate >= 0"
)
"""The transformed view's SQL: the same features, computed from one source row each."""
TRANSFORMED_MAX_ENTITIES = 10_000
"""The transformed view runs at sizes of at most this many entities, where the online
write does not swamp what the transformation costs."""


def _view_body(source: str, transformation: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "owner": "bench@example.com",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": source, "createdTimestampField": "created_timestamp"}},
        "features": [
            {"name": "conv_rate", "type": "float64"},
            {"name": "acc_rate", "type": "float64"},
            {"name": "avg_daily_trips", "type": "int64"},
            {"name": "rating", "type": "float64"},
            {"name": "vehicle_type", "type": "string"},
        ],
        "ttl": "2d",  # TTL_SECONDS
    }
    if transformation is not None:
        spec["transformation"] = {"sql": transformation}
    return {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-stats", "namespace": "bench"},
        "spec": spec,
    }


# -- measuring a process ------------------------------------------------------------------------


def _measured(argv: list[str], env: dict[str, str]) -> tuple[float, _memory.TreeWatch, str]:
    """Wall seconds, the watch of the process tree's memory (benchmarks/_memory.py),
    and stdout of ``argv``."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        with _memory.TreeWatch(child.pid) as memory:
            status = child.wait()
        elapsed = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if status != 0:
        raise RuntimeError(f"{argv[:3]} failed ({status}):\n{stderr[-4000:]}")
    return elapsed, memory, stdout


# -- the subjects -------------------------------------------------------------------------------


def _featurekube(
    tmp: Path,
    source: str,
    tag: str,
    env: dict[str, str],
    engine: str,
    window: tuple[dt.datetime, dt.datetime] = (T0, T0 + dt.timedelta(days=1)),
    table: str | None = None,
    transformation: str | None = None,
) -> tuple[float, _memory.TreeWatch, dict[str, Any]]:
    """One window's job, end to end; into ``table`` when given (it is kept), else
    into a table of its own, made and deleted around it."""
    body = _view_body(source, transformation)
    spec = tmp / "featureview.yaml"
    spec.write_text(yaml.safe_dump(body))
    own = table is None
    table = table or f"fk-bench-{tag}"
    if own:
        boto3.client("dynamodb").create_table(**layout.table_definition(table, {}))
    # As the operator starts a job: the window recorded as pending first, untimed.
    view = v1alpha1.FeatureView.model_validate(body)
    pending = OnlineTables(boto3.client("dynamodb")).open_window(table, view, *window)
    if pending is None:
        raise RuntimeError(f"{table}: the window's pending record could not be written")
    argv = [
        sys.executable,
        "-m",
        "featurekube.materialize",
        "--spec",
        str(spec),
        "--start",
        window[0].isoformat(),
        "--end",
        window[1].isoformat(),
        "--offline-uri",
        f"s3://{BUCKET}/offline/{tag}",
        "--online-table",
        table,
        "--engine",
        engine,
        "--pending-run",
        pending.run,
        *(["--pending-superseded", pending.superseded] if pending.superseded else []),
    ]
    try:
        elapsed, memory, stdout = _measured(argv, env)
    finally:
        if own:
            boto3.client("dynamodb").delete_table(TableName=table)
    report = json.loads(stdout.strip().splitlines()[-1])
    return elapsed, memory, report


FEAST_SCRIPT = textwrap.dedent(
    """
    import datetime as dt, json, sys, time
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64, String

    repo, data, endpoint, region, project = sys.argv[1:6]
    config = RepoConfig(
        project=project, registry=f"{repo}/registry.db", provider="local",
        offline_store={"type": "file"},
        online_store={"type": "dynamodb", "region": region, "endpoint_url": endpoint},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(path=data, timestamp_field="event_timestamp",
                        created_timestamp_column="created_timestamp")
    view = FeatureView(
        name="driver_stats", entities=[driver], ttl=dt.timedelta(days=2), source=source,
        schema=[Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64),
                Field(name="avg_daily_trips", dtype=Int64), Field(name="rating", dtype=Float64),
                Field(name="vehicle_type", dtype=String)],
    )
    if sys.argv[6] == "apply":
        store.apply([driver, view])
        sys.exit(0)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    began = time.perf_counter()
    store.materialize(start, start + dt.timedelta(days=1), feature_views=["driver_stats"])
    print(json.dumps({"materialize": time.perf_counter() - began}))
    """
)


def _feast_python() -> Path:
    return feast_peer.python(feast_peer.cache() / "bench" / f"feast-{FEAST_VERSION}", "aws")


def _feast(
    tmp: Path, data: Path, tag: str, env: dict[str, str]
) -> tuple[float, _memory.TreeWatch, float]:
    python = _feast_python()
    script = tmp / "feast_materialize.py"
    script.write_text(FEAST_SCRIPT)
    repo = tmp / f"feast-repo-{tag}"
    repo.mkdir()
    project = f"bench_{tag.replace('-', '_')}"
    argv = [
        str(python),
        str(script),
        str(repo),
        str(data),
        env["AWS_ENDPOINT_URL"],
        env["AWS_REGION"],
        project,
    ]
    subprocess.run([*argv, "apply"], check=True, env=env, capture_output=True)
    try:
        elapsed, memory, stdout = _measured([*argv, "run"], env)
    finally:
        boto3.client("dynamodb").delete_table(TableName=f"{project}.driver_stats")
    return elapsed, memory, json.loads(stdout.strip().splitlines()[-1])["materialize"]


def _newest_items(rows: int, entities: int) -> list[dict[str, Any]]:
    """The items featurekube writes: each entity's newest row, as online items."""
    chunks = (
        _chunk(rows, entities, start, min(FILE_ROWS, rows - start))
        for start in range(0, rows, FILE_ROWS)
    )
    return _newest_items_of(chunks)


def _newest_items_of(chunks: Iterable[pa.Table]) -> list[dict[str, Any]]:
    """Each entity's newest row of ``chunks``, as online items."""
    newest: dict[int, tuple[int, int, dict[str, Any]]] = {}
    for chunk in chunks:
        columns = {
            name: chunk.column(name).to_pylist()
            for name in chunk.column_names
            if "timestamp" not in name
        }
        events = chunk.column("event_timestamp").cast(pa.int64()).to_pylist()
        created = chunk.column("created_timestamp").cast(pa.int64()).to_pylist()
        for i, driver in enumerate(columns["driver_id"]):
            held = newest.get(driver)
            if held is None or (events[i], created[i]) > held[:2]:
                newest[driver] = (events[i], created[i], {k: v[i] for k, v in columns.items()})
    types = {
        "conv_rate": "float64",
        "acc_rate": "float64",
        "avg_daily_trips": "int64",
        "rating": "float64",
        "vehicle_type": "string",
    }
    items = []
    for driver, (event, created, row) in newest.items():
        item: dict[str, Any] = {
            layout.ENTITY_KEY: {
                "S": keys.encode_entity_key({"driver_id": "int64"}, {"driver_id": driver})
            }
        }
        item.update({name: values.to_attribute(t, row[name]) for name, t in types.items()})
        item[layout.EVENT_TIME] = {"N": str(event)}
        item[layout.CREATED_TIME] = {"N": str(created)}
        # The TTL's expiry, whole seconds rounded up: the same attribute featurekube
        # writes, so that both sides send the same bytes.
        item[layout.EXPIRES_AT] = {"N": str(-(-(event + TTL_SECONDS * 1_000_000) // 1_000_000))}
        items.append(item)
    return items


def _bare_batch_writes(items: list[dict[str, Any]], tag: str) -> float:
    from botocore.config import Config

    client = boto3.client(
        "dynamodb", config=Config(max_pool_connections=12, parameter_validation=False)
    )
    table = f"bare-bench-{tag}"
    client.create_table(**layout.table_definition(table, {}))
    groups = [items[i : i + 25] for i in range(0, len(items), 25)]

    def write(group: list[dict[str, Any]]) -> None:
        pending = [{"PutRequest": {"Item": item}} for item in group]
        while pending:
            answer = client.batch_write_item(RequestItems={table: pending})
            pending = answer.get("UnprocessedItems", {}).get(table, [])

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(write, groups))
    elapsed = time.perf_counter() - began
    client.delete_table(TableName=table)
    return elapsed


# -- the benchmark --------------------------------------------------------------------------------


def run() -> _harness.Report:
    report = _harness.Report(
        name="materialize",
        description="one window of a plain view, end to end, beside Feast's materialize "
        "(moto S3 and DynamoDB)",
        baseline="Feast",
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        pid, aws = _moto.start(tmp)
        env = {
            **os.environ,
            **aws,
            "PYSPARK_PYTHON": sys.executable,
            "PYTHONPYCACHEPREFIX": str(feast_peer.cache() / "bench" / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update(aws)
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            try:
                _steady_state(report, tmp, env)
            except Exception as exc:  # keep what the sizes measure
                report.notes["failed: steady state"] = f"{exc}"[:2000]
                print(f"materialize benchmark: the steady state failed: {exc}")
            for rows, entities in _sizes():
                try:
                    _one_size(report, tmp, rows, entities, env)
                except Exception as exc:  # keep what the other sizes measured
                    report.notes[f"failed: {_label(rows, entities)}"] = f"{exc}"[:2000]
                    print(f"materialize benchmark: {_label(rows, entities)} failed: {exc}")
                finally:
                    _drop_data(tmp, rows, entities)
        finally:
            processes.stop(pid)
    feast_python = _feast_python()
    report.peers[f"Feast's virtualenv, {feast_python.parent.parent}"] = feast_peer.versions(
        feast_python
    )
    report.notes["feast"] = (
        f"Feast {FEAST_VERSION}, file offline store over the same rows as local parquet, "
        "DynamoDB online store on the same moto server; its apply is not timed"
    )
    report.notes["featurekube"] = (
        "python -m featurekube.materialize --engine spark (local[2] Spark, 2g driver; end to "
        "end includes Spark's start) and --engine python (one process, no JVM), source and "
        "offline table on moto's S3"
    )
    report.notes["launch"] = (
        "each featurekube job is started as the operator starts it: the window recorded "
        "as pending in the online table first (not timed), the job taking the record over "
        "(--pending-run)"
    )
    report.notes["bytecode"] = (
        "every subject runs from compiled bytecode (PYTHONPYCACHEPREFIX), as the images "
        "ship it, after one untimed run of its own"
    )
    return report


def _steady_state(report: _harness.Report, tmp: Path, env: dict[str, str]) -> None:
    """Each engine's steady windows, after one untimed (which also warms the bytecode
    cache), into a table that holds the earlier windows, with the bare loop's floor;
    the python engine's again with its online table on dynalite; then Feast once
    untimed over the same rows, for its bytecode."""
    timed = _steady_windows()
    local, source = tmp / "data-steady", f"s3://{BUCKET}/raw/steady/"
    _write_steady_data(timed + 1, local, source)
    for engine in _engines():
        _steady_windows_of(report, tmp, source, env, engine, engine, f"featurekube ({engine})")
    _steady_floor(report, "bare BatchWriteItem loop", timed)
    if "python" in _engines():
        try:
            _steady_on_dynalite(report, tmp, source, env, timed)
        except Exception as exc:  # keep what moto measured
            report.notes["failed: steady state on dynalite"] = f"{exc}"[:2000]
            print(f"materialize benchmark: the steady state on dynalite failed: {exc}")
    print("materialize benchmark: Feast, once untimed (its bytecode)", flush=True)
    _feast(tmp, local, "steady", env)
    import shutil

    shutil.rmtree(local, ignore_errors=True)
    boto3.resource("s3").Bucket(BUCKET).objects.filter(Prefix="raw/steady/").delete()
    boto3.resource("s3").Bucket(BUCKET).objects.filter(Prefix="offline/steady").delete()


def _steady_windows_of(
    report: _harness.Report,
    tmp: Path,
    source: str,
    env: dict[str, str],
    engine: str,
    tag: str,
    subject: str,
) -> None:
    """``engine``'s steady windows, one untimed first, into tables named by ``tag``,
    reported as ``subject``."""
    label = f"steady {STEADY_ROWS // 1000}k-row window"
    table = f"fk-bench-steady-{tag}"
    boto3.client("dynamodb").create_table(**layout.table_definition(table, {}))
    samples: list[float] = []
    phases: dict[str, list[float]] = {}
    try:
        for index in range(_steady_windows() + 1):
            window = (T0 + index * STEADY_STEP, T0 + (index + 1) * STEADY_STEP)
            elapsed, _, job = _featurekube(tmp, source, f"steady-{tag}", env, engine, window, table)
            print(f"  {subject}: {label} #{index}: {elapsed:.3f} s {job['timingsSeconds']}")
            if index:
                samples.append(elapsed)
                for phase, seconds in job["timingsSeconds"].items():
                    phases.setdefault(phase, []).append(seconds)
    finally:
        boto3.client("dynamodb").delete_table(TableName=table)
    if samples:
        report.add(subject, f"{label} end-to-end", "s", samples)
        for phase, seconds_ in phases.items():
            report.add(subject, f"{label} {phase}", "s", seconds_)
        report.notes[f"{subject} {label} rows"] = json.dumps(job["rows"])


def _steady_floor(report: _harness.Report, subject: str, timed: int) -> None:
    """The floor of the steady windows' online write: the last window's items (those
    of its entities newer than the earlier windows wrote, which in this data is all
    of them) in a bare loop into an empty table."""
    if not timed:
        return
    label = f"steady {STEADY_ROWS // 1000}k-row window"
    items = _newest_items_of([_steady_table(timed)])
    bare = _bare_batch_writes(items, "steady")
    report.add(subject, f"{label} online_write", "s", [bare])
    report.notes[f"{subject} {label} items"] = str(len(items))
    print(f"  {subject}: {label}, {len(items)} items: {bare:.3f} s")


def _steady_on_dynalite(
    report: _harness.Report, tmp: Path, source: str, env: dict[str, str], timed: int
) -> None:
    """The python engine's steady windows and their floor with the online table on
    dynalite (benchmarks/_dynalite.py), the rest still on moto: how far the window's
    time is the store's."""
    missing = _dynalite.available()
    if missing:
        report.notes["steady state on dynalite"] = f"not measured: {missing}"
        return
    pid, endpoint = _dynalite.start(tmp)
    on_dynalite = {DYNAMODB_ENDPOINT: endpoint}
    try:
        # The jobs' environment, and this process's for its tables and bare loop.
        with mock.patch.dict(os.environ, on_dynalite):
            _steady_windows_of(
                report,
                tmp,
                source,
                {**env, **on_dynalite},
                "python",
                "python-dynalite",
                "featurekube (python, dynalite)",
            )
            _steady_floor(report, "bare BatchWriteItem loop (dynalite)", timed)
    finally:
        processes.stop(pid)
    report.notes["dynalite"] = (
        f"dynalite {_dynalite.VERSION} (Node {_node_version()}), tables in memory: the "
        "online table of the '(dynalite)' subjects; their source and offline table stay on moto"
    )


def _node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


def _drop_data(tmp: Path, rows: int, entities: int) -> None:
    """Free the size's data, in moto's S3 and on disk, before the next size."""
    import shutil

    tag = f"{rows}-{entities}"
    shutil.rmtree(tmp / f"data-{tag}", ignore_errors=True)
    bucket = boto3.resource("s3").Bucket(BUCKET)
    bucket.objects.filter(Prefix=f"raw/{tag}/").delete()
    bucket.objects.filter(Prefix=f"offline/{tag}/").delete()


def _add(report: _harness.Report, subject: str, metric: str, unit: str, value: float) -> None:
    report.add(subject, metric, unit, [value])
    print(f"  {subject}: {metric} = {value:.3f} {unit}", flush=True)


def _one_size(
    report: _harness.Report, tmp: Path, rows: int, entities: int, env: dict[str, str]
) -> None:
    label = _label(rows, entities)
    tag = f"{rows}-{entities}"
    local = tmp / f"data-{tag}"
    source = f"s3://{BUCKET}/raw/{tag}/"
    print(f"materialize benchmark: {label}: generating data", flush=True)
    _write_data(rows, entities, local, source)

    online_writes = {}
    runs: list[tuple[str, str, str | None]] = [
        (f"featurekube ({engine})", engine, None) for engine in _engines()
    ]
    if "python" in _engines() and entities <= TRANSFORMED_MAX_ENTITIES:
        runs.append(("featurekube (python, transformed view)", "python", TRANSFORMATION))
    for subject, engine, transformation in runs:
        print(f"materialize benchmark: {label}: {subject}", flush=True)
        elapsed, watch, job = _featurekube(
            tmp, source, tag, env, engine, transformation=transformation
        )
        if job.get("engine", engine) != engine:
            raise RuntimeError(f"asked for the {engine} engine, the job ran {job['engine']}")
        memory = watch.sums(_memory.jvm_or_python)
        _add(report, subject, f"{label} end-to-end", "s", elapsed)
        _add(report, subject, f"{label} rows/s", "r/s", rows / elapsed)
        _add(report, subject, f"{label} peak memory", "MiB", memory["total"])
        for kind in ("JVM", "Python"):
            mib = memory.get(kind, 0.0)
            _add(report, subject, f"{label} peak memory, {kind} processes", "MiB", mib)
        report.notes[f"{subject} {label} peak memory"] = _memory.describe(watch.at_peak())
        for phase, seconds in job["timingsSeconds"].items():
            _add(report, subject, f"{label} {phase}", "s", seconds)
        report.notes[f"{subject} {label}"] = json.dumps(job["rows"])
        online_writes[subject] = job["timingsSeconds"].get("online_write")

    print(f"materialize benchmark: {label}: Feast", flush=True)
    elapsed, watch, call = _feast(tmp, local, tag, env)
    _add(report, "Feast", f"{label} end-to-end", "s", elapsed)
    _add(report, "Feast", f"{label} rows/s", "r/s", rows / elapsed)
    _add(report, "Feast", f"{label} peak memory", "MiB", watch.total_mib())
    report.notes[f"Feast {label} peak memory"] = _memory.describe(watch.at_peak())
    _add(report, "Feast", f"{label} materialize() call", "s", call)

    print(f"materialize benchmark: {label}: bare BatchWriteItem loop", flush=True)
    items = _newest_items(rows, entities)
    bare = _bare_batch_writes(items, tag)
    _add(report, "bare BatchWriteItem loop", f"{label} online_write", "s", bare)
    for subject, online in online_writes.items():
        if online:
            report.notes[f"{subject} online write vs bare loop, {label}"] = f"{online / bare:.2f}x"
    del items
