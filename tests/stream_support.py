"""Helpers the stream job's integration tests share (importable as ``stream_support``):
records produced to the loopback Kafka, an online table, and a stream run until it has
read everything its topic holds."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3

from featurekube.online import layout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from featurekube.materialize import stream_job, stream_plan


def to_json(event: dict[str, Any]) -> bytes:
    """``event`` as a record's JSON value, its times in RFC 3339 with a ``Z``."""
    return json.dumps(
        {
            k: v.isoformat().replace("+00:00", "Z") if isinstance(v, dt.datetime) else v
            for k, v in event.items()
        }
    ).encode()


def produce(bootstrap: str, topic: str, values: Sequence[bytes | None]) -> None:
    """Append ``values`` to ``topic``, in order, and wait until Kafka has them all."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(60) == 0, "records still queued after a minute"


def online_table(name: str) -> str:
    """A new online table ``name``, once DynamoDB says it exists."""
    client = boto3.client("dynamodb")
    client.create_table(**layout.table_definition(name, {}))
    client.get_waiter("table_exists").wait(TableName=name)
    return name


def run_available_now(
    spark: SparkSession,
    plan: stream_plan.StreamPlan,
    offline: str,
    online: str,
    wait_seconds: float,
    fault: stream_job.Fault | None = None,
) -> stream_job.StreamRun:
    """Run ``plan``'s stream over what its topic holds now, and return the ended run
    (its ``query.exception()`` says how it ended)."""
    from pyspark.errors import StreamingQueryException

    from featurekube.materialize import stream_job

    run = stream_job.start(
        spark, plan, offline_uri=offline, online_table=online, available_now=True, fault=fault
    )
    with contextlib.suppress(StreamingQueryException):
        run.query.awaitTermination(wait_seconds)
    assert not run.query.isActive, "the availableNow run did not finish"
    return run
