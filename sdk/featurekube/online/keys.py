"""Entity keys encoded for the online store; pure.

``driver_id:i:1001`` for one int64 key; composite keys ordered by key name and joined
by ``/`` (``driver_id:i:1001/zone:s:SF%2FNorth``). The type tag keeps int64 ``1001``
and string ``"1001"`` apart; strings are percent-encoded, so no value can forge a
separator. The encoding is the same in the job, the feature server and the SDK.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

__all__ = ["KeyType", "encode_entity_key"]

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
