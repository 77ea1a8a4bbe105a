"""The spec models: defaults, durations, and the cross-field rules in Python."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pydantic
import pytest

from featurekube.spec import v1alpha1
from featurekube.spec.v1alpha1 import durations

VIEW: dict[str, Any] = {
    "apiVersion": "featurekube.dev/v1alpha1",
    "kind": "FeatureView",
    "metadata": {"name": "driver-trip-stats", "namespace": "rides"},
    "spec": {
        "owner": "eta-team",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://featurekube-demo/raw/trips/"}},
        "aggregations": [
            {"name": "trips_30m", "column": "trip_id", "function": "count", "window": "30m"},
            {
                "name": "fare_sum_7d",
                "column": "fare",
                "function": "sum",
                "window": "7d",
                "type": "float64",
            },
        ],
        "aggregationInterval": "10m",
        "ttl": "1d",
    },
}


def _view(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VIEW)
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("7d", 604800), ("2w", 1209600)],
)
def test_durations(text: str, expected: int) -> None:
    assert durations.parse_duration(text) == dt.timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["0m", "1h30m", "1.5h", "-1d", "10", "d", "1y", " 1d"])
def test_malformed_durations_are_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="positive whole number and one unit"):
        durations.parse_duration(text)


def test_a_valid_view_gets_its_defaults() -> None:
    view = v1alpha1.FeatureView.model_validate(VIEW)

    assert view.spec.materialization.online and view.spec.materialization.offline
    assert view.spec.materialization.schedule == "@hourly"
    assert view.spec.deletion_policy == "Retain"
    assert view.spec.source.batch is not None and view.spec.source.batch.format == "parquet"
    assert view.spec.feature_types() == {"trips_30m": "int64", "fare_sum_7d": "float64"}
    assert view.to_yaml_dict()["spec"]["aggregationInterval"] == "10m"


def _rule_error(doc: dict[str, Any], model: Any = v1alpha1.FeatureView) -> dict[str, Any]:
    with pytest.raises(pydantic.ValidationError) as raised:
        model.model_validate(doc)
    (error,) = raised.value.errors()
    return dict(error)


@pytest.mark.parametrize(
    ("changes", "words", "field_path"),
    [
        ({"aggregationInterval": "7m"}, "whole multiple", ".aggregations"),
        ({"aggregationInterval": None}, "need spec.aggregationInterval", ".aggregationInterval"),
        ({"ttl": "5m"}, "at least spec.aggregationInterval", ".ttl"),
        ({"features": [{"name": "x", "type": "int64"}]}, "exactly one of spec.features", ""),
        (
            {
                "aggregations": [
                    {"name": "driver_id", "column": "t", "function": "count", "window": "1d"}
                ]
            },
            "named like one of the view's entity keys",
            "",
        ),
        (
            {"expectations": [{"feature": "nope", "notNull": True}]},
            "name a feature of this view",
            ".expectations",
        ),
    ],
)
def test_view_rules(changes: dict[str, Any], words: str, field_path: str) -> None:
    error = _rule_error(_view(**changes))

    assert error["type"] == "featurekube_rule"
    assert words in error["msg"]
    assert error["ctx"]["field_path"] == field_path
    assert error["loc"] == ("spec",)


def test_a_sum_needs_its_type_and_a_count_is_int64() -> None:
    untyped = _view(
        aggregations=[{"name": "s", "column": "fare", "function": "sum", "window": "1d"}]
    )
    mistyped = _view(
        aggregations=[
            {"name": "c", "column": "t", "function": "count", "window": "1d", "type": "string"}
        ]
    )

    assert "set type for a sum" in _rule_error(untyped)["msg"]
    assert "count or count_distinct aggregation is int64" in _rule_error(mistyped)["msg"]


def test_duplicate_names_in_a_list_map_are_refused() -> None:
    twice = {"name": "trips_30m", "column": "t", "function": "count", "window": "30m"}
    error = _rule_error(_view(aggregations=[twice, twice]))

    assert error["type"] == "featurekube_duplicate"
    assert "trips_30m" in error["msg"]
    assert error["ctx"]["field_path"] == ".aggregations"


def test_a_source_is_batch_or_push() -> None:
    both = _view(source={"batch": {"path": "s3://featurekube-demo/x/"}, "push": {}})

    assert "exactly one of source.batch" in _rule_error(both)["msg"]


def test_unknown_fields_are_refused() -> None:
    error = _rule_error(_view(ttll="1d"))

    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("spec", "ttll")


def test_view_and_service_names_must_fit_derived_names() -> None:
    long_view = copy.deepcopy(VIEW)
    long_view["metadata"]["name"] = "a" * 41
    service = {
        "apiVersion": "featurekube.dev/v1alpha1",
        "kind": "FeatureService",
        "metadata": {"name": "9-eta"},
        "spec": {"owner": "eta", "features": [{"featureView": "driver-trip-stats"}]},
    }

    digit_view = copy.deepcopy(VIEW)
    digit_view["metadata"]["name"] = "7day-trips"

    assert "at most 40 characters" in _rule_error(long_view)["msg"]
    assert "starting with a letter" in _rule_error(service, v1alpha1.FeatureService)["msg"]
    # Each window's SparkApplication is named after its view; the Spark Operator's
    # webhook refuses a name that does not start with a letter.
    assert "starting with a letter" in _rule_error(digit_view)["msg"]


def test_the_reserved_names_are_every_column_the_stores_use() -> None:
    from featurekube.offline import layout as offline_layout
    from featurekube.online import layout as online_layout
    from featurekube.spec.v1alpha1 import _base

    assert _base.RESERVED_NAMES == offline_layout.RESERVED | online_layout.RESERVED
