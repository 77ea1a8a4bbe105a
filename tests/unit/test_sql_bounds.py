"""User SQL nested too deeply is refused with a message, never a RecursionError."""

from __future__ import annotations

import datetime as dt

import pytest

from featurekube import ondemand, sqlbounds
from featurekube.errors import FeaturekubeError
from featurekube.materialize import plan
from featurekube.spec import v1alpha1
from featurekube.validation import sql

DEEP = "(" * 50 + "trip_distance_km" + ")" * 50


def test_nesting_counts_parentheses_outside_quotes_only() -> None:
    assert sqlbounds.nesting_problem("lower('((((((((((((((((((((((((((((((') ") is None
    assert sqlbounds.nesting_problem("`(((((((((((((((((((((((((((((` + 1") is None
    assert sqlbounds.nesting_problem("(" * 24 + "a" + ")" * 24) is None
    assert "25 deep" in (sqlbounds.nesting_problem("(" * 25 + "a" + ")" * 25) or "")


def test_validate_refuses_a_deep_expression_and_query_with_a_message() -> None:
    (expression,) = sql.check_expression(DEEP, {"trip_distance_km"})
    (query,) = sql.check_query(f"SELECT {DEEP} AS d FROM source")

    assert "nests parentheses 50 deep; at most 24" in expression
    assert "nests parentheses 50 deep" in query


def test_a_deep_case_without_parentheses_is_refused_not_crashed() -> None:
    deep_case = "CASE WHEN a THEN " * 400 + "1" + " END" * 400
    found = sql.check_expression(deep_case, {"a"})

    assert found  # a message, whatever sqlglot managed to parse


def test_the_feature_servers_compiler_refuses_a_deep_expression() -> None:
    definition = ondemand._Definition("eta", "float64", DEEP)

    with pytest.raises(FeaturekubeError, match="nests parentheses 50 deep"):
        ondemand.compile_transformations([definition], {"trip_distance_km": "float64"})


def test_a_job_refuses_a_deep_transformation_before_it_runs() -> None:
    view = v1alpha1.FeatureView.model_validate(
        {
            "metadata": {"name": "trips", "namespace": "rides"},
            "spec": {
                "owner": "o",
                "entities": [{"name": "driver_id", "type": "int64"}],
                "source": {"batch": {"path": "s3://bucket/raw/"}},
                "transformation": {"sql": f"SELECT *, {DEEP} AS d FROM source"},
                "features": [{"name": "d", "type": "float64"}],
            },
        }
    )
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    with pytest.raises(FeaturekubeError, match="nests parentheses 50 deep"):
        plan.plan_materialization(view, start, start + dt.timedelta(hours=1))
