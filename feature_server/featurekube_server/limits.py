"""How big a request to the feature server can legitimately be; pure, no I/O.

A request's size on the wire follows from the serving plan and the server's limits:
at most ``max_rows`` rows, each value at most ``max_string_bytes`` (strings, in UTF-8)
or ``max_array_length`` (float64 arrays), and only the columns the plan names (every
join key and request field for GetOnlineFeatures; a push-source view's keys, event
timestamp and features for Push). :func:`estimate_request_bytes` adds up the largest
such request of each method, as protobuf encodes it; :func:`derive_max_message_bytes`
makes the server's default message limit of it, with headroom, and never more than
:data:`MAX_DEFAULT_MESSAGE_BYTES`.

Why it matters: the server decodes a request into Python values, which take five to
seven times its bytes on the wire. A limit that follows the plan keeps a request's memory
near what the plan needs, rather than near a fixed 64 MiB whatever the plan.

>>> from featurekube_server import plan
>>> serving = plan.parse_plan({
...     "featureService": "eta", "namespace": "rides",
...     "featureViews": [{"name": "stats", "onlineTable": "t",
...                       "entities": [{"name": "driver_id", "type": "int64"}],
...                       "features": [{"name": "trips", "type": "int64"}]}]})
>>> sizes = estimate_request_bytes(serving, max_rows=10_000)
>>> sizes.get_online_features
110144
>>> derive_max_message_bytes(sizes) == MIN_MESSAGE_BYTES  # small plans get the floor
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from featurekube_server import plan

__all__ = [
    "HEADROOM",
    "MAX_DEFAULT_MESSAGE_BYTES",
    "MIN_MESSAGE_BYTES",
    "RequestSizes",
    "derive_max_message_bytes",
    "estimate_request_bytes",
    "value_bytes",
]

MIB = 1024 * 1024

HEADROOM = 0.25
"""Share added to the largest legitimate request: room for encoders that lay out a
message differently (unpacked lists, fields in another order, unknown fields)."""
MIN_MESSAGE_BYTES = 1 * MIB
"""The smallest default limit, whatever the plan: a plan of a few int64 columns needs
far less, and a limit that tight would buy nothing."""
MAX_DEFAULT_MESSAGE_BYTES = 16 * MIB
"""The largest default limit, whatever the plan: a request of 16 MiB takes up to ~120
MiB once decoded (float64 arrays cost the most: 7 bytes per byte on the wire), which a
pod of 512 MiB holds beside the server's own ~190 MiB and the requests waiting their
turn. A plan whose largest request is bigger (several long strings or arrays at
``max_rows`` rows) takes fewer rows per request, unless the limit is raised with the
pod's memory."""

# Bytes a column costs beyond its values: the map entry's tag and length, its name's
# tag and length, the Values message's, the list's and the null flags' tags and
# lengths (each length a varint of at most 5 bytes below 32 GiB).
_COLUMN_OVERHEAD = 64
# The fixed fields of a request (tags and lengths of the selection, the flags).
_REQUEST_OVERHEAD = 64


def _varint_bytes(number: int) -> int:
    """Bytes of ``number`` as a protobuf varint."""
    return max(1, (number.bit_length() + 6) // 7)


def _length_delimited(payload: int) -> int:
    """Bytes of a field of ``payload`` bytes: its tag, its length and itself."""
    return 1 + _varint_bytes(payload) + payload


def value_bytes(value_type: str, *, max_string_bytes: int, max_array_length: int) -> int:
    """The most bytes one value of ``value_type`` takes in a ``Values`` list, its null
    flag included (proto3 packs repeated numbers and bools).

    >>> value_bytes("int64", max_string_bytes=1024, max_array_length=2048)
    11
    >>> value_bytes("string", max_string_bytes=1024, max_array_length=2048)
    1028
    """
    null_flag = 1
    if value_type in ("int64", "timestamp", "float64"):
        # A varint takes up to 10 bytes (negative numbers); a float64 column may be
        # sent as int64 values, which the server converts.
        return 10 + null_flag
    if value_type == "bool":
        return 1 + null_flag
    if value_type == "string":
        return _length_delimited(max_string_bytes) + null_flag
    if value_type == "float64_array":
        # One Float64List per value, its doubles packed in one field.
        return _length_delimited(_length_delimited(8 * max_array_length)) + null_flag
    raise ValueError(f"unknown value type {value_type!r}")


@dataclass(frozen=True)
class RequestSizes:
    """The largest legitimate request of each method, in bytes on the wire."""

    get_online_features: int
    push: Mapping[str, int]
    """Per push-source view (``namespace/name``)."""
    max_rows: int

    @property
    def largest(self) -> int:
        """The largest request of any method."""
        return max([self.get_online_features, *self.push.values()])


def estimate_request_bytes(
    serving: plan.ServingPlan,
    *,
    max_rows: int,
    max_string_bytes: int = 1024,
    max_array_length: int = 2048,
) -> RequestSizes:
    """The largest request of ``max_rows`` rows the plan takes, per method: every
    column it may carry, every value at its largest."""

    def column(name: str, value_type: str) -> int:
        per_value = value_bytes(
            value_type, max_string_bytes=max_string_bytes, max_array_length=max_array_length
        )
        return _COLUMN_OVERHEAD + len(name.encode()) + max_rows * per_value

    def columns(typed: Iterable[tuple[str, str]]) -> int:
        return sum(column(name, value_type) for name, value_type in typed)

    # Either the service's name or the list of every feature it serves.
    selection = max(
        _length_delimited(len(serving.feature_service.encode())),
        sum(_length_delimited(len(n.encode())) for n in serving.feature_names),
    )
    get_online_features = (
        _REQUEST_OVERHEAD
        + selection
        + columns(serving.join_keys.items())
        + columns((r.name, r.type) for r in serving.request_data)
    )
    push = {}
    for view in serving.feature_views:
        if view.push is None:
            continue
        typed = {e.name: e.type for e in view.entities}
        typed[view.push.timestamp_field] = "timestamp"
        for feature in view.push.features:
            typed.setdefault(feature.source, feature.type)
        push[f"{view.namespace}/{view.name}"] = (
            _REQUEST_OVERHEAD
            + _length_delimited(len(view.name.encode()))
            + _length_delimited(len(view.namespace.encode()))
            + columns(typed.items())
        )
    return RequestSizes(get_online_features, push, max_rows)


def derive_max_message_bytes(sizes: RequestSizes) -> int:
    """The default limit of a request's size: the largest legitimate request plus
    :data:`HEADROOM`, between :data:`MIN_MESSAGE_BYTES` and
    :data:`MAX_DEFAULT_MESSAGE_BYTES`.

    >>> derive_max_message_bytes(RequestSizes(8 * MIB, {}, 10_000)) == 10 * MIB
    True
    """
    wanted = sizes.largest + int(sizes.largest * HEADROOM)
    return min(max(wanted, MIN_MESSAGE_BYTES), MAX_DEFAULT_MESSAGE_BYTES)
