"""Feast's streaming ingestion over the streaming benchmark's Kafka topic, for
benchmarks/bench_stream.py; run with the Python of Feast's own virtualenv (with
``feast[aws,spark]`` and featurekube's pyspark).

    python stream.py SPEC.json

SPEC.json names the repository directory to write, the project, DynamoDB's endpoint
and region, Kafka's bootstrap servers and topic, the probe entities, the trigger
interval, the Spark configuration (the same featurekube's stream job runs with), the
checkpoint directory and the status file. The script applies an entity ``driver``
(join key ``driver_id``) and a StreamFeatureView ``trips`` (``fare``, ``trips``) over a
KafkaSource of JSON records, prints one JSON line (its DynamoDB table and the item key
of each probe entity) and runs Feast's ``SparkKafkaProcessor`` on it, writing to the
online store only, until it is killed. A thread writes the query's last progress to
the status file every quarter second. Imports nothing of featurekube.

Feast's processor checkpoints at a fixed ``/tmp/checkpoint/``; the script points that
one option at the spec's checkpoint directory, so that a run never resumes another's
query. Nothing else of Feast is changed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import yaml
from feast import Entity, FeatureStore, Field, FileSource, KafkaSource, ValueType  # type: ignore[import-not-found]
from feast.data_format import JsonFormat, ParquetFormat  # type: ignore[import-not-found]
from feast.infra.contrib.spark_kafka_processor import SparkKafkaProcessor, SparkProcessorConfig  # type: ignore[import-not-found]
from feast.infra.online_stores.helpers import compute_entity_id  # type: ignore[import-not-found]
from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # type: ignore[import-not-found]
from feast.protos.feast.types.Value_pb2 import Value  # type: ignore[import-not-found]
from feast.stream_feature_view import StreamFeatureView  # type: ignore[import-not-found]
from feast.types import Float64, Int64  # type: ignore[import-not-found]
from pyspark.sql import SparkSession
from pyspark.sql.streaming.readwriter import DataStreamWriter

VIEW = "trips"
SCHEMA = "driver_id BIGINT, fare DOUBLE, trips BIGINT, event_timestamp TIMESTAMP"
"""The records' JSON fields, as Feast's JsonFormat takes them (Spark DDL)."""
FEAST_CHECKPOINT = "/tmp/checkpoint/"


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
    history = repo / "history.parquet"  # a KafkaSource needs a batch source beside it
    pd.DataFrame(
        {
            "driver_id": pd.Series([], dtype="int64"),
            "fare": pd.Series([], dtype="float64"),
            "trips": pd.Series([], dtype="int64"),
            "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    ).to_parquet(history)
    store = FeatureStore(repo_path=str(repo))
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = KafkaSource(
        name=f"{VIEW}_stream",
        kafka_bootstrap_servers=spec["bootstrap_servers"],
        topic=spec["topic"],
        timestamp_field="event_timestamp",
        message_format=JsonFormat(schema_json=SCHEMA),
        batch_source=FileSource(
            name=f"{VIEW}_history",
            path=str(history),
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
        ),
    )
    view = StreamFeatureView(
        name=VIEW,
        entities=[driver],
        ttl=dt.timedelta(days=1),
        schema=[
            Field(name="driver_id", dtype=Int64),
            Field(name="fare", dtype=Float64),
            Field(name="trips", dtype=Int64),
        ],
        source=source,
        timestamp_field="event_timestamp",
        online=True,
    )
    store.apply([driver, view])
    keys = {
        str(entity): compute_entity_id(
            EntityKey(join_keys=["driver_id"], entity_values=[Value(int64_val=entity)]),
            entity_key_serialization_version=3,
        )
        for entity in spec["probes"]
    }
    print(json.dumps({"table": f"{spec['project']}.{VIEW}", "keys": keys}), flush=True)

    _redirect_checkpoint(spec["checkpoint"])
    builder = SparkSession.builder
    for key, value in spec["spark_conf"].items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    threading.Thread(target=_watch, args=(spark, Path(spec["status"])), daemon=True).start()
    processor = SparkKafkaProcessor(
        fs=store,
        sfv=view,
        config=SparkProcessorConfig(
            mode="spark",
            source="kafka",
            spark_session=spark,
            processing_time=f"{spec['trigger_seconds']} seconds",
            query_timeout=None,
        ),
        stream_source_options={"startingOffsets": "earliest", "failOnDataLoss": "true"},
    )
    processor.ingest_stream_feature_view()  # runs until the process is killed


def _redirect_checkpoint(directory: str) -> None:
    original = DataStreamWriter.option

    def option(self: Any, key: str, value: Any) -> Any:
        if key == "checkpointLocation" and value == FEAST_CHECKPOINT:
            value = directory
        return original(self, key, value)

    DataStreamWriter.option = option  # type: ignore[method-assign]


def _watch(spark: Any, status: Path) -> None:
    """Write the query's last progress and each batch's figures to ``status``; end the
    process if that fails, rather than leave the benchmark waiting."""
    try:
        _report(spark, status)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def _report(spark: Any, status: Path) -> None:
    batches: dict[int, dict[str, Any]] = {}
    while True:
        active = spark.streams.active
        progress = None
        if active:
            last = active[0].lastProgress
            if last is not None:
                progress = json.loads(last.json)  # pyspark's dict reads through, holds nothing
                batches.setdefault(int(progress["batchId"]), _batch(progress))
        _write_json(
            status,
            {"active": bool(active), "progress": progress, "batches": list(batches.values())},
        )
        time.sleep(0.25)


def _batch(progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": progress["batchId"],
        "timestamp": progress["timestamp"],
        "rows": progress.get("numInputRows", 0),
        "trigger_ms": (progress.get("durationMs") or {}).get("triggerExecution"),
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.replace(path)


if __name__ == "__main__":
    main(sys.argv[1])
