"""Training pulls: ``get_historical_features`` beside Feast's and hand-written DuckDB.

Every subject pulls the same features for the same entity rows from the same files,
each in a process of its own, whose peak resident memory (its tree's high-water marks,
benchmarks/_memory.py) is the subject's:

- ``featurekube``: ``FeatureStore.get_historical_features(...).to_pandas()``, the
  default engine (deltalake + DuckDB, no JVM), reading the Delta tables;
- ``duckdb asof by hand``: one ``ASOF LEFT JOIN`` per view over the tables' parquet
  files and nothing more (no tie-break on created time, no TTL, rows in DuckDB's
  order): the practical floor, the baseline of the ratios;
- ``duckdb asof by hand, same rules``: the same query made to give featurekube's
  answer (ties to the greater created time, TTLs, the caller's order);
- ``feast (file store)`` and ``feast (duckdb store)``: Feast 0.67.0's
  ``get_historical_features(...).to_df()`` with its default (Dask) and its DuckDB
  offline store, in Feast's own virtualenv under ``~/.cache/featurekube/peers/``
  (``$FEATUREKUBE_CACHE/peers``), made on first use so its pins never touch ours.

Data: three views (40%, 30% and 30% of the feature rows; TTLs 7 days, none, 3 days),
100,000 drivers and 100,000 riders, event times over 30 days in microseconds, created
times up to two hours later and 1% of rows repeating an event time; entity rows spread
over the same days. Written once per size, as Delta tables in featurekube's offline
layout, under ``~/.cache/featurekube/bench-data/``. For the smallest size the results
are compared, and the share of equal feature values is reported.

Environment (defaults are the sizes the benchmark is specified for):

- ``FEATUREKUBE_BENCH_TRAINING_ENTITY_ROWS``: entity rows per pull, comma-separated
  (``100000,1000000``);
- ``FEATUREKUBE_BENCH_TRAINING_FEATURE_ROWS``: feature rows in all views (``10000000``);
- ``FEATUREKUBE_BENCH_TRAINING_REPEAT``: timed pulls per subject and size (``3``;
  Feast's file store is pulled once);
- ``FEATUREKUBE_BENCH_TRAINING_PEERS``: which Feast stores to run
  (``feast-file,feast-duckdb``; empty for none);
- ``FEATUREKUBE_BENCH_TRAINING_TIMEOUT``: seconds a subject may take per size
  (``1800``); ``FEATUREKUBE_BENCH_TRAINING_MEMORY_MIB``: resident memory at which a
  subject is stopped (``12288``), so a peer cannot take the machine down.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness, _memory
from benchmarks.peers import feast as feast_peer

FEAST_VERSION = feast_peer.VERSION
SEED = 20260110
DATA_VERSION = 1
"""Bumped when the generated data changes, so cached data is made again."""
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 30
DRIVERS = 100_000
RIDERS = 100_000
NAMESPACE = "bench"
VIEWS: list[dict[str, Any]] = [
    {
        "name": "driver_hourly",
        "entity": "driver_id",
        "share": 0.4,
        "ttl_seconds": 7 * 86400,
        "features": {"conv_rate": "float64", "acc_rate": "float64", "trips_today": "int64"},
    },
    {
        "name": "driver_profile",
        "entity": "driver_id",
        "share": 0.3,
        "ttl_seconds": 0,
        "features": {"rating": "float64", "vehicle": "string"},
    },
    {
        "name": "rider_stats",
        "entity": "rider_id",
        "share": 0.3,
        "ttl_seconds": 3 * 86400,
        "features": {"lifetime_trips": "int64", "avg_tip": "float64"},
    },
]
FEATURES = [f for view in VIEWS for f in view["features"]]
BASELINE = "duckdb asof by hand"
SUBJECTS = {
    "featurekube": "featurekube",
    "duckdb-floor": BASELINE,
    "duckdb-rules": "duckdb asof by hand, same rules",
    "feast-file": "feast (file store)",
    "feast-duckdb": "feast (duckdb store)",
}


def _cache() -> Path:
    root = os.environ.get("FEATUREKUBE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "featurekube"


def _sizes() -> list[int]:
    text = os.environ.get("FEATUREKUBE_BENCH_TRAINING_ENTITY_ROWS", "100000,1000000")
    return [int(part) for part in text.split(",") if part.strip()]


# --- data ---------------------------------------------------------------------------


def _table_dir(root: Path, view: str) -> Path:
    """Where featurekube's layout puts the view's table: <offline>/<namespace>/<view>/v1."""
    return root / "offline" / NAMESPACE / view.replace("_", "-") / "v1"


def _make_data(feature_rows: int, entity_sizes: list[int]) -> Path:
    """The benchmark's tables and entity rows, made once per size and kept."""
    import deltalake
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = _cache() / "bench-data" / f"training-v{DATA_VERSION}-{feature_rows}-{SEED}"
    rng = np.random.default_rng(SEED)
    start = int(START.timestamp() * 1_000_000)
    span = DAYS * 86400 * 1_000_000
    micros = pa.timestamp("us", tz="UTC")
    for view in VIEWS:
        target = _table_dir(root, view["name"])
        if (target / "_delta_log").exists():
            continue
        rows = int(feature_rows * view["share"])
        keys = rng.integers(0, DRIVERS if view["entity"] == "driver_id" else RIDERS, rows)
        events = start + rng.integers(0, span, rows)
        # 1% of rows repeat the event time of the row before them, for another value.
        repeat = np.flatnonzero(rng.random(rows) < 0.01)
        repeat = repeat[repeat > 0]
        keys[repeat], events[repeat] = keys[repeat - 1], events[repeat - 1]
        created = events + rng.integers(0, 2 * 3600 * 1_000_000, rows)
        columns: dict[str, Any] = {view["entity"]: pa.array(keys, pa.int64())}
        for name, kind in view["features"].items():
            if kind == "float64":
                columns[name] = pa.array(rng.random(rows))
            elif kind == "int64":
                columns[name] = pa.array(rng.integers(0, 500, rows))
            else:
                choices = np.array(["sedan", "suv", "hatchback", "electric", "van"])
                columns[name] = pa.array(choices[rng.integers(0, len(choices), rows)])
        columns["event_timestamp"] = pa.array(events).cast(micros)
        columns["created_timestamp"] = pa.array(created).cast(micros)
        columns["ingestion_timestamp"] = columns["created_timestamp"]
        table = pa.table(columns)
        table = table.append_column("event_date", pc.cast(table["event_timestamp"], pa.date32()))
        deltalake.write_deltalake(str(target), table, partition_by=["event_date"])
    for size in entity_sizes:
        path = root / f"entities-{size}.parquet"
        if path.exists():
            continue
        times = start + rng.integers(0, span + 86400 * 1_000_000, size)
        entities = pa.table(
            {
                "request_id": pa.array(np.arange(size), pa.int64()),
                "driver_id": pa.array(rng.integers(0, DRIVERS, size), pa.int64()),
                "rider_id": pa.array(rng.integers(0, RIDERS, size), pa.int64()),
                "event_timestamp": pa.array(times).cast(micros),
                "label": pa.array(rng.random(size)),
            }
        )
        pq.write_table(entities, path)
    return root


def _spec(root: Path, size: int, subject: str, scratch: Path, repeat: int) -> Path:
    views = [
        {
            "name": view["name"],
            "entity": view["entity"],
            "features": view["features"],
            "ttl_seconds": view["ttl_seconds"],
            "path": str(_table_dir(root, view["name"])),
        }
        for view in VIEWS
    ]
    spec = {
        "offline_store": "file" if subject == "feast-file" else "duckdb",
        "offline_uri": str(root / "offline"),
        "repo": str(scratch / f"feast-{subject}-{size}"),
        "entities": str(root / f"entities-{size}.parquet"),
        "views": views,
        "repeat": repeat,
        "output": str(scratch / f"{subject}-{size}.parquet"),
    }
    path = scratch / f"{subject}-{size}.json"
    path.write_text(json.dumps(spec))
    return path


# --- subjects, each run in a process of its own -------------------------------------


def _pull_featurekube(spec: dict[str, Any]) -> Any:
    import pandas as pd  # type: ignore[import-untyped]

    # Imported before the clock starts, as duckdb is for the hand-written subjects.
    import featurekube.joins.duckdb  # noqa: F401
    from featurekube.spec import v1alpha1
    from featurekube.store import FeatureStore

    definitions = [
        v1alpha1.FeatureView.model_validate(
            {
                "metadata": {"name": view["name"].replace("_", "-"), "namespace": NAMESPACE},
                "spec": {
                    "owner": "bench",
                    "entities": [{"name": view["entity"], "type": "int64"}],
                    "source": {"batch": {"path": "s3://bench/raw/"}},
                    "features": [{"name": n, "type": t} for n, t in view["features"].items()],
                    **({"ttl": f"{view['ttl_seconds']}s"} if view["ttl_seconds"] else {}),
                },
            }
        )
        for view in spec["views"]
    ]
    store = FeatureStore(definitions, namespace=NAMESPACE, offline_uri=spec["offline_uri"])
    references = [
        f"{view['name'].replace('_', '-')}:{feature}"
        for view in spec["views"]
        for feature in view["features"]
    ]
    entity_df = pd.read_parquet(spec["entities"])
    return entity_df, lambda: store.get_historical_features(entity_df, references).to_pandas()


def _floor_sql(spec: dict[str, Any], *, same_rules: bool) -> str:
    """The hand-written query: naive, or made to follow featurekube's rules."""
    selected, joins = [], []
    for index, view in enumerate(spec["views"]):
        alias, key = f"v{index}", view["entity"]
        files = f"read_parquet('{view['path']}/**/*.parquet', hive_partitioning = false)"
        features = list(view["features"])
        if not same_rules:
            selected += [f"{alias}.{f}" for f in features]
            joins.append(
                f"ASOF LEFT JOIN {files} {alias} ON e.{key} = {alias}.{key} "
                f"AND e.event_timestamp >= {alias}.event_timestamp"
            )
            continue
        fresh = "TRUE"
        if view["ttl_seconds"]:
            fresh = f"e.event_timestamp - {alias}.__e <= INTERVAL {view['ttl_seconds']} SECOND"
        selected += [f"CASE WHEN {fresh} THEN {alias}.{f} END AS {f}" for f in features]
        joins.append(
            f"ASOF LEFT JOIN (SELECT {key}, event_timestamp AS __e, {', '.join(features)}, "
            "{'e': event_timestamp, 'c': created_timestamp} AS __o "
            f"FROM {files}) {alias} ON e.{key} = {alias}.{key} AND e.__o >= {alias}.__o"
        )
    if not same_rules:
        return f"SELECT e.*, {', '.join(selected)} FROM entity_df e {' '.join(joins)}"
    return (
        f"SELECT e.* EXCLUDE (__row, __o), {', '.join(selected)} FROM (SELECT *, "
        "{'e': event_timestamp, 'c': 'infinity'::TIMESTAMPTZ} AS __o FROM entity_df) e "
        f"{' '.join(joins)} ORDER BY e.__row"
    )


def _pull_duckdb(spec: dict[str, Any], *, same_rules: bool) -> Any:
    import duckdb
    import pandas as pd

    entity_df = pd.read_parquet(spec["entities"])
    if same_rules:
        entity_df["__row"] = np.arange(len(entity_df))
    sql = _floor_sql(spec, same_rules=same_rules)

    def pull() -> Any:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("entity_df", entity_df)
        return con.sql(sql).df()

    return entity_df, pull


def _worker(subject: str, spec_path: str) -> int:
    """Run one subject's pulls (``python -m benchmarks.bench_training SUBJECT SPEC``)."""
    spec = json.loads(Path(spec_path).read_text())
    if subject == "featurekube":
        _, pull = _pull_featurekube(spec)
    else:
        _, pull = _pull_duckdb(spec, same_rules=subject == "duckdb-rules")
    seconds, cpu, result = [], [], None
    for _ in range(spec["repeat"]):
        began, used = time.perf_counter(), _cpu_seconds()
        result = pull()
        seconds.append(time.perf_counter() - began)
        cpu.append(_cpu_seconds() - used)
    if spec.get("output") and result is not None:
        result.to_parquet(spec["output"])
    # Read last, just before exiting: the harness's samples may miss the end.
    peak = _memory.own_peak_mib()
    rows = 0 if result is None else len(result)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak, "rows": rows}))
    return 0


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: steadier than wall time on a busy machine."""
    times = os.times()
    return times.user + times.system


def _feast_python() -> Path:
    """Feast's virtualenv, made on first use."""
    return feast_peer.python(_cache() / "peers" / f"feast-{FEAST_VERSION}", "duckdb")


def _run(command: list[str], timeout: float, memory_mib: float) -> dict[str, Any]:
    """Run a subject's process; stop it past ``timeout`` or ``memory_mib`` resident.
    ``peak_mib`` in the answer is the subject's tree's peak (benchmarks/_memory.py),
    with the figure the process printed of itself just before exiting taken in."""
    repo = Path(__file__).resolve().parents[1]
    # Files, not pipes: a subject's chatter on stderr cannot fill a pipe and stall it.
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, cwd=repo)
        began = time.monotonic()
        with _memory.TreeWatch(process.pid, interval=0.1) as memory:
            while process.poll() is None:
                over_memory = memory.rss_mib > memory_mib
                if over_memory or time.monotonic() - began > timeout:
                    process.kill()
                    process.wait()
                    why = f"over {memory_mib:.0f} MiB" if over_memory else f"over {timeout:.0f} s"
                    return {"error": f"stopped: {why}"}
                time.sleep(0.2)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if process.returncode != 0:
        return {"error": f"failed: {err.strip().splitlines()[-1] if err.strip() else '?'}"}
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if "peak_mib" in found:
        memory.record(process.pid, found["peak_mib"])
    found["peak_mib"] = memory.total_mib()
    found["processes"] = _memory.describe(memory.at_peak())
    return found


def _agreement(scratch: Path, size: int, subject: str) -> str | None:
    """The share of feature values of ``subject``'s result equal to featurekube's."""
    import pandas as pd

    ours_path = scratch / f"featurekube-{size}.parquet"
    theirs_path = scratch / f"{subject}-{size}.parquet"
    if not (ours_path.exists() and theirs_path.exists()):
        return None
    ours = pd.read_parquet(ours_path).sort_values("request_id").reset_index(drop=True)
    theirs = pd.read_parquet(theirs_path).sort_values("request_id").reset_index(drop=True)
    if len(ours) != len(theirs):
        return f"{len(theirs)} rows, featurekube {len(ours)}"
    equal = total = 0
    for feature in FEATURES:
        a, b = ours[feature], theirs[feature]
        same = (a == b) | (a.isna() & b.isna())
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            same = same | (np.isclose(a, b, equal_nan=True))
        equal += int(same.sum())
        total += len(a)
    return f"{100 * equal / total:.3f}% of feature values equal featurekube's"


def _command(subject: str, spec: Path) -> list[str]:
    if subject.startswith("feast"):
        script = Path(__file__).parent / "peers" / "feast" / "historical.py"
        return [str(_feast_python()), str(script), str(spec)]
    return [sys.executable, "-m", "benchmarks.bench_training", subject, str(spec)]


def _ratios(medians: dict[str, float]) -> str:
    """featurekube's median pull time against each other subject's."""
    ours = medians.get("featurekube")
    if not ours:
        return "featurekube did not finish"
    found = []
    for subject, median in medians.items():
        if subject.startswith("feast"):
            found.append(f"{median / ours:.1f}x faster than {SUBJECTS[subject]}")
        elif subject != "featurekube":
            found.append(f"{ours / median:.2f}x the time of {SUBJECTS[subject]}")
    return "; ".join(found)


def run() -> _harness.Report:
    report = _harness.Report(
        name="training",
        description="historical feature pulls from 3 views: wall time, CPU time and peak memory",
        baseline=BASELINE,
    )
    feature_rows = int(os.environ.get("FEATUREKUBE_BENCH_TRAINING_FEATURE_ROWS", "10000000"))
    repeat = int(os.environ.get("FEATUREKUBE_BENCH_TRAINING_REPEAT", "3"))
    peers = os.environ.get("FEATUREKUBE_BENCH_TRAINING_PEERS", "feast-file,feast-duckdb")
    timeout = float(os.environ.get("FEATUREKUBE_BENCH_TRAINING_TIMEOUT", "1800"))
    memory = float(os.environ.get("FEATUREKUBE_BENCH_TRAINING_MEMORY_MIB", "12288"))
    sizes = _sizes()
    began = time.perf_counter()
    root = _make_data(feature_rows, sizes)
    report.notes["data"] = (
        f"{feature_rows:,} feature rows in 3 views; entity rows "
        f"{', '.join(f'{s:,}' for s in sizes)}; made or found in "
        f"{time.perf_counter() - began:.1f} s under {root}"
    )
    chosen = ["duckdb-floor", "duckdb-rules", "featurekube"]
    chosen += [p.strip() for p in peers.split(",") if p.strip()]
    if any(subject.startswith("feast") for subject in chosen):
        feast_python = _feast_python()
        report.peers[f"Feast's virtualenv, {feast_python.parent.parent}"] = feast_peer.versions(
            feast_python
        )
    with tempfile.TemporaryDirectory(prefix="featurekube-bench-training-") as tmp:
        scratch = Path(tmp)
        for size in sizes:
            found: dict[str, dict[str, list[float]]] = {}
            failed: set[str] = set()
            # Round after round, one pull per subject each: a busy machine slows all alike.
            for round_ in range(repeat):
                for subject in chosen:
                    # Feast's file store takes minutes a pull: once is enough to compare.
                    if subject in failed or (subject == "feast-file" and round_ > 0):
                        continue
                    spec = _spec(root, size, subject, scratch, 1)
                    result = _run(_command(subject, spec), timeout, memory)
                    name = SUBJECTS[subject]
                    if "error" in result:
                        failed.add(subject)
                        report.notes[f"{name}, {size:,} rows"] = result["error"]
                        print(f"  {name}, {size:,} entity rows: {result['error']}", flush=True)
                        continue
                    mine = found.setdefault(subject, {"seconds": [], "cpu": [], "peak": []})
                    mine["seconds"] += result["seconds"]
                    mine["cpu"] += result.get("cpu", [])
                    if result["peak_mib"] >= max(mine["peak"], default=0.0):
                        report.notes[f"{name} peak memory, {size:,} rows"] = result["processes"]
                    mine["peak"].append(result["peak_mib"])
                    print(f"  {name}, {size:,} entity rows: {result['seconds']}", flush=True)
            for subject, values in found.items():
                name = SUBJECTS[subject]
                report.add(name, f"pull {size:,} rows", "s", values["seconds"])
                if values["cpu"]:
                    report.add(name, f"cpu time {size:,} rows", "s", values["cpu"])
                report.add(name, f"peak memory {size:,} rows", "MiB", [max(values["peak"])])
            medians = {s: float(np.median(v["seconds"])) for s, v in found.items()}
            report.notes[f"featurekube, {size:,} rows"] = _ratios(medians)
            if size == min(sizes):
                for subject in chosen:
                    agreed = (
                        _agreement(scratch, size, subject) if subject != "featurekube" else None
                    )
                    if agreed:
                        report.notes[f"agreement of {SUBJECTS[subject]}"] = agreed
    report.notes["goals"] = (
        "featurekube at least 20x faster than feast (file store), and within 1.5x of "
        "duckdb asof by hand"
    )
    return report


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
