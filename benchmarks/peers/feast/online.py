"""A Feast feature repository over the serving benchmark's data, for ``feast serve``;
run by benchmarks/bench_serving.py with the Python of Feast's own virtualenv.

    python online.py SPEC.json

SPEC.json names the repository directory to write (``feature_store.yaml`` and the
registry), the project, DynamoDB's endpoint and region, the views' TTL, and each view
with its features (name -> value type) and a parquet file of its rows (``driver_id``,
``event_timestamp``, ``created_timestamp`` and the features). The script applies an
entity ``driver`` (join key ``driver_id``), one FeatureView per view over its parquet
file, and a FeatureService ``bench`` of every feature, then writes each view's rows
into Feast's own DynamoDB tables with ``write_to_online_store``, so that Feast reads
items in its own format. Prints one JSON line: the rows written per view. Imports
nothing of featurekube.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, ValueType  # type: ignore[import-not-found]
from feast.data_format import ParquetFormat  # type: ignore[import-not-found]
from feast.types import Bool, Float64, Int64, String  # type: ignore[import-not-found]

TYPES = {"int64": Int64, "float64": Float64, "string": String, "bool": Bool}


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    repo = Path(spec["repo"])
    repo.mkdir(parents=True, exist_ok=True)
    config = {
        "project": spec["project"],
        "registry": str(repo / "registry.db"),
        "provider": "local",
        "offline_store": {"type": "file"},
        "online_store": {
            "type": "dynamodb",
            "region": spec["region"],
            "endpoint_url": spec["endpoint"],
        },
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=str(repo))
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    views = []
    for name, view in spec["views"].items():
        source = FileSource(
            name=f"{name}_source",
            path=view["data"],
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        )
        views.append(
            FeatureView(
                name=name,
                entities=[driver],
                ttl=dt.timedelta(seconds=spec["ttl_seconds"]),
                schema=[Field(name=n, dtype=TYPES[t]) for n, t in view["features"].items()],
                source=source,
                online=True,
            )
        )
    service = FeatureService(name="bench", features=views)
    store.apply([driver, *views, service])
    written = {}
    for name, view in spec["views"].items():
        rows = pd.read_parquet(view["data"])
        store.write_to_online_store(name, df=rows)
        written[name] = len(rows)
    print(json.dumps({"written": written}))


if __name__ == "__main__":
    main(sys.argv[1])
