"""Exact quantiles of a column too large to hold at once, found by narrowing ranges of
values; pure.

A quantile (:mod:`featurekube.monitoring.stats`: nearest rank, NaN above every number)
is the value of one rank among a column's sorted values. Finding it by holding every
distinct value, as Spark's ``percentile_disc`` does, takes memory in the values: 10M
distinct doubles overran a 2 GiB heap. Instead an engine counts, for each range of
values still open, how many of the range's values fall in each of ``buckets``
equal-width buckets, with each bucket's least and greatest value; a :class:`Search`
keeps the bucket that holds each wanted rank, as that rank's range for the next pass.
A range of equal values gives its ranks' value at once, and ranges of few enough
values are fetched and picked from (:meth:`Search.picked`).

A bucket's index is a non-decreasing function of the value (:class:`Scale`), so the
values between a bucket's least and greatest are exactly the bucket's, and the next
range is again an interval. A range's own least and greatest values fall in its first
and last bucket, so every pass leaves a range strictly smaller: the search ends. It
ends soon, too: a pass cuts a range's width about ``buckets`` times, so 4,096 buckets
need at most 6 passes for int64 (64 bits of width) and, for doubles spread from the
largest (2¹⁰²⁴) to the least apart (2⁻¹⁰⁷⁴), about 175; values as they come need one
or two.

    search = Search.start(ranks, finite=Range(low, high, count, below=0))
    while search.unsettled() and <values of search.unsettled() are too many to fetch>:
        search = search.narrowed({r: <buckets of r by r.scale(B)> for r in search.unsettled()})
    for r in search.unsettled():
        search = search.picked(r, <r's values, sorted>)
    search.values()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

__all__ = ["Bucket", "Range", "Scale", "Search"]

Number = int | float


@dataclass(frozen=True)
class Scale:
    """How a value of a :class:`Range` maps to its bucket among ``buckets``.

    Integers (``step`` set): ``(v - origin) // step``, exactly (an engine computes it
    in decimals: ``v - origin`` may not fit 64 bits). Floats: ``floor((v' - origin) /
    width * buckets)`` kept within ``[0, buckets)``, where ``v'`` is ``v / 2`` when
    ``halved`` (a range wider than the largest double) and ``v`` otherwise."""

    buckets: int
    origin: Number
    step: int | None = None
    width: float | None = None
    halved: bool = False

    def bucket(self, value: Number) -> int:
        """The bucket of ``value`` (a value of the range), computed as an engine
        computes it: in IEEE doubles, as Python's floats are."""
        if self.step is not None:
            return (int(value) - int(self.origin)) // self.step
        assert self.width is not None
        term = value / 2 if self.halved else float(value)
        index = math.floor((term - self.origin) / self.width * float(self.buckets))
        return min(max(index, 0), self.buckets - 1)


@dataclass(frozen=True)
class Range:
    """The ``count`` values v of a column with ``low <= v <= high`` (never NaN nor
    null); ``below`` of the column's values are less than ``low``."""

    low: Number
    high: Number
    count: int
    below: int

    @property
    def settled(self) -> bool:
        """Whether its values are all equal: their rank's value is ``low``."""
        return bool(self.low == self.high)

    def scale(self, buckets: int, integers: bool) -> Scale:
        """The :class:`Scale` of this range (not settled, finite) into ``buckets``; of
        ``integers`` when the column's values are int64, else doubles."""
        if buckets < 2:
            raise ValueError(f"a range is cut into at least 2 buckets, not {buckets}")
        if integers:
            span = int(self.high) - int(self.low) + 1
            return Scale(buckets, int(self.low), step=-(-span // buckets))
        low, high = float(self.low), float(self.high)
        if math.isfinite(high - low):
            return Scale(buckets, low, width=high - low)
        # Halving is exact for numbers this large, and keeps the width finite.
        return Scale(buckets, low / 2, width=high / 2 - low / 2, halved=True)


@dataclass(frozen=True)
class Bucket:
    """What an engine counted of one bucket of a range: its ``index``, how many
    values, the least and the greatest."""

    index: int
    count: int
    low: Number
    high: Number


@dataclass(frozen=True)
class _Rank:
    rank: int
    range: Range | None = None
    value: Number | None = None


@dataclass(frozen=True)
class Search:
    """Where each wanted rank (1-based, ascending, NaN above every number) stands: its
    value found, or the range that holds it."""

    ranks: tuple[_Rank, ...]

    @classmethod
    def start(
        cls,
        ranks: Sequence[int],
        *,
        finite: Range | None,
        negative_infinite: int = 0,
        positive_infinite: int = 0,
        nan: int = 0,
    ) -> Search:
        """The search for ``ranks`` among a column's non-null values: ``finite``
        holds its finite numbers (None: it has none; its ``below`` must be
        ``negative_infinite``), below them ``negative_infinite`` values of -inf, above
        them ``positive_infinite`` of +inf, then ``nan`` NaN."""
        held = finite.count if finite is not None else 0
        if finite is not None and finite.below != negative_infinite:
            raise ValueError(f"the finite values have {finite.below} below, not -inf's count")
        total = negative_infinite + held + positive_infinite + nan
        found = []
        for rank in ranks:
            if not 1 <= rank <= total:
                raise ValueError(f"rank {rank} is outside the column's {total} values")
            if rank <= negative_infinite:
                found.append(_Rank(rank, value=-math.inf))
            elif rank <= negative_infinite + held:
                assert finite is not None
                found.append(_settle(_Rank(rank, range=finite)))
            elif rank <= negative_infinite + held + positive_infinite:
                found.append(_Rank(rank, value=math.inf))
            else:
                found.append(_Rank(rank, value=math.nan))
        return cls(tuple(found))

    def unsettled(self) -> list[Range]:
        """The ranges some rank still waits on, each once, in order."""
        return sorted(
            {r.range for r in self.ranks if r.value is None and r.range is not None},
            key=lambda r: r.below,
        )

    def narrowed(self, buckets: Mapping[Range, Sequence[Bucket]]) -> Search:
        """Each rank whose range is among ``buckets`` moved to the bucket that holds it
        (``buckets[range]``: the range's non-empty buckets, any order)."""
        moved = []
        for item in self.ranks:
            counted = buckets.get(item.range) if item.range is not None else None
            if item.value is not None or item.range is None or counted is None:
                moved.append(item)
                continue
            moved.append(_settle(replace(item, range=_holding(item.range, item.rank, counted))))
        return Search(tuple(moved))

    def picked(self, range_: Range, ordered: Sequence[Number]) -> Search:
        """The ranks waiting on ``range_`` given their values from its values in
        ascending order (``ordered``: all ``range_.count`` of them)."""
        if len(ordered) != range_.count:
            raise ValueError(f"{len(ordered)} values fetched of a range of {range_.count}")
        return Search(
            tuple(
                replace(item, value=ordered[item.rank - range_.below - 1])
                if item.value is None and item.range == range_
                else item
                for item in self.ranks
            )
        )

    def values(self) -> list[Number]:
        """Each rank's value, in the order of the ranks; all must be found."""
        if any(r.value is None for r in self.ranks):
            raise ValueError("some ranks are not found yet")
        return [r.value for r in self.ranks if r.value is not None]


def _settle(item: _Rank) -> _Rank:
    if item.range is not None and item.range.settled:
        return replace(item, value=item.range.low)
    return item


def _holding(range_: Range, rank: int, buckets: Sequence[Bucket]) -> Range:
    counted = sum(bucket.count for bucket in buckets)
    if counted != range_.count:
        raise ValueError(
            f"the buckets of [{range_.low}, {range_.high}] hold {counted} values, not the "
            f"range's {range_.count}"
        )
    below = range_.below
    for bucket in sorted(buckets, key=lambda b: b.index):
        if rank <= below + bucket.count:
            return Range(bucket.low, bucket.high, bucket.count, below)
        below += bucket.count
    raise AssertionError("unreachable: the rank lies in its range")
