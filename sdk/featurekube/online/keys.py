"""Entity keys encoded for the online store; pure.

``driver_id:i:1001`` for one int64 key; composite keys ordered by key name and joined
by ``/`` (``driver_id:i:1001/zone:s:SF%2FNorth``). The type tag keeps int64 ``1001``
and string ``"1001"`` apart; strings are percent-encoded, so no value can forge a
separator. The encoding is the same in the job, the feature server and the SDK.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import cast

__all__ = ["KeyType", "encode_entity_key", "encode_entity_keys"]

KeyType = str
"""'int64' or 'string', as in an Entity's type."""


def _encode_value(name: str, key_type: KeyType, value: object) -> str:
    if key_type == "int64":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"join key {name} is int64, got {type(value).__name__} {value!r}")
        return f"{name}:i:{value}"
    if key_type == "string":
        if not isinstance(value, str):
            raise TypeError(f"join key {name} is string, got {type(value).__name__} {value!r}")
        return f"{name}:s:{urllib.parse.quote(value, safe='')}"
    raise ValueError(f"join key {name} has unknown type {key_type!r}")


def encode_entity_key(types: Mapping[str, KeyType], values: Mapping[str, object]) -> str:
    """The online key of one entity.

    >>> encode_entity_key({"driver_id": "int64"}, {"driver_id": 1001})
    'driver_id:i:1001'
    >>> types = {"zone": "string", "driver_id": "int64"}
    >>> encode_entity_key(types, {"driver_id": 7, "zone": "SF/N"})
    'driver_id:i:7/zone:s:SF%2FN'
    """
    missing = sorted(set(types) - set(values))
    if missing:
        raise KeyError(f"missing join key(s): {', '.join(missing)}")
    return "/".join(_encode_value(name, types[name], values[name]) for name in sorted(types))


def encode_entity_keys(
    types: Mapping[str, KeyType], columns: Mapping[str, Sequence[object]]
) -> list[str]:
    """The online keys of many entities, given column-wise: the same strings as
    :func:`encode_entity_key` row by row, made a column at a time (per-row calls were
    what a large write or lookup spent its time on). The columns must already hold
    their key type and no nulls, as typed Arrow columns or a checked request do.

    >>> encode_entity_keys({"zone": "string", "driver_id": "int64"},
    ...                    {"driver_id": [7, 8], "zone": ["SF/N", "LA"]})
    ['driver_id:i:7/zone:s:SF%2FN', 'driver_id:i:8/zone:s:LA']
    """
    parts = []
    for name in sorted(types):
        key_type = types[name]
        values = columns[name]
        if key_type == "int64":
            parts.append(list(map(f"{name}:i:".__add__, map(str, values))))
        elif key_type == "string":
            prefix = f"{name}:s:"
            quote = urllib.parse.quote
            parts.append([prefix + quote(v, safe="") for v in cast("Sequence[str]", values)])
        else:
            raise ValueError(f"join key {name} has unknown type {key_type!r}")
    if len(parts) == 1:
        return parts[0]
    return list(map("/".join, zip(*parts, strict=True)))
