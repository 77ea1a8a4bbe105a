"""What `featurekube materialize` refuses before Spark starts, and how it says so."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from featurekube import errors
from featurekube.materialize import plan, preflight
from featurekube.spec import v1alpha1

UTC = dt.UTC


def _window(transformation: str | None = None) -> plan.MaterializationPlan:
    spec: dict[str, object] = {
        "owner": "t",
        "entities": [{"name": "driver_id", "type": "int64"}],
        "source": {"batch": {"path": "s3://raw/trips/", "timestampField": "event_timestamp"}},
        "features": [{"name": "rating", "type": "float64"}],
    }
    if transformation:
        spec["transformation"] = {"sql": transformation}
    view = v1alpha1.FeatureView.model_validate(
        {
            "apiVersion": "featurekube.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "driver-profile", "namespace": "rides"},
            "spec": spec,
        }
    )
    return plan.plan_materialization(
        view, dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC)
    )


GOOD = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("rating", pa.float32()),
    ]
)


def _facts(schema: pa.Schema | None = GOOD, **changes: object) -> preflight.SourceFacts:
    values: dict[str, object] = {
        "bucket_exists": True,
        "files": ("raw/trips/part-0.parquet",),
        "sample": "s3://raw/trips/part-0.parquet",
        "schema": schema,
    }
    values.update(changes)
    return preflight.SourceFacts(**values)  # type: ignore[arg-type]


def test_a_source_that_fits_passes() -> None:
    preflight.check_source(_window(), _facts())


def test_a_missing_source_bucket_is_named_with_the_next_step() -> None:
    with pytest.raises(errors.SourceError) as raised:
        preflight.check_source(_window(), _facts(bucket_exists=False))

    assert str(raised.value) == (
        "FeatureView rides/driver-profile: spec.source.batch.path s3://raw/trips/: bucket raw "
        "does not exist, or these credentials may not read it: check the path, and "
        "AWS_ENDPOINT_URL and the credentials of this shell "
        '(`eval "$(featurekube dev env)"` for the local platform)'
    )


def test_an_empty_source_says_what_it_looked_for() -> None:
    with pytest.raises(errors.SourceError, match=r"holds no parquet files: check spec\.source"):
        preflight.check_source(_window(), _facts(files=()))


def test_nanosecond_timestamps_are_refused_with_the_fix() -> None:
    schema = GOOD.set(1, pa.field("event_timestamp", pa.timestamp("ns")))

    with pytest.raises(errors.SourceSchemaError) as raised:
        preflight.check_source(_window(), _facts(schema))

    message = str(raised.value)
    assert "\n" not in message
    assert "column event_timestamp of s3://raw/trips/part-0.parquet holds timestamps in " in (
        message
    )
    assert "coerce_timestamps='us'" in message


def test_nanoseconds_are_refused_even_under_a_transformation() -> None:
    schema = GOOD.append(pa.field("dropoff_at", pa.timestamp("ns", tz="UTC")))

    with pytest.raises(errors.SourceSchemaError, match="column dropoff_at"):
        preflight.check_source(_window("SELECT * FROM source"), _facts(schema))


def test_missing_and_mistyped_columns_are_one_line_then_each_in_the_detail() -> None:
    schema = pa.schema([("driver_id", pa.string()), ("event_timestamp", pa.timestamp("us"))])

    with pytest.raises(errors.SourceSchemaError) as raised:
        preflight.check_source(_window(), _facts(schema))

    assert raised.value.summary.endswith(
        "does not fit the spec: driver_id (join key) is string, not convertible to int64 "
        "(and 1 more): fix the source data or the spec's field names and types"
    )
    assert raised.value.problems == (
        "driver_id (join key) is string, not convertible to int64",
        "rating (feature rating) is missing",
    )


def test_a_transformed_source_is_not_judged_by_the_spec_s_columns() -> None:
    schema = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us"))])

    preflight.check_source(_window("SELECT id AS driver_id FROM source"), _facts(schema))


def test_an_unreadable_sample_names_the_file_and_the_format_field() -> None:
    with pytest.raises(errors.SourceError, match=r"could not be read as parquet .* check spec"):
        preflight.check_source(_window(), _facts(None, read_error="Parquet magic bytes not found"))


def test_a_missing_offline_bucket_is_refused_with_three_ways_out() -> None:
    facts = preflight.StoreFacts("s3://featurekube/offline/rides/v/v1", False, "t", True)

    with pytest.raises(errors.StoreNotFoundError) as raised:
        preflight.check_stores("FeatureView rides/v", facts)

    assert str(raised.value) == (
        "FeatureView rides/v: offline store s3://featurekube/offline/rides/v/v1: bucket "
        "featurekube does not exist: pass --create-bucket to create it, --offline-uri with a "
        "bucket that exists, or --no-offline"
    )


def test_an_online_store_that_does_not_answer_keeps_its_cause_in_the_detail() -> None:
    facts = preflight.StoreFacts(None, True, "featurekube.rides.v.v1", False, "EndpointError: x")

    with pytest.raises(errors.StoreUnavailableError) as raised:
        preflight.check_stores("FeatureView rides/v", facts)

    assert raised.value.summary.startswith("FeatureView rides/v: online store (DynamoDB")
    assert raised.value.detail == "EndpointError: x"
