"""How a view's values are laid out in its DynamoDB table; pure.

One item per entity: the encoded entity key (hash key), the features, the event time
of the values, and an expiry the table's TTL removes stale items by.
"""

from __future__ import annotations

__all__ = ["ENTITY_KEY", "EVENT_TIME", "EXPIRES_AT", "table_definition"]

ENTITY_KEY = "entity_key"
"""Hash key: the entity's keys, encoded deterministically (string)."""
EVENT_TIME = "event_time"
"""Event time of the stored values, in microseconds since the epoch (number)."""
EXPIRES_AT = "expires_at"
"""Seconds since the epoch after which DynamoDB's TTL may delete the item (number)."""


def table_definition(name: str, tags: dict[str, str]) -> dict[str, object]:
    """CreateTable arguments for a view's online table (on-demand capacity)."""
    return {
        "TableName": name,
        "KeySchema": [{"AttributeName": ENTITY_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": ENTITY_KEY, "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }
