"""`featurekube materialize` against the platform's S3 and DynamoDB: what it refuses
before Spark starts leaves nothing made, in one line; and a run keeps Spark's own
output (Ivy, SLF4J, log4j) out of the terminal unless --verbose. The job's own entry
point (``python -m featurekube.materialize``) reports when it published."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pandas as pd
import pytest
import yaml

from featurekube.cli import main as cli

if TYPE_CHECKING:
    from featurekube._platform.platform import Endpoints

TIMES = ["2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z"]


def _put_parquet(uri: str, *, nanoseconds: bool) -> None:
    frame = pd.DataFrame(
        {"driver_id": [1, 2], "event_timestamp": pd.to_datetime(TIMES), "rating": [4.5, 4.8]}
    )
    buffer = io.BytesIO()
    if nanoseconds:
        frame.to_parquet(buffer)  # pandas' default: timestamp[ns]
    else:
        frame.to_parquet(buffer, coerce_timestamps="us", allow_truncated_timestamps=True)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{key}part-0.parquet", Body=buffer.getvalue())


def _view_file(tmp_path: Path, source: str) -> Path:
    body = {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureView",
        "metadata": {"name": "driver-profile", "namespace": "rides"},
        "spec": {
            "owner": "t@example.com",
            "entities": [{"name": "driver_id", "type": "int64"}],
            "source": {"batch": {"path": source, "timestampField": "event_timestamp"}},
            "features": [{"name": "rating", "type": "float64"}],
        },
    }
    path = tmp_path / "view.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _tables() -> list[str]:
    names: list[str] = boto3.client("dynamodb").list_tables()["TableNames"]
    return names


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = cli.main(["materialize", "--start", "2026-01-01", "--end", "2026-01-02", *args])
    return status, capfd.readouterr().err.splitlines()


def test_nanosecond_timestamps_are_refused_before_spark_with_the_fix(
    s3_prefix: str, table_prefix: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = f"{s3_prefix}raw/"
    _put_parquet(source, nanoseconds=True)
    table = f"{table_prefix}profile"

    status, err = _run(
        ["-f", str(_view_file(tmp_path, source)), "--online-table", table, "--no-offline"], capfd
    )

    assert status == 1
    assert err[-1] == (
        f"featurekube: error: FeatureView rides/driver-profile: spec.source.batch.path {source}: "
        f"column event_timestamp of {source}part-0.parquet holds timestamps in nanoseconds, "
        "which Spark cannot read: write timestamps in microseconds: pandas: "
        "frame.to_parquet(path, coerce_timestamps='us', allow_truncated_timestamps=True); "
        "pyarrow: pq.write_table(table, path, coerce_timestamps='us', "
        "allow_truncated_timestamps=True)"
    )
    assert table not in _tables()


def test_a_missing_offline_bucket_is_refused_and_no_online_table_is_made(
    s3_prefix: str, table_prefix: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = f"{s3_prefix}raw/"
    _put_parquet(source, nanoseconds=False)
    table = f"{table_prefix}profile"
    offline = "s3://no-such-bucket-here/offline/rides/driver-profile/v1"

    status, err = _run(
        [
            "-f",
            str(_view_file(tmp_path, source)),
            "--online-table",
            table,
            "--offline-uri",
            offline,
        ],
        capfd,
    )

    assert status == 1
    assert err[-1] == (
        f"featurekube: error: FeatureView rides/driver-profile: offline store {offline}: bucket "
        "no-such-bucket-here does not exist: pass --create-bucket to create it, --offline-uri "
        "with a bucket that exists, or --no-offline"
    )
    assert table not in _tables()


def test_an_empty_source_path_is_named(
    s3_prefix: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = f"{s3_prefix}nothing-here/"

    status, err = _run(
        ["-f", str(_view_file(tmp_path, source)), "--no-online", "--no-offline"], capfd
    )

    assert status == 1
    assert err[-1] == (
        f"featurekube: error: FeatureView rides/driver-profile: spec.source.batch.path {source}: "
        "holds no parquet files: check spec.source.batch.path and spec.source.batch.format, or "
        "write the source data first"
    )


@pytest.mark.spark
def test_a_run_keeps_spark_s_own_output_in_its_log(
    s3_prefix: str, table_prefix: str, tmp_path: Path
) -> None:
    source = f"{s3_prefix}raw/"
    _put_parquet(source, nanoseconds=False)
    log = tmp_path / "spark.log"
    args = ["-f", str(_view_file(tmp_path, source)), "--start", "2026-01-01"]
    args += ["--end", "2026-01-02", "--offline-uri", f"{s3_prefix}offline/v1"]
    args += ["--online-table", f"{table_prefix}profile", "--spark-log", str(log)]
    args += ["--engine", "spark"]  # auto would take the python engine for two rows

    done = subprocess.run(
        [sys.executable, "-m", "featurekube.cli.main", "materialize", *args],
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert done.returncode == 0, done.stderr
    assert "read 2 rows, wrote 2 offline and 2 online" in done.stdout
    # Spark's resolver speaks only in a session that resolves its jars (one that finds
    # them listed from an earlier session does not), so its line is checked in stderr
    # only.
    for noise in ("SLF4J", ":: resolving dependencies", "log4j", "WARN"):
        assert noise not in done.stderr
    for kept in ("SLF4J", "log4j"):
        assert kept in log.read_text()
    assert len(done.stderr.splitlines()) < 15


def test_the_platform_has_the_bucket_materialize_writes_to_by_default(platform: Endpoints) -> None:
    from featurekube.cli import materialize

    bucket = materialize.DEFAULT_OFFLINE_ROOT.removeprefix("s3://").split("/")[0]

    boto3.client("s3").head_bucket(Bucket=bucket)  # raises when it is missing


def test_the_job_reports_the_seconds_from_its_start_to_the_publication(
    s3_prefix: str, tmp_path: Path
) -> None:
    source = f"{s3_prefix}raw/"
    _put_parquet(source, nanoseconds=False)
    job = [sys.executable, "-m", "featurekube.materialize", "--spec"]
    job += [str(_view_file(tmp_path, source)), "--start", "2026-01-01", "--end", "2026-01-02"]
    job += ["--offline-uri", f"{s3_prefix}offline/v1", "--online-table", "unused", "--no-online"]
    job += ["--engine", "python"]

    began = time.monotonic()
    done = subprocess.run(job, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - began

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["published"] is True
    timings = report["timingsSeconds"]
    # From the process's start, imports included: more than any phase before the
    # publication (the offline write runs from the read's start, beside it, to its
    # commit), and less than the whole run seen from outside.
    assert max(timings["read_compute"], timings["offline_write"]) < timings["published"] < elapsed


def test_a_pending_record_the_store_refuses_fails_the_job_before_anything_is_committed(
    s3_prefix: str, table_prefix: str, tmp_path: Path
) -> None:
    # The record is written while the source is read; the store refusing it (here: no
    # such table) stops the job at its first write, with the offline table unwritten.
    source, offline = f"{s3_prefix}raw/", f"{s3_prefix}offline/v1"
    _put_parquet(source, nanoseconds=False)
    table = f"{table_prefix}missing"
    job = [sys.executable, "-m", "featurekube.materialize", "--spec"]
    job += [str(_view_file(tmp_path, source)), "--start", "2026-01-01", "--end", "2026-01-02"]
    job += ["--offline-uri", offline, "--online-table", table, "--engine", "python"]

    done = subprocess.run(job, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1, done.stderr
    assert table in done.stderr and "pending" in done.stderr, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["published"] is False
    bucket, _, key = offline.removeprefix("s3://").partition("/")
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{key}/_delta_log/")
    assert listed.get("KeyCount", 0) == 0
    assert table not in _tables()
