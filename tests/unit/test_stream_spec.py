"""Stream sources in the API: the spec model's rules, Avro schemas, and what
``featurekube validate`` says about a stream's fields, naming the field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from featurekube import validation
from featurekube.spec import v1alpha1
from featurekube.validation import streams
from support import STREAM_VIEW, stream_view

AVRO = json.dumps(
    {
        "type": "record",
        "name": "Trip",
        "fields": [
            {"name": "driver_id", "type": "long"},
            {"name": "fare", "type": ["null", "double"]},
            {
                "name": "event_timestamp",
                "type": {"type": "long", "logicalType": "timestamp-micros"},
            },
        ],
    }
)


def _error(body: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as failed:
        v1alpha1.FeatureView.model_validate(body)
    return str(failed.value)


def test_a_json_stream_beside_a_batch_source_is_valid_with_defaults() -> None:
    kafka = v1alpha1.FeatureView.model_validate(STREAM_VIEW).spec.source.stream.kafka  # type: ignore[union-attr]

    assert kafka.format == "json" and kafka.starting_offsets == "earliest"
    assert kafka.bootstrap_servers is None, "unset means the operator's brokers"
    assert kafka.timestamp_field == "event_timestamp" and kafka.trigger_interval == "1s"
    assert [f.name for f in kafka.value_fields()] == ["driver_id", "fare", "event_timestamp"]


def test_an_avro_stream_takes_its_fields_from_its_schema() -> None:
    body = stream_view(format="avro", fields=None, avroSchema=AVRO)

    kafka = v1alpha1.FeatureView.model_validate(body).spec.source.stream.kafka  # type: ignore[union-attr]

    assert [(f.name, f.type) for f in kafka.value_fields()] == [
        ("driver_id", "int64"),
        ("fare", "float64"),
        ("event_timestamp", "timestamp"),
    ]


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        ({"fields": None}, "a json stream declares its events' fields"),
        ({"format": "avro"}, "an avro stream needs avroSchema"),
        (
            {"format": "avro", "fields": None, "avroSchema": "{]"},
            "avroSchema\n  Value error, is not JSON",
        ),
        (
            {
                "format": "avro",
                "fields": None,
                "avroSchema": '{"type": "record", "fields": [{"name": "a", "type": "bytes"}]}',
            },
            "field 'a': type \"bytes\" is not one featurekube reads",
        ),
        (
            {
                "format": "avro",
                "fields": None,
                "avroSchema": '{"type": "record", "fields": '
                '[{"name": "a", "type": ["null", "long", "string"]}]}',
            },
            "a union may only make one type nullable",
        ),
        ({"topic": "bad topic"}, "topic\n  String should match pattern"),
        ({"topic": "t" * 250}, "at most 249 characters"),
        ({"bootstrapServers": "kafka:9092,"}, "bootstrapServers\n  String should match pattern"),
        (
            {"startingOffsets": "middle"},
            "startingOffsets\n  Input should be 'earliest' or 'latest'",
        ),
        ({"maxOffsetsPerTrigger": 0}, "greater than or equal to 1"),
        ({"triggerInterval": "1h30m"}, "triggerInterval\n  String should match pattern"),
        ({"timestampField": "at"}, "timestampField must be source.batch.timestampField"),
        ({"schemaRegistry": "x"}, "schemaRegistry\n  Extra inputs are not permitted"),
    ],
)
def test_a_bad_stream_source_is_refused_naming_its_field(
    kafka: dict[str, Any], expected: str
) -> None:
    assert expected in _error(stream_view(**kafka))


def test_a_stream_needs_a_batch_source_for_its_history() -> None:
    body = stream_view()
    del body["spec"]["source"]["batch"]
    body["spec"]["source"]["push"] = {}

    assert "a stream source needs source.batch beside it" in _error(body)


def _aggregating(*aggregations: dict[str, Any], **kafka: Any) -> dict[str, Any]:
    body = stream_view(**kafka)
    del body["spec"]["features"]
    body["spec"]["aggregationInterval"] = "10m"
    body["spec"]["aggregations"] = list(aggregations)
    return body


def test_a_stream_takes_aggregations_over_windows_up_to_30_days() -> None:
    body = _aggregating(
        {"name": "trips_30d", "column": "fare", "function": "count", "window": "30d"},
        {"name": "fare_1h", "column": "fare", "function": "sum", "window": "1h", "type": "float64"},
    )
    spec = v1alpha1.FeatureView.model_validate(body).spec
    assert spec.source.stream is not None
    assert spec.source.stream.kafka.allowed_lateness == "10m"
    assert streams.check_stream_fields(spec) == []

    body["spec"]["aggregations"][0]["window"] = "31d"
    assert "a streaming aggregation's window is at most 30d" in _error(body)


def test_the_allowed_lateness_is_bounded() -> None:
    body = _aggregating(
        {"name": "trips_1h", "column": "fare", "function": "count", "window": "1h"},
        allowedLateness="8d",
    )

    assert "allowedLateness is at most 7d" in _error(body)


def test_a_column_the_tiles_cannot_keep_or_a_missing_one_is_named() -> None:
    body = _aggregating(
        {"name": "last_seen", "column": "event_timestamp", "function": "mean", "window": "1h"},
        {"name": "tips", "column": "tip", "function": "count", "window": "1h"},
        {
            "name": "seen",
            "column": "event_timestamp",
            "function": "max",
            "window": "1h",
            "type": "timestamp",
        },
    )

    messages = streams.check_stream_fields(v1alpha1.FeatureView.model_validate(body).spec)

    assert messages == [
        "spec.aggregations[0] (last_seen): a stream cannot keep mean of the timestamp column "
        "event_timestamp in its partial aggregates; use count or count_distinct or min or max "
        "or last, or compute it from source.batch alone",
        "spec.aggregations[1] (tips): the column tip is not among the fields: add it, or "
        "compute it in spec.transformation",
    ]


def test_the_crd_carries_the_same_rules_as_cel() -> None:
    rules = [r.cel for r in v1alpha1.KafkaSource.rules] + [r.cel for r in v1alpha1.Source.rules]

    crd = (Path(__file__).parents[2] / "crds" / "featurekube.dev_featureviews.yaml").read_text()
    for rule in rules:
        assert rule.split(" ")[0].strip("!(") in crd


def test_fields_that_miss_the_keys_features_or_event_time_are_named() -> None:
    body = stream_view(
        fields=[
            {"name": "driver_id", "type": "string"},
            {"name": "event_timestamp", "type": "string"},
        ]
    )

    messages = streams.check_stream_fields(v1alpha1.FeatureView.model_validate(body).spec)

    assert messages == [
        "the event time field event_timestamp is string: declare it timestamp",
        "field driver_id is string, but the join key driver_id is int64: declare it int64",
        "the feature fare is not among the fields: add it, or compute it in spec.transformation",
    ]


def test_an_int_field_feeds_a_float_feature_and_a_transformation_frees_the_keys() -> None:
    body = stream_view(
        fields=[
            {"name": "driver_id", "type": "int64"},
            {"name": "fare", "type": "int64"},
            {"name": "event_timestamp", "type": "timestamp"},
        ]
    )
    assert streams.check_stream_fields(v1alpha1.FeatureView.model_validate(body).spec) == []

    body["spec"]["transformation"] = {"sql": "SELECT 1 AS driver_id, * FROM source"}
    body["spec"]["source"]["stream"]["kafka"]["fields"] = [
        {"name": "rider", "type": "string"},
        {"name": "event_timestamp", "type": "timestamp"},
    ]
    assert streams.check_stream_fields(v1alpha1.FeatureView.model_validate(body).spec) == []


def test_validate_reports_a_streams_fields_at_their_line(tmp_path: Path) -> None:
    view = textwrap.dedent(
        """\
        apiVersion: featurekube.dev/v1alpha1
        kind: FeatureView
        metadata:
          name: driver-trips
          namespace: rides
        spec:
          owner: eta-team
          entities:
            - name: driver_id
              type: int64
          source:
            batch:
              path: s3://lake/raw/trips/
            stream:
              kafka:
                topic: trips
                fields:
                  - name: driver_id
                    type: int64
          features:
            - name: fare
              type: float64
        """
    )
    (tmp_path / "view.yaml").write_text(view)

    problems = [str(p) for p in validation.validate_path(tmp_path).problems]

    path = tmp_path / "view.yaml"
    assert problems == [
        f"{path}:17: FeatureView/driver-trips: spec.source.stream.kafka.fields: the event time "
        "field event_timestamp is not among the fields: add it, typed timestamp",
        f"{path}:17: FeatureView/driver-trips: spec.source.stream.kafka.fields: the feature "
        "fare is not among the fields: add it, or compute it in spec.transformation",
    ]
