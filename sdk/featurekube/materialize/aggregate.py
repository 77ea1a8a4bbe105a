"""Time-window aggregations of one entity's events, at the boundaries a window owns;
pure (numpy and pyarrow, no I/O, no pyspark).

The Spark job groups the source events by entity and calls :func:`aggregate_entity` on
each group (``applyInArrow``); the rules are those of :mod:`featurekube.materialize.plan`
and of the semantics page (docs/semantics.md, "Aggregations"): a row at each owned
boundary t whose values, or whose latest event, differ from those at t - S.

An entity's values only change at the boundaries where an event enters a window
(the first boundary at or after its event time) or leaves one (that boundary plus the
window); only those candidates, and the boundary before each, are evaluated. Each row
also carries the entity's latest event at or before t, of any column: the TTL counts
from it, so a value that stays the same stays valid while events keep coming.

What each function gives over the events of ``(t - window, t]`` whose column is not
null (as SQL aggregates, nulls are skipped):

- ``count``, ``count_distinct``: how many values, how many distinct ones; 0 when none.
- ``sum``, ``mean``, ``min``, ``max``: as named; null when none. Integer columns stay
  integers: sums, minima and maxima of int64 are exact, and a mean or deviation of
  integers is computed exactly and rounded once. Float sums are exactly rounded
  (``math.fsum``), so they do not depend on the order of the events and a value is the
  same whichever window computed it.
- ``stddev``: the sample standard deviation (n - 1), from the exact variance rounded
  once; null below two values.
- ``last``: the value of the event with the greatest event time, then created time
  (and among events equal in both, the greatest value).

A float NaN makes ``min``, ``max``, ``sum`` and ``mean`` NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from featurekube.materialize import moments
from featurekube.materialize.plan import (
    CREATED_MICROS,
    EVENT_MICROS,
    AggregationPlan,
    AggregationStep,
)

__all__ = ["LATEST_EVENT", "aggregate_entity", "output_schema"]

LATEST_EVENT = "latest_event_timestamp"
"""The output column of the entity's latest event at or before the boundary (µs)."""

_Int64s = npt.NDArray[np.int64]
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": _TIMESTAMP,
    "float64_array": pa.list_(pa.float64()),
}


def output_schema(plan: AggregationPlan) -> pa.Schema:
    """What :func:`aggregate_entity` returns: ``event_timestamp`` (the boundary t, in
    microseconds), :data:`LATEST_EVENT` (microseconds), then one column per
    aggregation."""
    fields = [
        pa.field("event_timestamp", pa.int64(), nullable=False),
        pa.field(LATEST_EVENT, pa.int64(), nullable=False),
    ]
    fields += [pa.field(step.name, _ARROW[step.value_type]) for step in plan.steps]
    return pa.schema(fields)


def aggregate_entity(events: pa.Table, plan: AggregationPlan) -> pa.Table:
    """The rows of one entity at the boundaries ``plan`` owns where its values change.

    ``events`` holds :data:`~featurekube.materialize.plan.EVENT_MICROS`,
    :data:`~featurekube.materialize.plan.CREATED_MICROS` and each aggregated column (of
    the aggregation's type), in any order; it may reach back to ``first - S - window``.
    """
    schema = output_schema(plan)
    first, last = plan.first_boundary, plan.last_boundary
    if first is None or last is None or events.num_rows == 0:
        return schema.empty_table()
    order = np.lexsort(
        (
            _int64s(events.column(CREATED_MICROS)),
            _int64s(events.column(EVENT_MICROS)),
        )
    )
    events = events.take(pa.array(order))
    times = _int64s(events.column(EVENT_MICROS))
    interval = plan.interval
    entered = -(-times // interval) * interval  # the first boundary at or after each event
    candidates = np.unique(np.concatenate([entered + w for w in (0, *plan.windows)]))
    candidates = candidates[(candidates >= first) & (candidates <= last)]
    if candidates.size == 0:
        return schema.empty_table()
    probes = np.unique(np.concatenate([candidates, candidates - interval]))
    # The latest event at or before each probe (None before the first event, which a
    # candidate never is: each is at or after an event).
    latest_at = (np.searchsorted(times, probes, side="right") - 1).tolist()
    latest = [times[i].item() if i >= 0 else None for i in latest_at]
    columns = [latest, *(_evaluate(step, events, probes) for step in plan.steps)]
    at = np.searchsorted(probes, candidates)
    before = np.searchsorted(probes, candidates - interval)
    changed = [
        index
        for index, (i, j) in enumerate(zip(at.tolist(), before.tolist(), strict=True))
        if any(not _same(values[i], values[j]) for values in columns)
    ]
    boundaries = candidates[changed].tolist()
    arrays = [
        pa.array(boundaries, pa.int64()),
        pa.array([latest[at[i]] for i in changed], pa.int64()),
    ]
    for step, values in zip(plan.steps, columns[1:], strict=True):
        arrays.append(_to_arrow([values[at[i]] for i in changed], step.value_type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _int64s(column: pa.ChunkedArray | pa.Array) -> _Int64s:
    return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _to_arrow(values: Sequence[Any], value_type: str) -> pa.Array:
    if value_type == "timestamp":
        return pa.array(values, pa.int64()).cast(_TIMESTAMP)
    return pa.array(values, _ARROW[value_type])


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _evaluate(step: AggregationStep, events: pa.Table, probes: _Int64s) -> list[Any]:
    """The value of ``step`` at each probe time."""
    column = events.column(step.column)
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    times = _int64s(events.column(EVENT_MICROS))[valid]
    created = _int64s(events.column(CREATED_MICROS))[valid]
    present = column.filter(pa.array(valid))
    lo = np.searchsorted(times, probes - step.window, side="right").tolist()
    hi = np.searchsorted(times, probes, side="right").tolist()
    if step.function == "count":
        return [h - low for low, h in zip(lo, hi, strict=True)]
    values = _values(present, step)
    if step.function == "last":
        return _last(values, times, created, lo, hi)
    reduce = _REDUCERS[step.function]
    return [reduce(values, low, h) for low, h in zip(lo, hi, strict=True)]


def _values(present: pa.ChunkedArray, step: AggregationStep) -> Any:
    """The non-null values as numpy (numbers, bools, timestamps as microseconds) or a
    list of Python objects (strings, arrays)."""
    type_ = present.type
    if pa.types.is_timestamp(type_):
        return _int64s(present)
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_):
        if step.function in ("sum", "mean", "stddev") and not pa.types.is_integer(type_):
            return np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.float64)
        return present.to_numpy(zero_copy_only=False)
    return present.to_pylist()


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _count_distinct(values: Any, lo: int, hi: int) -> int:
    part = values[lo:hi]
    if isinstance(part, np.ndarray):
        return int(np.unique(part).size)
    return len({tuple(v) if isinstance(v, list) else v for v in part})


def _sum(values: Any, lo: int, hi: int) -> Any:
    if hi == lo:
        return None
    part = values[lo:hi]
    if part.dtype.kind in "iu":
        return int(part.sum(dtype=np.int64))
    return math.fsum(part.tolist())


def _mean(values: Any, lo: int, hi: int) -> float | None:
    if hi == lo:
        return None
    part = values[lo:hi]
    if part.dtype.kind in "iu":
        # Python ints: the exact sum, divided with one rounding.
        return float(sum(part.tolist()) / (hi - lo))
    return math.fsum(part.tolist()) / (hi - lo)


def _stddev(values: Any, lo: int, hi: int) -> float | None:
    n = hi - lo
    if n < 2:
        return None
    part = values[lo:hi]
    # The exact variance, rounded once (for integers beyond 2^53 too), so the value
    # does not depend on how the events were split (tiles merge the same sums).
    if part.dtype.kind in "iu":
        return moments.of_ints(part.tolist()).sample_stddev(n)
    return moments.of_floats(part).sample_stddev(n)


def _min(values: Any, lo: int, hi: int) -> Any:
    if hi == lo:
        return None
    part = values[lo:hi]
    return _python(part.min()) if isinstance(part, np.ndarray) else min(part)


def _max(values: Any, lo: int, hi: int) -> Any:
    if hi == lo:
        return None
    part = values[lo:hi]
    return _python(part.max()) if isinstance(part, np.ndarray) else max(part)


_REDUCERS: dict[str, Callable[[Any, int, int], Any]] = {
    "count_distinct": _count_distinct,
    "sum": _sum,
    "mean": _mean,
    "stddev": _stddev,
    "min": _min,
    "max": _max,
}


def _last(values: Any, times: _Int64s, created: _Int64s, lo: list[int], hi: list[int]) -> list[Any]:
    # Start of each run of events equal in event and created time: the last value is
    # the greatest of the final run, so ties do not depend on the input's order.
    same = np.concatenate(([False], (times[1:] == times[:-1]) & (created[1:] == created[:-1])))
    run_start = np.maximum.accumulate(np.where(same, 0, np.arange(times.size)))
    result: list[Any] = []
    for low, h in zip(lo, hi, strict=True):
        if h == low:
            result.append(None)
            continue
        begin = max(int(run_start[h - 1]), low)
        result.append(_max(values, begin, h))
    return result
