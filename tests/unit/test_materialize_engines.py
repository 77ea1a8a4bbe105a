"""Choosing the engine of a window, and the Spark SQL the python engine takes."""

from __future__ import annotations

import duckdb
import pytest

from featurekube.materialize import engines, python_job, translate
from featurekube.materialize.errors import TransformationError


def test_auto_takes_python_for_small_portable_windows_and_spark_otherwise() -> None:
    portable = "SELECT driver_id, LOWER(zone) AS zone FROM source WHERE fare > 0"
    assert engines.choose("auto", input_rows=0, transformation=None) == "python"
    assert engines.choose("auto", input_rows=100, transformation=portable) == "python"
    limit = engines.DEFAULT_PYTHON_MAX_ROWS
    assert engines.choose("auto", input_rows=limit, transformation=None) == "python"
    assert engines.choose("auto", input_rows=limit + 1, transformation=None) == "spark"
    assert engines.choose("auto", input_rows=5, transformation=None, python_max_rows=4) == "spark"
    assert engines.choose("auto", input_rows=None, transformation=None) == "spark"
    unportable = "SELECT driver_id, percentile(fare, 0.5) AS p FROM source GROUP BY driver_id"
    assert engines.choose("auto", input_rows=10, transformation=unportable) == "spark"
    # What the user says wins, whatever the size.
    assert engines.choose("python", input_rows=10**12, transformation=None) == "python"
    assert engines.choose("spark", input_rows=1, transformation=None) == "spark"
    with pytest.raises(ValueError, match="expected one of auto, spark, python"):
        engines.choose("flink", input_rows=1, transformation=None)


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT a FROM source GROUP BY a", ["GROUP BY"]),
        (
            "SELECT reflect('java.lang.System', 'getenv', 'X') AS k FROM source",
            ["function reflect"],
        ),
        ("SELECT ROUND(fare, 1) AS f FROM source", ["function round"]),
        ("SELECT s.a FROM source s JOIN source o ON s.a = o.a", ["JOIN"]),
        ("SELECT a, row_number() OVER (ORDER BY a) AS n FROM source", ["window functions"]),
        ("SELECT x[0] AS y FROM source", ["indexing"]),
    ],
)
def test_sql_outside_what_both_engines_compute_alike_is_refused_by_name(
    sql: str, refused: list[str]
) -> None:
    found = translate.unportable(sql)
    for name in refused:
        assert any(name in problem for problem in found), (name, found)
    with pytest.raises(TransformationError, match="which featurekube does not allow"):
        translate.translate(sql, "FeatureView rides/x")


def test_portable_sql_computes_what_spark_computes() -> None:
    sql = (
        "SELECT id, CAST(FLOOR(DATEDIFF(CAST(ts AS DATE), d) / 365.25) AS BIGINT) AS years, "
        "FLOOR(x) AS fx, CEIL(x) AS cx, IF(x > 1, 'big', 'small') AS size, "
        "CASE WHEN x IS NULL THEN 0 ELSE 1 END AS known, NVL(s, 'none') AS s2, "
        "x / NULLIF(y, 0) AS ratio, 7 % 3 AS m, CONCAT(s, '!') AS bang, UPPER(s) AS up, "
        "LENGTH(s) AS n, GREATEST(x, y) AS g, s LIKE 'a%' AS starts_a, x BETWEEN 1 AND 2 AS b "
        "FROM source WHERE NOT flag AND id IN (1, 2)"
    )
    assert translate.unportable(sql) == []
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'").fetchall()
        connection.execute(
            "CREATE TABLE source AS SELECT * FROM (VALUES "
            "(1, TIMESTAMPTZ '2026-01-01 23:30:00+00', DATE '2024-01-01', 1.5, 0.0, 'abc', false),"
            "(2, TIMESTAMPTZ '2026-01-01 00:00:00+00', DATE '2025-01-02', NULL, 2.0, NULL, false),"
            "(3, TIMESTAMPTZ '2026-01-01 00:00:00+00', DATE '2025-01-02', 1.0, 2.0, 'z', true)"
            ") AS t(id, ts, d, x, y, s, flag)"
        ).fetchall()
        relation = connection.sql(translate.translate(sql))
        rows = relation.fetchall()
        types = dict(zip(relation.columns, map(str, relation.types), strict=True))
    assert rows == [
        (1, 2, 1, 2, "big", 1, "abc", None, 1, "abc!", "ABC", 3, 1.5, True, True),
        (2, 0, None, None, "small", 0, "none", None, 1, None, None, None, 2.0, None, None),
    ]
    # Spark types FLOOR and CEIL of a double as BIGINT: so does the translation.
    assert (types["fx"], types["cx"]) == ("BIGINT", "BIGINT")


def test_a_cast_that_fails_fails_as_it_does_in_spark() -> None:
    sql = translate.translate("SELECT CAST(s AS BIGINT) AS n FROM source")
    assert "TRY_CAST" not in sql
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE source AS SELECT 'x1' AS s").fetchall()
        with pytest.raises(duckdb.ConversionException):
            connection.sql(sql).fetchall()


def test_duckdb_types_take_the_names_spark_gives_them() -> None:
    assert python_job.spark_type("BIGINT") == "bigint"
    assert python_job.spark_type("INTEGER") == "int"
    assert python_job.spark_type("DOUBLE") == "double"
    assert python_job.spark_type("VARCHAR") == "string"
    assert python_job.spark_type("BOOLEAN") == "boolean"
    assert python_job.spark_type("TIMESTAMP WITH TIME ZONE") == "timestamp"
    assert python_job.spark_type("TIMESTAMP") == "timestamp_ntz"
    assert python_job.spark_type("DECIMAL(12,3)") == "decimal(12,3)"
    assert python_job.spark_type("DOUBLE[]") == "array<double>"
    assert python_job.spark_type("TIMESTAMP_NS") == "timestamp_ns"  # refused as event time


def test_a_division_by_zero_fails_as_it_does_in_spark() -> None:
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE source AS SELECT 1.0 AS a, 0.0 AS b").fetchall()
        with pytest.raises(duckdb.InvalidInputException, match="DIVIDE_BY_ZERO"):
            connection.sql(translate.translate("SELECT a / b AS r FROM source")).fetchall()
        guarded = translate.translate("SELECT a / NULLIF(b, 0) AS r FROM source")
        assert connection.sql(guarded).fetchall() == [(None,)]
