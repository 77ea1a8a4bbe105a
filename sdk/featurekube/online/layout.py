"""How a view's values are laid out in its DynamoDB table; pure.

One item per entity: the encoded entity key (hash key), one attribute per feature
(absent when null), the event time and created time of the values, for aggregation
views the entity's latest event (which the TTL counts from), and an expiry that the
table's TTL removes stale items by. Writers replace an item only with values of a
later event time, or of the same event time and a later or equal created time — the
same order the offline point-in-time join uses, so both agree.
"""

from __future__ import annotations

__all__ = [
    "CREATED_TIME",
    "ENTITY_KEY",
    "EVENT_TIME",
    "EXPIRES_AT",
    "LATEST_EVENT_TIME",
    "RESERVED",
    "newer_condition",
    "table_definition",
    "table_name",
]

ENTITY_KEY = "entity_key"
"""Hash key: the entity's keys, encoded by :func:`featurekube.online.keys.encode_entity_key`."""
EVENT_TIME = "event_time"
"""Event time of the stored values, in microseconds since the epoch (N)."""
CREATED_TIME = "created_time"
"""Created time of the stored values (tie-break on equal event times), microseconds (N)."""
LATEST_EVENT_TIME = "latest_event_time"
"""Aggregation views: the entity's latest event at or before the values' event time
(a step boundary), in microseconds (N). The TTL counts from it, not from the event
time, so an aggregate that stays the same stays valid while its events are recent."""
EXPIRES_AT = "expires_at"
"""Seconds since the epoch after which DynamoDB's TTL may delete the item (N): the
TTL after the latest event, rounded up."""
RESERVED = frozenset({ENTITY_KEY, EVENT_TIME, CREATED_TIME, LATEST_EVENT_TIME, EXPIRES_AT})
"""Attribute names no feature may take."""


def newer_condition() -> dict[str, str]:
    """The ConditionExpression (with placeholders :e and :c, the new item's event and
    created times) under which a PutItem may replace what is stored."""
    return {
        "ConditionExpression": (
            f"attribute_not_exists({ENTITY_KEY}) OR {EVENT_TIME} < :e OR "
            f"({EVENT_TIME} = :e AND {CREATED_TIME} <= :c)"
        )
    }


def table_definition(name: str, tags: dict[str, str]) -> dict[str, object]:
    """CreateTable arguments for a view's online table (on-demand capacity)."""
    return {
        "TableName": name,
        "KeySchema": [{"AttributeName": ENTITY_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": ENTITY_KEY, "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }


def table_name(prefix: str, namespace: str, view: str, version: int) -> str:
    """``<prefix><namespace>.<view>.v<version>``: DynamoDB allows letters, digits, _ - .

    >>> table_name("featurekube.", "rides", "driver-profile", 1)
    'featurekube.rides.driver-profile.v1'
    """
    return f"{prefix}{namespace}.{view}.v{version}"
