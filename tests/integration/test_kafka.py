"""The local platform's Kafka: real records produced and consumed, read by Spark's
Kafka source in batch and in Structured Streaming, and its address in `dev env`."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from featurekube import errors
from featurekube._platform import kafka, processes
from featurekube._platform.platform import Endpoints, LocalPlatform, PlatformSettings
from featurekube.cli import main as cli

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

RECORD_WAIT_SECONDS = 60


def _produce(bootstrap: str, topic: str, records: Sequence[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    # Idempotence keeps the records in the order they were sent, retries or not.
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for record in records:
        producer.produce(topic, key=str(record["rider"]).encode(), value=json.dumps(record))
    assert producer.flush(RECORD_WAIT_SECONDS) == 0, "records still queued after a minute"


def _events(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"rider": f"r{i % 3}", "trips": i, "event_time": f"2026-12-01T00:{i:02d}:00Z"}
        for i in range(first, first + count)
    ]


def test_records_produced_are_consumed_in_order(
    kafka_bootstrap_servers: str, kafka_topic: str
) -> None:
    from confluent_kafka import Consumer

    sent = _events(0, 20)
    _produce(kafka_bootstrap_servers, kafka_topic, sent)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap_servers,
            "group.id": f"{kafka_topic}-reader",
            "auto.offset.reset": "earliest",
        }
    )
    received: list[dict[str, Any]] = []
    try:
        consumer.subscribe([kafka_topic])
        deadline = time.monotonic() + RECORD_WAIT_SECONDS
        while len(received) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append(json.loads(message.value() or b"null"))
    finally:
        consumer.close()

    assert received == sent


def test_the_broker_answers_the_platforms_probe(platform: Endpoints) -> None:
    host, _, port = platform.kafka_bootstrap_servers.rpartition(":")

    assert host == "127.0.0.1"
    assert kafka.ready(kafka.KafkaPorts(broker=int(port), controller=0))
    assert processes.is_running(platform.pids["kafka"], "java")


def test_dev_env_prints_the_bootstrap_address(
    platform: Endpoints, kafka_bootstrap_servers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dev", "env", "--state-dir", str(platform.kubeconfig.parent)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert f"export FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap_servers}" in lines


VALUE_SCHEMA = "rider STRING, trips INT, event_time TIMESTAMP"


@pytest.mark.spark
def test_spark_reads_the_topic_in_batch(
    spark: SparkSession, kafka_bootstrap_servers: str, kafka_topic: str
) -> None:
    from pyspark.sql import functions as F

    sent = _events(0, 10)
    _produce(kafka_bootstrap_servers, kafka_topic, sent)

    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap_servers)
        .option("subscribe", kafka_topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .select(
            F.col("key").cast("string").alias("key"),
            F.col("offset"),
            F.from_json(F.col("value").cast("string"), VALUE_SCHEMA).alias("v"),
        )
        .select("key", "offset", "v.*")
        .orderBy("offset")
    )
    rows = [row.asDict() for row in frame.collect()]

    assert [row["offset"] for row in rows] == list(range(10))
    assert [(row["key"], row["rider"], row["trips"]) for row in rows] == [
        (e["rider"], e["rider"], e["trips"]) for e in sent
    ]
    assert rows[3]["event_time"].isoformat().startswith("2026-12-01T00:03:00")


@pytest.mark.spark
def test_a_stream_with_a_checkpoint_picks_up_only_new_records(
    spark: SparkSession, kafka_bootstrap_servers: str, kafka_topic: str, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    checkpoint, output = tmp_path / "checkpoint", tmp_path / "rows"

    def run_once() -> list[int]:
        """One availableNow run: everything new since the checkpoint, then stop."""
        batches: list[int] = []

        def write(batch: Any, batch_id: int) -> None:
            batch.write.mode("append").parquet(str(output))
            batches.append(batch_id)

        query = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", kafka_bootstrap_servers)
            .option("subscribe", kafka_topic)
            .option("startingOffsets", "earliest")
            .load()
            .select(F.from_json(F.col("value").cast("string"), VALUE_SCHEMA).alias("v"))
            .select("v.*")
            .writeStream.foreachBatch(write)
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(RECORD_WAIT_SECONDS * 2)
        assert not query.isActive, "the availableNow run did not finish"
        assert query.exception() is None, query.exception()
        return batches

    def trips() -> list[int]:
        return sorted(row.trips for row in spark.read.parquet(str(output)).collect())

    _produce(kafka_bootstrap_servers, kafka_topic, _events(0, 5))
    assert run_once()
    assert trips() == [0, 1, 2, 3, 4]

    _produce(kafka_bootstrap_servers, kafka_topic, _events(5, 3))
    assert run_once()
    # The second run read only the three new records: none twice, none lost.
    assert trips() == [0, 1, 2, 3, 4, 5, 6, 7]

    # Nothing new: no batch, or an empty one.
    run_once()
    assert trips() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_dev_down_stops_kafka_and_removes_its_data(tmp_path: Path) -> None:
    local = LocalPlatform(PlatformSettings(state_dir=tmp_path / "state", runtime=False))
    endpoints = local.start()
    data = local.kafka_layout.data
    try:
        assert (data / "meta.properties").is_file(), "the storage was formatted"
        assert endpoints.kafka_bootstrap_servers.startswith("127.0.0.1:")
    finally:
        local.stop()

    assert not processes.is_running(endpoints.pids["kafka"])
    assert not local.kafka_layout.root.exists()
    assert (endpoints.log_dir / "kafka.log").stat().st_size > 0, "the log is kept"


def test_a_kafka_that_fails_to_start_is_named_with_its_log(tmp_path: Path) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'Error: this Java cannot run Kafka' >&2\nexit 1\n")
    java.chmod(0o755)
    settings = PlatformSettings(state_dir=tmp_path / "state", runtime=False)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAVA_HOME", str(java.parent.parent))
        with pytest.raises(errors.ComponentStartError) as failed:
            LocalPlatform(settings).start()

    assert failed.value.component == "kafka"
    assert "formatting its storage" in str(failed.value) and "exited 1" in str(failed.value)
    assert "this Java cannot run Kafka" in failed.value.log_tail
    assert LocalPlatform(settings).endpoints() is None
