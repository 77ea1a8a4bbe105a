"""Facts about a materialization's source and stores, gathered before Spark starts;
does I/O (S3 listings, one parquet footer, one DynamoDB call), no pyspark.

What the facts mean is for :mod:`featurekube.materialize.preflight` to judge. Stores
are reached with the standard AWS settings of the environment (``AWS_ENDPOINT_URL``,
``AWS_REGION``, credentials), as boto3, pyarrow and Spark all reach them.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from featurekube.materialize import preflight

__all__ = ["probe_source", "probe_stores"]

# A listing this long is enough to tell a source holds data; the job reads them all.
_LISTING_LIMIT = 1000


def _split(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` -> (bucket, prefix)."""
    parsed = urllib.parse.urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _s3() -> Any:
    import boto3

    return boto3.client("s3")


def _bucket_exists(s3: Any, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        return False
    return True


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=_LISTING_LIMIT)
    return [item["Key"] for item in answer.get("Contents", ())]


def _filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if not endpoint:
        return pafs.S3FileSystem(region=region)
    parsed = urllib.parse.urlparse(endpoint)
    return pafs.S3FileSystem(
        region=region, endpoint_override=parsed.netloc, scheme=parsed.scheme or "https"
    )


def probe_source(path: str, source_format: str) -> preflight.SourceFacts:
    """List the source and, for parquet, read the schema of its first data file."""
    bucket, prefix = _split(path)
    s3 = _s3()
    if not _bucket_exists(s3, bucket):
        return preflight.SourceFacts(bucket_exists=False, files=())
    keys = _keys(s3, bucket, prefix)
    if source_format == "delta":
        log = [key for key in keys if "/_delta_log/" in f"/{key}" and key.endswith(".json")]
        return preflight.SourceFacts(bucket_exists=True, files=tuple(log))
    data = [
        key
        for key in keys
        if not key.endswith("/") and not any(p.startswith(("_", ".")) for p in key.split("/"))
    ]
    if not data:
        return preflight.SourceFacts(bucket_exists=True, files=())
    sample = data[0]
    try:
        schema = pq.read_schema(f"{bucket}/{sample}", filesystem=_filesystem())
    except (OSError, pa.ArrowException) as exc:
        return preflight.SourceFacts(
            bucket_exists=True,
            files=tuple(data),
            sample=f"s3://{bucket}/{sample}",
            read_error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
    return preflight.SourceFacts(
        bucket_exists=True, files=tuple(data), sample=f"s3://{bucket}/{sample}", schema=schema
    )


def probe_stores(offline_uri: str | None, online_table: str | None) -> preflight.StoreFacts:
    """Whether the offline store's bucket exists and DynamoDB answers."""
    offline_ok = True
    if offline_uri is not None and offline_uri.startswith(("s3://", "s3a://")):
        offline_ok = _bucket_exists(_s3(), _split(offline_uri)[0])
    online_ok, detail = True, ""
    if online_table is not None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            boto3.client("dynamodb").list_tables(Limit=1)
        except (BotoCoreError, ClientError) as exc:
            online_ok, detail = False, f"{type(exc).__name__}: {exc}"
    return preflight.StoreFacts(
        offline_uri=offline_uri,
        offline_bucket_exists=offline_ok,
        online_table=online_table,
        online_reachable=online_ok,
        online_detail=detail,
    )
