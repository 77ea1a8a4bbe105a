"""The 21 quantiles of numeric features of a window too large for the driver, computed
in Spark exactly and in memory that does not grow with the values; does I/O (Spark).

Spark's ``percentile_disc`` keeps a map of every distinct value with its count: at 10M
distinct doubles it overran a 2 GiB heap, and at 10M rows of five features it took
144 s. Here the ranks of :mod:`featurekube.monitoring.stats` are found by
:mod:`featurekube.monitoring.rank_search`:

1. the caller's aggregate over the rows counts each feature's non-null values, NaN
   and infinities, with the least and greatest finite value (:func:`counts`, beside
   the window's other statistics: no scan of its own);
2. while a feature's open ranges hold more than ``fetch_max_values`` values, one
   grouped aggregate per feature counts them in ``buckets`` buckets each (at most
   ``buckets`` groups a range), and each rank keeps the bucket that holds it;
3. the values of the open ranges are fetched as Arrow (at most ``fetch_max_values``),
   sorted, and the ranks picked.

Spark holds at most ``buckets`` groups a range, and the driver ``fetch_max_values``
values, whatever the rows. Uniform values need one pass of step 2 up to about 780M
values (4,096 buckets of n / 4,096 values, and 21 of them fit a 4M fetch), two beyond.
Columns built to defeat equal-width buckets take more passes, never more memory
(:mod:`~featurekube.monitoring.rank_search` bounds them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from featurekube.monitoring import stats as monitoring_stats
from featurekube.monitoring.rank_search import Bucket, Range, Scale, Search

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row

__all__ = ["QuantileSettings", "counts", "quantiles"]

_LONG_MAX = 2**63 - 1


@dataclass(frozen=True)
class QuantileSettings:
    """How the search runs."""

    buckets: int = 4096
    """Buckets a range is cut into in one pass."""
    fetch_max_values: int = 4_000_000
    """Values of one feature fetched to the driver at most (32 MB)."""

    def __post_init__(self) -> None:
        if self.buckets < 2 or self.fetch_max_values < 0:
            raise ValueError(
                f"quantile settings need 2 buckets or more and a fetch of 0 values or more, "
                f"not {self.buckets} and {self.fetch_max_values}"
            )


def counts(features: Sequence[tuple[str, str]]) -> list[Column]:
    """The aggregate columns :func:`quantiles` starts from, of each of ``features``
    (name, ``int64`` or ``float64``), for the caller's aggregate over the rows."""
    from pyspark.sql import functions as F

    out: list[Column] = []
    for index, (name, type_) in enumerate(features):
        column = _column(name)
        if type_ == "int64":
            finite = column.isNotNull()
            nan = negative = positive = F.lit(0)
        else:
            # NaN is above every number in Spark's comparisons, +inf included.
            finite = (column > F.lit(-math.inf)) & (column < F.lit(math.inf))
            nan, negative, positive = (
                F.count_if(condition)
                for condition in (
                    F.isnan(column),
                    column == F.lit(-math.inf),
                    column == F.lit(math.inf),
                )
            )
        inside = F.when(finite, column)
        out += [
            F.count(column).alias(f"__q_n{index}"),
            F.count(inside).alias(f"__q_f{index}"),
            F.min(inside).alias(f"__q_lo{index}"),
            F.max(inside).alias(f"__q_hi{index}"),
            nan.alias(f"__q_nan{index}"),
            negative.alias(f"__q_ni{index}"),
            positive.alias(f"__q_pi{index}"),
        ]
    return out


def quantiles(
    rows: DataFrame,
    features: Sequence[tuple[str, str]],
    counted: Row,
    settings: QuantileSettings,
) -> dict[str, list[float] | None]:
    """The quantiles (:data:`~featurekube.monitoring.stats.PERCENTS`, as floats) of each
    of ``features`` (name, ``int64`` or ``float64``) over ``rows``, ``counted`` the row
    of an aggregate over them that held :func:`counts` of the same features; None for a
    feature without non-null values."""
    out: dict[str, list[float] | None] = {}
    for index, (name, type_) in enumerate(features):
        non_null = int(counted[f"__q_n{index}"] or 0)
        if not non_null:
            out[name] = None
            continue
        finite = int(counted[f"__q_f{index}"] or 0)
        negative = int(counted[f"__q_ni{index}"] or 0)
        search = Search.start(
            [monitoring_stats.nearest_rank(non_null, p) for p in monitoring_stats.PERCENTS],
            finite=(
                Range(counted[f"__q_lo{index}"], counted[f"__q_hi{index}"], finite, negative)
                if finite
                else None
            ),
            negative_infinite=negative,
            positive_infinite=int(counted[f"__q_pi{index}"] or 0),
            nan=int(counted[f"__q_nan{index}"] or 0),
        )
        search = _narrowed(rows, name, type_ == "int64", search, settings)
        out[name] = [float(value) for value in search.values()]
    return out


def _narrowed(
    rows: DataFrame, name: str, integers: bool, search: Search, settings: QuantileSettings
) -> Search:
    """``search`` with every rank found: its ranges counted in buckets while they hold
    too many values to fetch, then fetched."""
    while sum(r.count for r in search.unsettled()) > settings.fetch_max_values:
        counted = _buckets(rows, name, integers, search.unsettled(), settings.buckets)
        search = search.narrowed(counted)
    ranges = search.unsettled()
    return _fetched(rows, name, search, ranges) if ranges else search


def _buckets(
    rows: DataFrame, name: str, integers: bool, ranges: list[Range], buckets: int
) -> dict[Range, list[Bucket]]:
    """Each of ``ranges`` (disjoint) counted in ``buckets`` buckets, in one grouped
    aggregate: the range's position times ``buckets`` plus the bucket, as the group."""
    from pyspark.sql import functions as F

    column = _column(name)
    code: Column | None = None
    for position, range_ in enumerate(ranges):
        bucket = _bucket(name, range_.scale(buckets, integers)) + F.lit(position * buckets)
        inside = _inside(column, range_)
        code = F.when(inside, bucket) if code is None else code.when(inside, bucket)
    assert code is not None
    found: dict[Range, list[Bucket]] = {range_: [] for range_ in ranges}
    grouped = (
        rows.select(code.alias("b"), column.alias("v"))
        .where(F.col("b").isNotNull())
        .groupBy("b")
        .agg(F.count(F.lit(1)).alias("n"), F.min("v").alias("lo"), F.max("v").alias("hi"))
    )
    for row in grouped.collect():
        position, index = divmod(int(row["b"]), buckets)
        found[ranges[position]].append(Bucket(index, int(row["n"]), row["lo"], row["hi"]))
    return found


def _bucket(name: str, scale: Scale) -> Column:
    """:meth:`Scale.bucket` as a Spark column, in the same arithmetic."""
    from pyspark.sql import functions as F

    if scale.step is not None:
        if scale.step * scale.buckets <= _LONG_MAX:  # no value of the range overflows
            return F.expr(f"({_quoted(name)} - ({int(scale.origin)}L)) div {scale.step}L")
        # In decimals: the distance from the origin may not fit a long.
        return F.expr(
            f"(CAST({_quoted(name)} AS DECIMAL(20,0)) - CAST('{int(scale.origin)}' AS "
            f"DECIMAL(20,0))) div CAST('{scale.step}' AS DECIMAL(20,0))"
        )
    assert scale.width is not None
    column = _column(name)
    term = column / F.lit(2.0) if scale.halved else column
    index = F.floor(
        (term - F.lit(float(scale.origin))) / F.lit(scale.width) * F.lit(float(scale.buckets))
    )
    return F.least(F.greatest(index, F.lit(0)), F.lit(scale.buckets - 1))


def _fetched(rows: DataFrame, name: str, search: Search, ranges: list[Range]) -> Search:
    """``search`` with the ranks of ``ranges`` picked from their values, fetched as
    Arrow in one query and sorted at the driver."""
    from functools import reduce

    column = _column(name)
    inside = reduce(lambda a, b: a | b, (_inside(column, r) for r in ranges))
    # A copy: one Arrow chunk (one partition) comes to numpy read-only.
    values = np.sort(rows.where(inside).select(column).toArrow().column(0).to_numpy())
    for range_ in ranges:
        start = int(np.searchsorted(values, range_.low, "left"))
        stop = int(np.searchsorted(values, range_.high, "right"))
        search = search.picked(range_, values[start:stop].tolist())
    return search


def _inside(column: Column, range_: Range) -> Column:
    from pyspark.sql import functions as F

    return (column >= F.lit(range_.low)) & (column <= F.lit(range_.high))


def _column(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(_quoted(name))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
