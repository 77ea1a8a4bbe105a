"""The search for exact quantiles by narrowing ranges (featurekube.monitoring.rank_search),
played out over Python lists the way an engine plays it over a column; pure."""

from __future__ import annotations

import math
import random

import pytest

from featurekube.monitoring import stats
from featurekube.monitoring.rank_search import Bucket, Range, Search


def _quantiles(
    values: list[float] | list[int], *, buckets: int, fetch_max: int, integers: bool = False
) -> tuple[list[float], int]:
    """The 21 quantiles as an engine finds them (counting buckets, then fetching), and
    how many passes of counting it took."""
    finite = [v for v in values if math.isfinite(v)]
    ranks = [stats.nearest_rank(len(values), p) for p in stats.PERCENTS]
    negative = sum(1 for v in values if v == -math.inf)
    search = Search.start(
        ranks,
        finite=Range(min(finite), max(finite), len(finite), negative) if finite else None,
        negative_infinite=negative,
        positive_infinite=sum(1 for v in values if v == math.inf),
        nan=sum(1 for v in values if math.isnan(v)),
    )
    passes = 0
    while sum(r.count for r in search.unsettled()) > fetch_max:
        counted: dict[Range, list[Bucket]] = {}
        for range_ in search.unsettled():
            scale = range_.scale(buckets, integers)
            found: dict[int, list[float | int]] = {}
            for value in finite:
                if range_.low <= value <= range_.high:
                    found.setdefault(scale.bucket(value), []).append(value)
            counted[range_] = [Bucket(i, len(v), min(v), max(v)) for i, v in found.items()]
        narrowed = search.narrowed(counted)
        for before, after in zip(search.ranks, narrowed.ranks, strict=True):
            if before.value is None:  # every pass leaves each open range smaller
                assert before.range is not None
                narrower = after.range is not None and after.range.count < before.range.count
                assert after.value is not None or narrower
        search = narrowed
        passes += 1
    for range_ in search.unsettled():
        search = search.picked(range_, sorted(v for v in finite if range_.low <= v <= range_.high))
    return [float(v) for v in search.values()], passes


def _same(ours: list[float], reference: list[float] | None) -> None:
    assert reference is not None
    assert [("NaN" if math.isnan(v) else v) for v in ours] == [
        ("NaN" if math.isnan(v) else v) for v in reference
    ]


_ROUGH = random.Random(7)
COLUMNS = {
    "uniform": [_ROUGH.uniform(-100, 100) for _ in range(5000)],
    "skewed": [_ROUGH.lognormvariate(0, 4) for _ in range(5000)],
    "repeated": [5.0] * 3000 + [1.0, 2.0, 9.0] * 10,
    "infinities and NaN": [-math.inf] * 30 + [math.nan] * 400 + [math.inf] * 40 + [0.5] * 7,
    "widest doubles": [-1.7e308, 1.7e308, 5e-324, -5e-324, 0.0, 1.0, -1.0] * 3,
    "powers of two": [2.0**k for k in range(-1000, 1000, 7)],
    "one value": [3.25],
    "only NaN": [math.nan] * 9,
}


@pytest.mark.parametrize("name", COLUMNS)
@pytest.mark.parametrize(("buckets", "fetch_max"), [(2, 1), (16, 40), (4096, 100_000)])
def test_the_search_finds_the_nearest_ranks(name: str, buckets: int, fetch_max: int) -> None:
    values = COLUMNS[name]
    ours, _ = _quantiles(values, buckets=buckets, fetch_max=fetch_max)
    _same(ours, stats.quantiles_of(values))


def test_integers_beyond_doubles_are_cut_exactly() -> None:
    # Neighbours above 2**53 share a double: only integer arithmetic tells them apart.
    values = [2**62 + i for i in range(500)] + [-(2**63), 2**63 - 1, 0] + [2**62] * 7
    ours, passes = _quantiles(values, buckets=2, fetch_max=1, integers=True)
    ordered = sorted(values)
    expected = [ordered[stats.nearest_rank(len(values), p) - 1] for p in stats.PERCENTS]
    assert ours == [float(v) for v in expected]
    assert passes < 80


def test_one_pass_of_many_buckets_leaves_few_values_to_fetch() -> None:
    values = COLUMNS["uniform"]
    ours, passes = _quantiles(values, buckets=4096, fetch_max=21 * 10)
    _same(ours, stats.quantiles_of(values))
    assert passes == 1


def test_a_range_is_cut_between_its_least_and_greatest_value() -> None:
    for low, high, integers in [(0.0, 1e-300, False), (-1.7e308, 1.7e308, False), (3, 4, True)]:
        scale = Range(low, high, 2, 0).scale(2, integers)
        assert (scale.bucket(low), scale.bucket(high)) == (0, 1)
    with pytest.raises(ValueError, match="at least 2 buckets"):
        Range(0.0, 1.0, 2, 0).scale(1, False)


def test_inconsistent_counts_are_refused() -> None:
    range_ = Range(0.0, 1.0, 3, 0)
    search = Search.start([2], finite=range_)
    with pytest.raises(ValueError, match="hold 2 values, not the range's 3"):
        search.narrowed({range_: [Bucket(0, 1, 0.0, 0.0), Bucket(1, 1, 1.0, 1.0)]})
    with pytest.raises(ValueError, match="2 values fetched of a range of 3"):
        search.picked(range_, [0.0, 1.0])
    with pytest.raises(ValueError, match="rank 4 is outside the column's 3 values"):
        Search.start([4], finite=range_)
    with pytest.raises(ValueError, match="not found yet"):
        search.values()
