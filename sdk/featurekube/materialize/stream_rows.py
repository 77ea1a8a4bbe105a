"""A stream micro-batch's events in Arrow, once they are out of Spark; pure (no I/O).

The stream job takes each micro-batch out of Spark in one job (:mod:`featurekube.
materialize.stream_job`) and does the rest in the driver with these functions: which
events it owns (:func:`owned`), the Kafka timestamps its latency is measured from
(:func:`appended_micros`), and one row per (keys, event time) by the batch windows'
rule (:func:`deduplicated`).

Columns: the join keys and features by name, ``event_timestamp`` and
``created_timestamp`` (:mod:`featurekube.offline.layout`'s names).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurekube.offline import layout as offline_layout

__all__ = [
    "appended_micros",
    "deduplicated",
    "false_count",
    "keyed",
    "newest",
    "owned",
    "spark_order",
]

EVENT = offline_layout.EVENT_TIMESTAMP
CREATED = offline_layout.CREATED_TIMESTAMP
_NAN = "__nan_"


def keyed(events: pa.Table, keys: Sequence[str]) -> pa.ChunkedArray:
    """Whether each event has an event time and every join key (a transformation may
    leave either null).

    >>> t = pa.table({"k": [1, None, 3], EVENT: pa.array([1, 2, None], pa.timestamp("us"))})
    >>> keyed(t, ["k"]).to_pylist()
    [True, False, False]
    """
    found = pc.is_valid(events.column(EVENT))
    for key in keys:
        found = pc.and_(found, pc.is_valid(events.column(key)))
    return found


def owned(events: pa.Table, keys: Sequence[str], since: dt.datetime, *, after: bool) -> pa.Array:
    """Whether each event is the stream's: keyed, and with event time at or after
    ``since`` (``after``: strictly after it, an aggregation's split).

    >>> at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> t = pa.table({"k": [1, 1, None], EVENT: pa.array([at, at - dt.timedelta(1), at],
    ...     pa.timestamp("us", tz="UTC"))})
    >>> owned(t, ["k"], at, after=False).to_pylist(), owned(t, ["k"], at, after=True).to_pylist()
    ([True, False, False], [False, False, False])
    """
    column = events.column(EVENT)
    bound = pa.scalar(since).cast(column.type)
    late_enough = pc.greater(column, bound) if after else pc.greater_equal(column, bound)
    return pc.fill_null(pc.and_(keyed(events, keys), late_enough), False)


def false_count(mask: pa.Array | pa.ChunkedArray) -> int:
    """How many of a boolean column's values are false (nulls count as false)."""
    return len(mask) - int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)


def appended_micros(column: pa.ChunkedArray | pa.Array) -> list[int]:
    """The Kafka timestamps of a column (microseconds since the epoch), nulls left out."""
    present = column.drop_null()
    return pc.cast(present.cast(pa.timestamp("us", tz="UTC")), pa.int64()).to_pylist()  # type: ignore[no-any-return]


def deduplicated(
    rows: pa.Table, keys: Sequence[str], features: Sequence[tuple[str, str]]
) -> pa.Table:
    """One row per (keys, event time) of ``rows`` (none of them null), by the rule of
    :func:`featurekube.materialize.spark_job.deduplicated`: the greatest created time
    wins, then the greatest feature values in the view's order (Spark's order: a null
    lowest, NaN above every number, arrays element by element). Rows come out sorted
    by keys and event time.

    Arrow sorts every type but arrays; with a ``float64_array`` feature, the rows that
    tie on (keys, event time) are ranked in Python (:func:`spark_order`) instead.

    >>> t = pa.table({"k": [1, 1, 2], "f": [1.0, float("nan"), 3.0],
    ...     EVENT: pa.array([5, 5, 5], pa.timestamp("us")),
    ...     CREATED: pa.array([7, 7, 7], pa.timestamp("us"))})
    >>> deduplicated(t, ["k"], [("f", "float64")]).column("f").to_pylist()
    [nan, 3.0]
    """
    if rows.num_rows < 2:
        return rows
    group = [*keys, EVENT]
    sortable = rows
    order: list[tuple[str, str, str]] = [(name, "ascending", "at_end") for name in group]
    order.append((CREATED, "descending", "at_end"))
    arrays = [name for name, type_ in features if type_ == "float64_array"]
    for name, type_ in features:
        if name in arrays:
            break  # the features after it cannot come before it: Python ranks the ties
        if type_ == "float64":  # Arrow puts NaN with the nulls; Spark above every number
            sortable = sortable.append_column(_NAN + name, pc.is_nan(rows.column(name)))
            order.append((_NAN + name, "descending", "at_end"))
        order.append((name, "descending", "at_end"))
    ordered = rows.take(pc.sort_indices(sortable, sort_keys=order))
    heads = _group_heads(ordered, group)
    if not arrays:
        return ordered.filter(heads)
    return ordered.take(_best_of_groups(ordered, heads, features))


def newest(rows: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Each entity's row with the latest event time, of ``rows`` as
    :func:`deduplicated` returns them (sorted by keys and event time, one row per
    pair): the online write needs no other, and building items of the others cost
    more than writing these.

    >>> t = pa.table({"k": [1, 1, 2], EVENT: pa.array([1, 2, 1], pa.timestamp("us"))})
    >>> newest(t, ["k"]).to_pydict()["k"], newest(t, ["k"]).column(EVENT).to_pylist()[0]
    ([1, 2], datetime.datetime(1970, 1, 1, 0, 0, 0, 2))
    """
    if rows.num_rows < 2:
        return rows
    heads = pc.indices_nonzero(_group_heads(rows, keys))
    lasts = pc.subtract(
        pa.concat_arrays([heads.slice(1), pa.array([rows.num_rows], heads.type)]), 1
    )
    return rows.take(lasts)


def _group_heads(ordered: pa.Table, group: Sequence[str]) -> pa.Array:
    """Whether each row of ``ordered`` (sorted by ``group``) starts a run of equal
    ``group`` values."""
    rows = ordered.num_rows
    changed = pa.array([False] * (rows - 1), pa.bool_())
    for name in group:
        column = ordered.column(name)
        changed = pc.or_(changed, pc.not_equal(column.slice(1), column.slice(0, rows - 1)))
    return pa.concat_arrays([pa.array([True]), pc.fill_null(changed, True).combine_chunks()])


def _best_of_groups(
    ordered: pa.Table, heads: pa.Array, features: Sequence[tuple[str, str]]
) -> pa.Array:
    """The index of each group's greatest row by :func:`spark_order`: the head when the
    group has one row."""
    starts = pc.indices_nonzero(heads).to_pylist()
    ends = [*starts[1:], ordered.num_rows]
    names = [CREATED, *(name for name, _ in features)]
    best: list[int] = []
    for start, end in zip(starts, ends, strict=True):
        if end - start == 1:
            best.append(start)
            continue
        candidates = ordered.slice(start, end - start).select(names).to_pylist()
        ranked = [tuple(spark_order(row[n]) for n in names) for row in candidates]
        best.append(start + max(range(len(ranked)), key=ranked.__getitem__))
    return pa.array(best, pa.int64())


def spark_order(value: Any) -> tuple[Any, ...]:
    """A sort key that orders values as Spark does: a null lowest, NaN above every
    number, arrays element by element (a shorter one first when one is a prefix of
    the other).

    >>> sorted([2.0, None, float("nan"), -1.0], key=spark_order)
    [None, -1.0, 2.0, nan]
    >>> sorted([[1.0, None], None, [1.0], [float("nan")]], key=spark_order)
    [None, [1.0], [1.0, None], [nan]]
    """
    if value is None:
        return (0,)
    if isinstance(value, float) and math.isnan(value):
        return (2,)
    if isinstance(value, list):
        return (1, tuple(spark_order(item) for item in value))
    return (1, value)
