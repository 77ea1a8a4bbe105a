"""Where the Spark engine computes a window's statistics: at the driver, a feature
column at a time, up to ``driver_statistics_max_rows`` rows; in Spark above, with
quantile settings under which the search ends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from featurekube.materialize import spark_job, spark_quantiles
from featurekube.monitoring import profiling

FEATURES = [("speed", "float64"), ("trips", "int64"), ("zone", "string"), ("open", "bool")]


class _Rows:
    """A cached DataFrame as ``_driver_statistics`` uses it, over an Arrow table."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.fetched: list[list[str]] = []

    def __getitem__(self, name: str) -> str:
        return name.strip("`")

    def select(self, *columns: str) -> Any:
        self.fetched.append(list(columns))
        return SimpleNamespace(toArrow=lambda: self.table.select(list(columns)))


def test_the_driver_fetches_one_column_at_a_time_and_gets_the_whole_tables_figures() -> None:
    table = pa.table(
        {
            "speed": [1.5, None, float("nan"), -2.0, 7.25, 0.0],
            "trips": [3, 1, None, 4, 1, 5],
            "zone": ["a", "b", "a", None, "c", "a"],
            "open": [True, False, True, True, None, False],
        }
    )
    rows = _Rows(table)

    found = spark_job._driver_statistics(rows, SimpleNamespace(features=FEATURES), None)  # type: ignore[arg-type]

    assert rows.fetched == [[name] for name, _ in FEATURES]
    with duckdb.connect() as connection:
        connection.register("__written", table)
        columns = [(name, name, type_) for name, type_ in FEATURES]
        whole = profiling.window_statistics(connection, "__written", columns, values=table)
    assert repr(found) == repr(whole)  # NaN-safe, to the last bit


@pytest.mark.parametrize(("count", "where"), [(1000, "driver"), (1001, "spark")])
def test_the_driver_takes_windows_of_up_to_the_limit_in_rows(
    count: int, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(spark_job, "_driver_statistics", lambda *_: ran.append("driver") or [])
    monkeypatch.setattr(spark_job, "_spark_statistics", lambda *_: ran.append("spark") or [])
    plan = SimpleNamespace(features=FEATURES * 5)  # 20 features: rows, not values, count
    settings = spark_job.JobSettings(driver_statistics_max_rows=1000)

    spark_job._window_statistics(None, plan, None, count, settings)  # type: ignore[arg-type]

    assert ran == [where]


def test_settings_that_could_not_end_are_refused() -> None:
    for buckets, fetch in ((1, 10), (4, -1)):
        with pytest.raises(ValueError, match="2 buckets or more and a fetch of 0 values or more"):
            spark_quantiles.QuantileSettings(buckets=buckets, fetch_max_values=fetch)
