"""Feature values as DynamoDB attribute values, and back; pure.

Exact both ways, so online values equal offline ones bit for bit: floats are written
with Python's shortest round-trip repr (DynamoDB keeps 38 digits), non-finite floats
as strings, timestamps as microseconds since the epoch, float arrays as packed
little-endian float64 bytes. A null is an absent attribute.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["from_attribute", "to_attribute", "to_attributes"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # naive timestamps are UTC
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_attribute(value_type: str, value: Any) -> dict[str, Any] | None:
    """The attribute value for ``value`` of ``value_type``; None for a null."""
    if value is None:
        return None
    if value_type == "int64":
        return {"N": str(int(value))}
    if value_type == "float64":
        number = float(value)
        if math.isfinite(number):
            return {"N": repr(number)}
        return {"S": "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")}
    if value_type == "string":
        return {"S": str(value)}
    if value_type == "bool":
        return {"BOOL": bool(value)}
    if value_type == "timestamp":
        return {"N": str(_micros(value))}
    if value_type == "float64_array":
        items: Sequence[float] = value
        return {"B": struct.pack(f"<{len(items)}d", *items)}
    raise ValueError(f"unknown value type {value_type!r}")


def to_attributes(value_type: str, values: Sequence[Any]) -> list[dict[str, Any] | None]:
    """:func:`to_attribute` of each of ``values``, a column at a time: the common types
    without a call per value, which is what writing many rows spends its time on.

    >>> to_attributes("float64", [0.5, None, float("inf")])
    [{'N': '0.5'}, None, {'S': 'Infinity'}]
    """
    if value_type == "int64":
        return [None if v is None else {"N": str(int(v))} for v in values]
    if value_type == "float64":
        isfinite = math.isfinite
        return [
            None
            if v is None
            else ({"N": repr(float(v))} if isfinite(v) else to_attribute("float64", v))
            for v in values
        ]
    if value_type == "string":
        return [None if v is None else {"S": str(v)} for v in values]
    if value_type == "bool":
        return [None if v is None else {"BOOL": bool(v)} for v in values]
    return [to_attribute(value_type, v) for v in values]


def from_attribute(value_type: str, attribute: dict[str, Any] | None) -> Any:
    """The Python value of an attribute (None for an absent one).

    >>> from_attribute("float64", to_attribute("float64", 0.1))
    0.1
    """
    if attribute is None or attribute.get("NULL"):
        return None
    if value_type == "int64":
        return int(attribute["N"])
    if value_type == "float64":
        return _NON_FINITE[attribute["S"]] if "S" in attribute else float(attribute["N"])
    if value_type == "string":
        return attribute["S"]
    if value_type == "bool":
        return attribute["BOOL"]
    if value_type == "timestamp":
        return _EPOCH + dt.timedelta(microseconds=int(attribute["N"]))
    if value_type == "float64_array":
        raw: bytes = attribute["B"]
        return list(struct.unpack(f"<{len(raw) // 8}d", raw))
    raise ValueError(f"unknown value type {value_type!r}")
