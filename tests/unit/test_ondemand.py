"""Request-time transformations: compiled once from Spark SQL, evaluated over Arrow."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pyarrow as pa
import pytest

from featurekube import ondemand
from featurekube.spec import v1alpha1


@dataclass(frozen=True)
class T:
    name: str
    type: str
    expression: str


INPUTS = {
    "trip_distance_km": "float64",
    "pickup_hour": "int64",
    "avg_trip_speed_kmh_7d": "float64",
    "avg_trip_speed_kmh_30m": "float64",
    "trips_30m": "int64",
    "vehicle_type": "string",
    "is_new": "bool",
    "last_seen": "timestamp",
    "embedding": "float64_array",
}


def evaluate(expression: str, columns: dict[str, list[object]], type_: str = "float64") -> list:
    compiled = ondemand.compile_transformations([T("out", type_, expression)], INPUTS)
    types = {name: ondemand.ARROW_TYPES[INPUTS[name]] for name in columns}
    table = pa.table({n: pa.array(v, type=types[n]) for n, v in columns.items()})
    return compiled.evaluate(table)["out"].to_pylist()


def test_the_eta_models_transformations_compute_per_row() -> None:
    service = v1alpha1.FeatureService.model_validate(
        {
            "metadata": {"name": "eta-model", "namespace": "rides"},
            "spec": {
                "owner": "eta-ml",
                "features": [{"featureView": "driver-trip-stats"}],
                "requestData": [
                    {"name": "trip_distance_km", "type": "float64"},
                    {"name": "pickup_hour", "type": "int64"},
                ],
                "transformations": [
                    {
                        "name": "naive_eta_min",
                        "type": "float64",
                        "expression": "trip_distance_km / NULLIF(avg_trip_speed_kmh_7d, 0) * 60",
                    },
                    {
                        "name": "speed_vs_usual",
                        "type": "float64",
                        "expression": "avg_trip_speed_kmh_30m / NULLIF(avg_trip_speed_kmh_7d, 0)",
                    },
                    {
                        "name": "is_rush_hour",
                        "type": "bool",
                        "expression": (
                            "pickup_hour BETWEEN 7 AND 9 OR pickup_hour BETWEEN 16 AND 19"
                        ),
                    },
                ],
            },
        }
    )
    compiled = ondemand.compile_transformations(service.spec.transformations or [], INPUTS)
    table = pa.table(
        {
            "trip_distance_km": [5.0, 3.0, 2.0],
            "pickup_hour": [8, 12, None],
            "avg_trip_speed_kmh_7d": [30.0, 0.0, None],
            "avg_trip_speed_kmh_30m": [15.0, 10.0, 20.0],
        }
    )

    result = compiled.evaluate(table)

    assert result.column_names == ["naive_eta_min", "speed_vs_usual", "is_rush_hour"]
    assert result["naive_eta_min"].to_pylist() == [10.0, None, None]
    assert result["speed_vs_usual"].to_pylist() == [0.5, None, None]
    assert result["is_rush_hour"].to_pylist() == [True, False, None]
    assert result.schema.field("naive_eta_min").type == pa.float64()
    assert compiled.inputs(["naive_eta_min"]) == ("trip_distance_km", "avg_trip_speed_kmh_7d")


def test_a_subset_is_evaluated_from_only_the_columns_it_reads() -> None:
    compiled = ondemand.compile_transformations(
        [T("a", "float64", "trip_distance_km * 2"), T("b", "int64", "trips_30m + 1")], INPUTS
    )
    result = compiled.evaluate(pa.table({"trips_30m": [1, 2]}), names={"b"})
    assert result.to_pydict() == {"b": [2, 3]}


@pytest.mark.parametrize(
    ("expression", "columns", "type_", "expected"),
    [
        ("trips_30m / 4", {"trips_30m": [1, None]}, "float64", [0.25, None]),
        ("trips_30m DIV 4", {"trips_30m": [9, -9]}, "int64", [2, -2]),
        ("trips_30m % 4", {"trips_30m": [9, -9, 1]}, "int64", [1, -1, 1]),
        ("trips_30m % 0", {"trips_30m": [9]}, "int64", [None]),
        ("trip_distance_km / 0", {"trip_distance_km": [1.0]}, "float64", [None]),
        ("-trips_30m + 2 * 3 - 1", {"trips_30m": [1]}, "int64", [4]),
        ("trips_30m", {"trips_30m": [3]}, "float64", [3.0]),
        (
            "CASE WHEN trips_30m > 5 THEN 'busy' WHEN trips_30m IS NULL THEN 'unknown' "
            "ELSE 'quiet' END",
            {"trips_30m": [6, None, 1]},
            "string",
            ["busy", "unknown", "quiet"],
        ),
        (
            "CASE trips_30m WHEN 1 THEN 10 WHEN 2 THEN 20 END",
            {"trips_30m": [2, 3]},
            "int64",
            [20, None],
        ),
        ("IF(is_new, 1.5, 2)", {"is_new": [True, None]}, "float64", [1.5, 2.0]),
        (
            "COALESCE(avg_trip_speed_kmh_7d, trips_30m, 0)",
            {"avg_trip_speed_kmh_7d": [None, None, 4.5], "trips_30m": [None, 3, 1]},
            "float64",
            [0.0, 3.0, 4.5],
        ),
        ("NVL(vehicle_type, 'none')", {"vehicle_type": [None, "suv"]}, "string", ["none", "suv"]),
        ("trips_30m IN (1, 2)", {"trips_30m": [1, 3, None]}, "bool", [True, False, None]),
        (
            "NOT is_new AND trips_30m > 1",
            {"is_new": [False, None], "trips_30m": [2, 0]},
            "bool",
            [True, False],
        ),
        (
            "is_new OR trips_30m > 1",
            {"is_new": [None, None], "trips_30m": [2, 0]},
            "bool",
            [True, None],
        ),
        ("trips_30m IS NOT NULL", {"trips_30m": [None, 1]}, "bool", [False, True]),
        ("trips_30m <=> NULL", {"trips_30m": [None, 1]}, "bool", [True, False]),
        ("trips_30m <> 1", {"trips_30m": [1, 2]}, "bool", [False, True]),
        (
            "CAST(vehicle_type AS BIGINT)",
            {"vehicle_type": ["12", "x", None]},
            "int64",
            [12, None, None],
        ),
        ("CAST(trips_30m AS STRING)", {"trips_30m": [7]}, "string", ["7"]),
        (
            "ABS(trips_30m) + FLOOR(trip_distance_km) + CEIL(trip_distance_km)",
            {"trips_30m": [-2], "trip_distance_km": [1.5]},
            "int64",
            [5],
        ),
        ("ROUND(trip_distance_km, 1)", {"trip_distance_km": [1.25]}, "float64", [1.3]),
        ("POWER(trips_30m, 2) + SQRT(4) + LN(1) + EXP(0)", {"trips_30m": [3]}, "float64", [12.0]),
        ("LEAST(trips_30m, 5, NULL)", {"trips_30m": [9, 2]}, "int64", [5, 2]),
        (
            "GREATEST(trip_distance_km, trips_30m)",
            {"trip_distance_km": [1.5], "trips_30m": [2]},
            "float64",
            [2.0],
        ),
        (
            "UPPER(vehicle_type) || '-' || LOWER('X')",
            {"vehicle_type": ["suv"]},
            "string",
            ["SUV-x"],
        ),
        ("CONCAT(vehicle_type, '!')", {"vehicle_type": ["a"]}, "string", ["a!"]),
        ("LENGTH(TRIM(vehicle_type))", {"vehicle_type": [" ab "]}, "int64", [2]),
        (
            "HOUR(last_seen) * 100 + MINUTE(last_seen)",
            {"last_seen": [dt.datetime(2026, 1, 2, 7, 45, tzinfo=dt.UTC)]},
            "int64",
            [745],
        ),
        (
            "DAYOFWEEK(last_seen)",
            {"last_seen": [dt.datetime(2026, 1, 4, tzinfo=dt.UTC)]},
            "int64",
            [1],
        ),  # a Sunday
        ("NULL", {"trips_30m": [1, 2]}, "float64", [None, None]),
        ("42", {"trips_30m": [1, 2]}, "int64", [42, 42]),
    ],
)
def test_sql_semantics(expression: str, columns: dict, type_: str, expected: list) -> None:
    assert evaluate(expression, columns, type_) == expected


def test_a_constant_expression_fills_every_row_even_without_inputs() -> None:
    compiled = ondemand.compile_transformations([T("one", "int64", "1")], INPUTS)
    assert compiled.evaluate(pa.table({"x": [0, 0, 0]}))["one"].to_pylist() == [1, 1, 1]


def test_nan_and_infinity_pass_through_arithmetic() -> None:
    out = evaluate("trip_distance_km * 2", {"trip_distance_km": [math.inf, math.nan]})
    assert out[0] == math.inf
    assert math.isnan(out[1])


def test_inputs_of_another_arrow_type_are_cast_to_their_value_type() -> None:
    compiled = ondemand.compile_transformations([T("x", "float64", "trip_distance_km + 1")], INPUTS)
    table = pa.table({"trip_distance_km": pa.array([1.5], type=pa.float32())})
    assert compiled.evaluate(table)["x"].to_pylist() == [2.5]


def test_an_overflow_fails_the_evaluation_with_a_clear_error() -> None:
    compiled = ondemand.compile_transformations([T("big", "int64", "trips_30m * 4")], INPUTS)
    with pytest.raises(ondemand.TransformationError) as failed:
        compiled.evaluate(pa.table({"trips_30m": [2**62]}))
    assert "big (trips_30m * 4) failed on these values" in str(failed.value)
    assert "overflow" in str(failed.value)


def test_a_missing_input_column_is_a_transformation_error() -> None:
    compiled = ondemand.compile_transformations([T("x", "int64", "trips_30m + 1")], INPUTS)
    with pytest.raises(
        ondemand.TransformationError, match="read 'trips_30m', which the input does not have"
    ):
        compiled.evaluate(pa.table({"other": [1]}))


@pytest.mark.parametrize(
    ("expression", "type_", "message"),
    [
        ("trips_31m + 1", "int64", "'trips_31m' is neither a request field nor a feature"),
        ("t.trips_30m", "int64", "has a qualifier"),
        ("vehicle_type * 2", "float64", "needs numbers, but 'vehicle_type' is string"),
        ("trips_30m AND is_new", "bool", "needs a condition, but 'trips_30m' is int64"),
        (
            "trip_distance_km * 2",
            "int64",
            "gives float64 values but the transformation is declared int64",
        ),
        ("trips_30m > 1", "float64", "gives bool values"),
        ("COALESCE(vehicle_type, 1)", "string", "mixes int64, string values"),
        ("SOUNDEX(vehicle_type)", "string", "uses SOUNDEX, which request-time"),
        ("embedding < embedding", "bool", "compares float64_array values"),
        ("SELECT 1", "int64", "must be one SQL expression"),
        ("trips_30m +", "int64", "does not parse as a Spark SQL expression"),
        ("CAST(trips_30m AS DATE)", "int64", "casts to DATE, which is not supported"),
    ],
)
def test_expressions_that_cannot_work_are_refused_when_compiling(
    expression: str, type_: str, message: str
) -> None:
    with pytest.raises(ondemand.ExpressionError) as refused:
        ondemand.compile_transformations([T("x", type_, expression)], INPUTS, where="spec.t")
    assert str(refused.value).startswith("spec.t[0] (x): ")
    assert message in str(refused.value)


def test_names_are_case_insensitive_like_spark() -> None:
    assert evaluate("TRIPS_30M + 1", {"trips_30m": [1]}, "int64") == [2]


def test_a_million_rows_evaluate_vectorized() -> None:
    compiled = ondemand.compile_transformations(
        [T("eta", "float64", "trip_distance_km / NULLIF(avg_trip_speed_kmh_7d, 0) * 60")], INPUTS
    )
    rows = 1_000_000
    table = pa.table(
        {
            "trip_distance_km": pa.array([6.0] * rows),
            "avg_trip_speed_kmh_7d": pa.array([30.0, 0.0] * (rows // 2)),
        }
    )
    eta = compiled.evaluate(table)["eta"]
    assert eta.null_count == rows // 2
    assert eta[0].as_py() == 12.0
