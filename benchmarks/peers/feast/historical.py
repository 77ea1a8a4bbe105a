"""Feast's ``get_historical_features`` over the benchmark's data, timed; run by
benchmarks/bench_training.py with the Python of Feast's own virtualenv.

    python historical.py SPEC.json

SPEC.json names the offline store (``file`` or ``duckdb``), a scratch directory for
Feast's repo, the entity rows (a parquet file), each view's directory of parquet files
with its entity, features and TTL, how many timed calls to make, and optionally where
to write the last result. Prints one JSON line: each call's wall and CPU seconds, the process's
peak resident memory (MiB, its own high-water mark read just before exiting) and the rows
returned. Imports nothing of featurekube.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType  # type: ignore[import-not-found]
from feast.data_format import ParquetFormat  # type: ignore[import-not-found]
from feast.repo_config import RepoConfig  # type: ignore[import-not-found]
from feast.types import Float64, Int64, String  # type: ignore[import-not-found]

TYPES = {"int64": Int64, "float64": Float64, "string": String}


def _store(spec: dict[str, Any], repo: Path) -> tuple[FeatureStore, list[str]]:
    repo.mkdir(parents=True, exist_ok=True)
    offline = {"type": spec["offline_store"]}
    config = RepoConfig(
        project="bench",
        registry=str(repo / "registry.db"),
        provider="local",
        offline_store=offline,
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    entities: dict[str, Entity] = {}
    objects: list[object] = []
    references = []
    for view in spec["views"]:
        key = view["entity"]
        if key not in entities:
            entities[key] = Entity(name=key, join_keys=[key], value_type=ValueType.INT64)
            objects.append(entities[key])
        source = FileSource(
            name=f"{view['name']}_source",
            path=view["path"],
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        )
        ttl = dt.timedelta(seconds=view["ttl_seconds"]) if view["ttl_seconds"] else dt.timedelta(0)
        objects.append(
            FeatureView(
                name=view["name"],
                entities=[entities[key]],
                ttl=ttl,
                schema=[Field(name=n, dtype=TYPES[t]) for n, t in view["features"].items()],
                source=source,
                online=False,
            )
        )
        references += [f"{view['name']}:{n}" for n in view["features"]]
    store.apply(objects)
    return store, references


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    store, references = _store(spec, Path(spec["repo"]))
    entity_df = pd.read_parquet(spec["entities"])
    seconds, cpu = [], []
    result = None
    for _ in range(spec["repeat"]):
        start, used = time.perf_counter(), _cpu_seconds()
        result = store.get_historical_features(entity_df=entity_df, features=references).to_df()
        seconds.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - used)
    if spec.get("output") and result is not None:
        result.to_parquet(spec["output"])
    peak = _own_peak_mib()
    rows = 0 if result is None else len(result)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": peak, "rows": rows}))


def _own_peak_mib() -> float:
    """VmHWM of this process, as benchmarks/_memory.py's own_peak_mib reads it (this
    script runs in Feast's virtualenv, without our modules). Never getrusage: its
    ru_maxrss starts from the harness's size, inherited across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM")


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


if __name__ == "__main__":
    main(sys.argv[1])
