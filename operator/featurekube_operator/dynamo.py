"""Online tables in DynamoDB: create, tag, expire, delete; does I/O."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from featurekube.online import layout

if TYPE_CHECKING:
    from featurekube.spec import v1alpha1
    from featurekube.writer.online import PendingWindow

__all__ = ["OnlineTables"]

log = logging.getLogger(__name__)


class OnlineTables:
    """The operator's side of the online store: the tables and their windows' pending
    records, not their items."""

    def __init__(self, client: Any | None = None) -> None:
        self.client = client or boto3.client("dynamodb")
        self._complete: set[str] = set()

    def ensure(self, name: str, tags: dict[str, str]) -> bool:
        """Create the table if missing and make sure its TTL is on; True if it was created.

        Each step checks what is there rather than what this process did, so an operator
        stopped between creating a table and turning on its TTL finishes the job when it
        comes back. A table found complete is not looked at again by this process.
        """
        if name in self._complete:
            return False
        try:
            self.client.create_table(**layout.table_definition(name, tags))
            created = True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
            created = False
        # A table just created, by this process or one that stopped, may still be CREATING.
        self.client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        ttl = self.client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            self.client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": layout.EXPIRES_AT},
            )
        self._complete.add(name)
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
        self._complete.discard(name)
        try:
            self.client.delete_table(TableName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise

    def open_window(
        self, name: str, view: v1alpha1.FeatureView, start: dt.datetime, end: dt.datetime
    ) -> PendingWindow | None:
        """Record the window [start, end) of ``view`` as pending in its table ``name``,
        as its job would (:meth:`~featurekube.writer.online.OnlineWriter.open_window`),
        before the job is started: the job takes the record over (``--pending-run``),
        and the time the record must stand before the window's first item passes while
        the job's pod starts. None when the store did not take it: the job then records
        the window itself, as it always may."""
        from featurekube.writer import online as online_writer

        writer = online_writer.OnlineWriter(name, view, self.client)
        try:
            return writer.open_window(start, end)
        except Exception as exc:  # the job can do without
            log.warning("%s: the job will record the window itself: %s", writer.label, exc)
            return None
