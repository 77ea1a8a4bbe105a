"""A window's statistics per feature, and the rows of a view version's statistics
table; pure.

Each materialized window gives, per feature, over the rows it wrote offline:

- ``count``: the non-null values; ``nulls``: the null ones;
- numeric features (int64, float64): ``min``, ``max``, ``mean``, ``stddev`` (the sample
  deviation, n - 1, null below two values) and the 21 ``quantiles`` p0, p5, ..., p100;
- categorical features (string, bool): ``top_values``, the :data:`TOP_VALUES` most
  frequent values with their counts (most frequent first, ties by value);
- ``psi``: the drift against the view's reference (:mod:`featurekube.monitoring.drift`),
  null when there is none.

Quantiles are **nearest-rank** (SQL's ``PERCENTILE_DISC``): p_k is the value of rank
``max(1, ceil(k·n/100))`` among the n non-null values in ascending order, NaN above
every number — always one of the values, never an interpolation. Engines compute
``q·n`` in floating point, where ``0.55·100`` is not 55; asked for :data:`PROBE_LEVELS`
(each level less 10⁻¹², which moves no rank of a window under 5·10¹⁰ rows), DuckDB's
``quantile_disc`` and Spark's ``percentile_disc`` both give exactly the ranks above.
Spark's windows too large for its driver find the ranks by :func:`nearest_rank`
itself (:mod:`featurekube.monitoring.rank_search`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

__all__ = [
    "CATEGORICAL_TYPES",
    "MAX_VALUE_LENGTH",
    "NUMERIC_TYPES",
    "PERCENTS",
    "PROBE_LEVELS",
    "STATS_SCHEMA",
    "TOP_VALUES",
    "FeatureStatistics",
    "Kind",
    "kind_of",
    "nearest_rank",
    "quantiles_of",
    "rank_top_values",
    "statistics_table",
]

Kind = Literal["numeric", "categorical"]

NUMERIC_TYPES = frozenset({"int64", "float64"})
"""Value types with min, max, mean, stddev and quantiles."""
CATEGORICAL_TYPES = frozenset({"string", "bool"})
"""Value types with top values (a bool as ``true`` or ``false``)."""
PERCENTS = tuple(range(0, 101, 5))
"""The quantiles kept: p0 (the least value), p5, ..., p100 (the greatest)."""
PROBE_LEVELS = tuple(0.0 if p == 0 else 1.0 if p == 100 else p / 100 - 1e-12 for p in PERCENTS)
"""What to ask an engine's discrete percentile for, to get :data:`PERCENTS` exactly."""
TOP_VALUES = 20
"""Most frequent values kept per categorical feature."""
MAX_VALUE_LENGTH = 256
"""Characters of a top value kept in the table; a longer value is cut, with ``…``."""

TIMESTAMP = pa.timestamp("us", tz="UTC")
TOP_VALUE = pa.struct([pa.field("value", pa.string()), pa.field("count", pa.int64())])
STATS_SCHEMA = pa.schema(
    [
        pa.field("window_start", TIMESTAMP, nullable=False),
        pa.field("window_end", TIMESTAMP, nullable=False),
        pa.field("feature", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("nulls", pa.int64(), nullable=False),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("mean", pa.float64()),
        pa.field("stddev", pa.float64()),
        pa.field("quantiles", pa.list_(pa.float64())),
        pa.field("top_values", pa.list_(TOP_VALUE)),
        pa.field("psi", pa.float64()),
        pa.field("engine", pa.string()),
        pa.field("written_at", TIMESTAMP),
    ]
)
"""The columns of a view version's statistics table: one row per (window_start, feature)."""


def kind_of(value_type: str) -> Kind | None:
    """Whether a feature of ``value_type`` gets numeric or categorical statistics (None:
    only counts — timestamps and float arrays)."""
    if value_type in NUMERIC_TYPES:
        return "numeric"
    if value_type in CATEGORICAL_TYPES:
        return "categorical"
    return None


def nearest_rank(n: int, percent: int) -> int:
    """The 1-based rank of quantile p``percent`` among ``n`` values (n >= 1).

    >>> [nearest_rank(100, p) for p in (0, 5, 55, 100)]
    [1, 5, 55, 100]
    >>> [nearest_rank(7, p) for p in (0, 25, 50, 100)]
    [1, 2, 4, 7]
    """
    return max(1, -(-percent * n // 100))


def quantiles_of(values: Iterable[float | None]) -> list[float] | None:
    """The 21 quantiles of ``values`` (nulls left out) by the definition above; None
    when there are none. The reference the engines are tested against.

    >>> quantiles_of(range(1, 21))[:4]
    [1.0, 1.0, 2.0, 3.0]
    """
    ordered = sorted(
        (float(v) for v in values if v is not None),
        key=lambda v: (math.isnan(v), v),
    )
    if not ordered:
        return None
    return [ordered[nearest_rank(len(ordered), p) - 1] for p in PERCENTS]


def rank_top_values(counts: Mapping[str, int], limit: int = TOP_VALUES) -> list[tuple[str, int]]:
    """The ``limit`` most frequent of ``counts``, most frequent first, ties by value
    (compared as UTF-8 bytes, as both engines compare strings).

    >>> rank_top_values({"b": 2, "a": 2, "c": 5}, limit=2)
    [('c', 5), ('a', 2)]
    """
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0].encode()))
    return ordered[:limit]


@dataclass(frozen=True)
class FeatureStatistics:
    """One feature's statistics over one window's rows (see the module docstring)."""

    feature: str
    type: str
    count: int
    nulls: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    stddev: float | None = None
    quantiles: Sequence[float] | None = None
    top_values: Sequence[tuple[str, int]] | None = None
    psi: float | None = None


def statistics_table(
    window_start: dt.datetime,
    window_end: dt.datetime,
    features: Sequence[FeatureStatistics],
    *,
    engine: str,
    written_at: dt.datetime,
) -> pa.Table:
    """The rows of one window for the statistics table, in :data:`STATS_SCHEMA`."""
    rows = [
        {
            "window_start": window_start,
            "window_end": window_end,
            "feature": s.feature,
            "type": s.type,
            "count": s.count,
            "nulls": s.nulls,
            "min": s.min,
            "max": s.max,
            "mean": s.mean,
            "stddev": s.stddev,
            "quantiles": None if s.quantiles is None else list(s.quantiles),
            "top_values": None
            if s.top_values is None
            else [{"value": _cut(v), "count": n} for v, n in s.top_values],
            "psi": s.psi,
            "engine": engine,
            "written_at": written_at,
        }
        for s in features
    ]
    return pa.Table.from_pylist(rows, schema=STATS_SCHEMA)


def _cut(value: str) -> str:
    return value if len(value) <= MAX_VALUE_LENGTH else value[: MAX_VALUE_LENGTH - 1] + "…"
