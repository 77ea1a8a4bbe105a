"""The local platform's S3 and DynamoDB answer the standard clients, reached through
AWS_ENDPOINT_URL the way a real account is."""

from __future__ import annotations

import io

import boto3
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from featurekube._platform.platform import Endpoints


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def test_clients_reach_the_local_endpoint_from_the_environment(platform: Endpoints) -> None:
    assert boto3.client("s3").meta.endpoint_url == platform.aws_endpoint_url
    assert boto3.client("dynamodb").meta.endpoint_url == platform.aws_endpoint_url


def test_an_object_round_trips_through_boto3_and_is_read_by_pyarrow(s3_prefix: str) -> None:
    bucket, prefix = _split(s3_prefix)
    table = pa.table({"driver_id": [1001, 1002], "trips": [3, 7]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3 = boto3.client("s3")

    s3.put_object(Bucket=bucket, Key=f"{prefix}trips.parquet", Body=buffer.getvalue())

    body = s3.get_object(Bucket=bucket, Key=f"{prefix}trips.parquet")["Body"].read()
    assert body == buffer.getvalue()
    # pyarrow's own S3 client, configured from the environment alone.
    filesystem, path = pyarrow.fs.FileSystem.from_uri(f"{s3_prefix}trips.parquet")
    assert pq.read_table(path, filesystem=filesystem).equals(table)


def test_a_dynamodb_conditional_write_is_refused_when_its_condition_fails(
    table_prefix: str,
) -> None:
    dynamodb = boto3.client("dynamodb")
    name = f"{table_prefix}driver_stats"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "entity_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "entity_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)

    def write(event_time: int, trips: int) -> None:
        # Only a newer event replaces what is stored: the online store's rule.
        dynamodb.put_item(
            TableName=name,
            Item={
                "entity_key": {"S": "driver_id=1001"},
                "event_time": {"N": str(event_time)},
                "trips": {"N": str(trips)},
            },
            ConditionExpression="attribute_not_exists(entity_key) OR event_time < :t",
            ExpressionAttributeValues={":t": {"N": str(event_time)}},
        )

    write(200, 7)
    with pytest.raises(ClientError) as refused:
        write(100, 3)

    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    stored = dynamodb.get_item(TableName=name, Key={"entity_key": {"S": "driver_id=1001"}})
    assert stored["Item"]["trips"] == {"N": "7"}
    assert stored["Item"]["event_time"] == {"N": "200"}
