"""Local-mode Spark reads and writes the platform's S3 through S3A, and its Delta
tables are read back without a JVM."""

from __future__ import annotations

import datetime as dt
import io

import boto3
import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

UTC = dt.UTC


def test_spark_reads_an_object_written_by_boto3_through_s3a(
    spark: SparkSession, s3_prefix: str
) -> None:
    bucket, _, prefix = s3_prefix.removeprefix("s3://").partition("/")
    events = pa.table(
        {
            "driver_id": pa.array([1001, 1002, 1001], pa.int64()),
            # Spark 4 refuses nanosecond parquet timestamps: write microseconds.
            "event_timestamp": pa.array(
                [dt.datetime(2026, 1, 1, h, tzinfo=UTC) for h in (1, 2, 3)],
                pa.timestamp("us", tz="UTC"),
            ),
            "trips": pa.array([3, 7, 5], pa.int64()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(events, buffer)
    boto3.client("s3").put_object(
        Bucket=bucket, Key=f"{prefix}events.parquet", Body=buffer.getvalue()
    )

    frame = spark.read.parquet(f"s3a://{bucket}/{prefix}events.parquet")
    rows = frame.groupBy("driver_id").sum("trips").orderBy("driver_id").collect()

    assert [(r["driver_id"], r["sum(trips)"]) for r in rows] == [(1001, 8), (1002, 7)]
    # Rendered in the session's time zone, which featurekube sets to UTC.
    latest = frame.selectExpr("max(event_timestamp) AS t").selectExpr("CAST(t AS STRING)").first()
    assert latest is not None
    assert latest[0] == "2026-01-01 03:00:00"


def test_a_delta_table_written_by_spark_is_read_without_a_jvm(
    spark: SparkSession, s3_prefix: str
) -> None:
    uri = f"{s3_prefix}driver_stats"
    rows = [
        (1001, dt.datetime(2026, 1, 1, 9, tzinfo=UTC), dt.date(2026, 1, 1), 0.5),
        (1002, dt.datetime(2026, 1, 1, 10, tzinfo=UTC), dt.date(2026, 1, 1), 0.7),
        (1001, dt.datetime(2026, 1, 2, 9, tzinfo=UTC), dt.date(2026, 1, 2), 0.9),
    ]
    frame = spark.createDataFrame(
        rows, "driver_id long, event_timestamp timestamp, event_date date, conv_rate double"
    )
    # s3:// as offline URIs are spelled (docs/concepts.md); S3A serves it.
    frame.write.format("delta").partitionBy("event_date").mode("overwrite").save(uri)

    table = deltalake.DeltaTable(uri)

    assert table.metadata().partition_columns == ["event_date"]
    read = table.to_pyarrow_table().sort_by([("event_timestamp", "ascending")])
    assert read.column("driver_id").to_pylist() == [1001, 1002, 1001]
    assert read.column("conv_rate").to_pylist() == [0.5, 0.7, 0.9]
    assert read.column("event_timestamp").to_pylist()[0] == rows[0][1]
    one_day = table.to_pyarrow_table(filters=[("event_date", "=", dt.date(2026, 1, 2))])
    assert one_day.column("driver_id").to_pylist() == [1001]
