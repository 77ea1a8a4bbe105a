"""Spark's search for the exact quantiles of windows too large for its driver
(featurekube.materialize.spark_quantiles) against the definition
(featurekube.monitoring.stats.quantiles_of), on columns built to be hard: NaN,
infinities, the widest doubles, integers that doubles cannot tell apart, few distinct
values; with settings that force many passes of counting."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pytest

from featurekube.materialize import spark_quantiles
from featurekube.monitoring import stats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_ROUGH = random.Random(11)
DOUBLES: dict[str, Sequence[float | None]] = {
    "skewed": [_ROUGH.lognormvariate(0, 5) for _ in range(3000)],
    "edges": (
        [-math.inf] * 40
        + [math.nan] * 300
        + [math.inf] * 25
        + [-1.7e308, 1.7e308, 5e-324, -5e-324, 1.0, -1.0] * 50
    ),
    "few": [2.5] * 2000 + [1.0, 7.0] * 3 + [None] * 10,
}
INTEGERS: dict[str, Sequence[int | None]] = {
    "wide": [-(2**63), 2**63 - 1, 0] * 5 + [2**62 + i for i in range(800)] + [None] * 3,
}
SETTINGS = {
    "defaults": spark_quantiles.QuantileSettings(),
    "narrow": spark_quantiles.QuantileSettings(buckets=2, fetch_max_values=5),
    "one pass": spark_quantiles.QuantileSettings(buckets=64, fetch_max_values=2000),
}


@pytest.fixture(scope="module")
def columns(spark: SparkSession) -> Iterator[DataFrame]:
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    fields = [StructField(n, DoubleType()) for n in DOUBLES]
    fields += [StructField(n, LongType()) for n in INTEGERS]
    values: list[Sequence[float | None]] = [*DOUBLES.values(), *INTEGERS.values()]
    height = max(len(v) for v in values)
    rows = [tuple(v[i] if i < len(v) else None for v in values) for i in range(height)]
    # Spread over partitions, as a window's cached rows are.
    frame = spark.createDataFrame(rows, StructType(fields)).repartition(4).cache()
    yield frame
    frame.unpersist()


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_the_quantiles_are_the_nearest_ranks(columns: DataFrame, settings: object) -> None:
    assert isinstance(settings, spark_quantiles.QuantileSettings)
    features = [(n, "float64") for n in DOUBLES] + [(n, "int64") for n in INTEGERS]
    found = _quantiles(columns, features, settings)
    for name, values in DOUBLES.items():
        expected = stats.quantiles_of(values)
        assert expected is not None
        assert _nan_safe(found[name]) == _nan_safe(expected), name
    for name, ints in INTEGERS.items():
        ordered = sorted(v for v in ints if v is not None)
        ranks = [stats.nearest_rank(len(ordered), p) for p in stats.PERCENTS]
        # Exact in integers before they become floats: 2**62 + 1 is not 2**62.
        assert found[name] == [float(ordered[r - 1]) for r in ranks], name


def test_values_fetched_in_one_piece_are_picked_too(columns: DataFrame) -> None:
    # One partition gives one Arrow chunk, which numpy sees read-only.
    whole = columns.coalesce(1)
    found = _quantiles(whole, [("skewed", "float64")], SETTINGS["defaults"])
    assert found["skewed"] == stats.quantiles_of(DOUBLES["skewed"])


def test_a_feature_without_values_has_none(spark: SparkSession) -> None:
    from pyspark.sql.types import DoubleType, StructField, StructType

    empty = spark.createDataFrame([(None,)] * 3, StructType([StructField("x", DoubleType())]))
    assert _quantiles(empty, [("x", "float64")], SETTINGS["narrow"]) == {"x": None}


def _quantiles(
    rows: DataFrame, features: list[tuple[str, str]], settings: spark_quantiles.QuantileSettings
) -> dict[str, list[float] | None]:
    """The search, from an aggregate of its counts alone (the job's holds more)."""
    counted = rows.agg(*spark_quantiles.counts(features)).first()
    assert counted is not None
    return spark_quantiles.quantiles(rows, features, counted, settings)


def _nan_safe(values: list[float] | None) -> list[object]:
    assert values is not None
    return ["NaN" if math.isnan(v) else v for v in values]
