"""Online tables in DynamoDB: create, tag, expire, delete; does I/O."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from featurekube.online import layout

__all__ = ["OnlineTables"]


class OnlineTables:
    """The operator's side of the online store: the tables, not their items."""

    def __init__(self, client: Any | None = None) -> None:
        self.client = client or boto3.client("dynamodb")

    def ensure(self, name: str, tags: dict[str, str]) -> bool:
        """Create the table if missing and switch on its TTL; True if it was created."""
        try:
            self.client.create_table(**layout.table_definition(name, tags))
            created = True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
            created = False
        if created:
            self.client.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            self.client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": layout.EXPIRES_AT},
            )
        return created

    def exists(self, name: str) -> bool:
        """Whether the table exists."""
        try:
            self.client.describe_table(TableName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
        return True

    def delete(self, name: str) -> None:
        """Delete the table; gone already is fine."""
        try:
            self.client.delete_table(TableName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
