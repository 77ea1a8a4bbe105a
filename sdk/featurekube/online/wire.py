"""Columns of Python values as the serving API's messages, and back; pure, no I/O.

The one mapping between the ``Values`` message of ``featurekube.serving.v1`` and
Python values, used by the feature server and by the SDK's client alike:

=============  ==========================  =========================================
value type     ``Values`` list             Python value
=============  ==========================  =========================================
int64          ``int64_values``            ``int``
float64        ``float64_values``          ``float`` (NaN and infinities included)
string         ``string_values``           ``str``
bool           ``bool_values``             ``bool``
timestamp      ``timestamp_values``        ``datetime`` in UTC (microseconds on the
                                           wire; a naive datetime is taken as UTC)
float64_array  ``float64_array_values``    ``list[float]``
=============  ==========================  =========================================

``None`` is a null: a placeholder in the list and ``True`` in ``nulls``. A column of
nulls only may have no list set at all; it decodes to nulls of no known type.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
from collections.abc import Sequence
from typing import Any, Final

from featurekube._proto.featurekube.serving.v1 import serving_pb2 as pb

__all__ = [
    "KIND_BY_TYPE",
    "TYPE_BY_KIND",
    "decode",
    "encode",
    "fill_values",
    "infer_type",
    "row_count",
    "value_type",
]

KIND_BY_TYPE: Final = {
    "int64": "int64_values",
    "float64": "float64_values",
    "string": "string_values",
    "bool": "bool_values",
    "timestamp": "timestamp_values",
    "float64_array": "float64_array_values",
}
"""Value type -> the field of ``Values`` that carries it."""
TYPE_BY_KIND: Final = {kind: value_type for value_type, kind in KIND_BY_TYPE.items()}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PLACEHOLDER: Final[dict[str, Any]] = {
    "int64": 0,
    "float64": 0.0,
    "string": "",
    "bool": False,
    "timestamp": 0,
}


def _micros(value: dt.datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # naive timestamps are UTC
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _datetime(micros: int) -> dt.datetime:
    try:
        return _EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError(
            f"timestamp {micros} µs since 1970 is outside the years 1 to 9999"
        ) from None


def encode(value_type: str, values: Sequence[Any]) -> pb.Values:
    """A ``Values`` message holding ``values`` (None for nulls) as ``value_type``.

    >>> encode("int64", [1, None]).nulls[:]
    [False, True]
    """
    message = pb.Values()
    fill_values(message, value_type, values)
    return message


def fill_values(message: pb.Values, value_type: str, values: Sequence[Any]) -> None:
    """Write ``values`` into an empty ``message`` (a field of a larger one, say)."""
    kind = KIND_BY_TYPE.get(value_type)
    if kind is None:
        raise ValueError(f"unknown value type {value_type!r}; expected one of {list(KIND_BY_TYPE)}")
    # By identity, in C: the common column has no null, and `None in values` would
    # compare with == (which some values, pandas' NA, refuse).
    has_nulls = any(map(operator.is_, values, itertools.repeat(None)))
    if has_nulls:
        message.nulls.extend([v is None for v in values])
    if value_type == "float64_array":
        message.float64_array_values.SetInParent()  # an empty column still says its type
        arrays = message.float64_array_values.arrays
        for value in values:
            arrays.add().values.extend(() if value is None else value)
        return
    target: Any = getattr(message, kind)
    if len(values) == 0:
        target.SetInParent()  # an empty column still says its type
    if value_type == "timestamp":
        micros = [0 if v is None else _micros(v) for v in values]
        target.micros.extend(micros)
        return
    if has_nulls:
        placeholder = _PLACEHOLDER[value_type]
        values = [placeholder if v is None else v for v in values]
    target.values.extend(values)


def value_type(message: pb.Values) -> str | None:
    """The value type ``message`` carries; None for a column of nulls of no type."""
    kind = message.WhichOneof("kind")
    return None if kind is None else TYPE_BY_KIND[kind]


def row_count(message: pb.Values) -> int:
    """How many values ``message`` holds, nulls included."""
    kind = message.WhichOneof("kind")
    if kind is None:
        return len(message.nulls)
    if kind == "timestamp_values":
        return len(message.timestamp_values.micros)
    if kind == "float64_array_values":
        return len(message.float64_array_values.arrays)
    inner: Any = getattr(message, kind)
    return len(inner.values)


def decode(message: pb.Values) -> list[Any]:
    """The Python values of ``message``, None for nulls.

    >>> decode(encode("float64", [0.1, None, float("inf")]))
    [0.1, None, inf]
    """
    kind = message.WhichOneof("kind")
    if kind is None:
        return [None] * len(message.nulls)
    values: list[Any]
    if kind == "timestamp_values":
        values = [_datetime(m) for m in message.timestamp_values.micros]
    elif kind == "float64_array_values":
        values = [list(a.values) for a in message.float64_array_values.arrays]
    else:
        inner: Any = getattr(message, kind)
        values = list(inner.values)
    nulls = message.nulls
    if nulls:
        if len(nulls) != len(values):
            raise ValueError(
                f"a Values message has {len(values)} values but {len(nulls)} null flags; "
                "nulls must be empty or one per value"
            )
        values = [None if null else v for v, null in zip(values, nulls, strict=True)]
    return values


def infer_type(values: Sequence[Any]) -> str | None:
    """The value type of a column of Python values (the first non-null decides); None
    when every value is null.

    >>> infer_type([None, 3])
    'int64'
    """
    for value in values:
        if value is None:
            continue
        # bool before int: True is an int to Python.
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "int64"
        if isinstance(value, float):
            return "float64"
        if isinstance(value, str):
            return "string"
        if isinstance(value, dt.datetime):
            return "timestamp"
        if isinstance(value, list | tuple) and all(isinstance(x, int | float) for x in value):
            return "float64_array"
        raise TypeError(
            f"cannot send {type(value).__name__} {value!r}: values are int, float, str, "
            "bool, datetime or a list of floats"
        )
    return None
