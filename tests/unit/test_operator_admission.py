"""What validate refuses in an object as the API server holds it: the operator's own
check before it acts on a FeatureView or FeatureService; pure."""

from __future__ import annotations

import copy
from typing import Any

from featurekube_operator import admission
from operator_support import STORED_VIEW as VIEW


def _view(sql: str) -> dict[str, Any]:
    view = copy.deepcopy(VIEW)
    view["spec"]["transformation"]["sql"] = sql
    return view


def test_an_allowed_view_as_the_api_server_holds_it_is_not_refused() -> None:
    assert admission.check_object(VIEW) == []


def test_reflection_file_readers_and_other_tables_are_refused_at_the_sql_field() -> None:
    cases = {
        "SELECT driver_id, event_timestamp, reflect('java.lang.System', 'getenv', 'K') AS "
        "rating FROM source": "function reflect",
        "SELECT driver_id, event_timestamp, rating FROM parquet.`s3a://b/p/`": "reads table",
        "SELECT * FROM IDENTIFIER('other.private')": "function identifier",
        "SELECT driver_id, event_timestamp, java_method('java.lang.Runtime', 'x') AS rating "
        "FROM source": "function java_method",
        "SELECT driver_id, event_timestamp, input_file_name() AS rating FROM source": (
            "function input_file_name"
        ),
    }
    for sql, named in cases.items():
        refused = admission.check_object(_view(sql))
        assert refused, sql
        assert all(r.path == "spec.transformation.sql" for r in refused), refused
        assert named in admission.describe(refused), (sql, refused)


def test_a_service_expression_that_is_a_query_is_refused() -> None:
    service = {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": "eta-model", "namespace": "rides"},
        "spec": {
            "owner": "eta-team",
            "features": [{"featureView": "driver-profile"}],
            "transformations": [
                {"name": "x", "type": "float64", "expression": "SELECT 1 FROM source"}
            ],
        },
    }
    (refused,) = admission.check_object(service)
    assert refused.path == "spec.transformations[0].expression"
    assert str(refused).startswith("spec.transformations[0].expression: is a SELECT")


def test_describe_names_the_first_refusals_and_counts_the_rest() -> None:
    refusals = [admission.Refusal(f"spec.f{i}", "bad") for i in range(5)]
    assert admission.describe(refusals, limit=2) == "spec.f0: bad; spec.f1: bad (and 3 more)"
