"""The pure plan of a view's stream: Kafka options, value schemas, where its state
lives, its progress document and its consumer lag."""

from __future__ import annotations

import datetime as dt
import doctest
from typing import Any

import pytest

from featurekube.materialize import stream_plan
from featurekube.materialize.errors import PlanError
from featurekube.spec import v1alpha1
from support import stream_view

SINCE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _view(**kafka: Any) -> v1alpha1.FeatureView:
    return v1alpha1.FeatureView.model_validate(stream_view(**kafka))


def test_the_doctests_hold() -> None:
    assert doctest.testmod(stream_plan).failed == 0


def test_a_plan_reads_the_topic_from_the_views_brokers_or_the_default() -> None:
    plan = stream_plan.plan_stream(
        _view(maxOffsetsPerTrigger=500, triggerInterval="10s"),
        SINCE,
        bootstrap_servers="default:9092",
        version=3,
    )

    assert plan.kafka_options == {
        "kafka.bootstrap.servers": "default:9092",
        "subscribe": "trips",
        "startingOffsets": "earliest",
        "failOnDataLoss": "true",
        "maxOffsetsPerTrigger": "500",
    }
    assert plan.query_name == "featurekube-rides-driver-trips-v3"
    assert plan.trigger_seconds == 10 and plan.since == SINCE
    assert plan.key_fields == ("driver_id",)
    assert stream_plan.value_ddl(plan.fields) == (
        "`driver_id` bigint, `fare` double, `event_timestamp` timestamp"
    )
    own = stream_plan.plan_stream(
        _view(bootstrapServers="b1:9092,b2:9092"), SINCE, bootstrap_servers="x:1"
    )
    assert own.kafka_options["kafka.bootstrap.servers"] == "b1:9092,b2:9092"


def test_a_plan_without_brokers_or_with_unfit_fields_is_refused_by_name() -> None:
    with pytest.raises(PlanError, match="bootstrapServers is unset and no default brokers"):
        stream_plan.plan_stream(_view(), SINCE)
    unfit = _view(fields=[{"name": "driver_id", "type": "int64"}])
    with pytest.raises(PlanError, match="the event time field event_timestamp is not among"):
        stream_plan.plan_stream(unfit, SINCE, bootstrap_servers="k:9092")


def test_tls_and_sasl_settings_become_the_kafka_sources_options() -> None:
    assert stream_plan.kafka_client_options({}) == {}
    options = stream_plan.kafka_client_options(
        {
            "FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "FEATUREKUBE_KAFKA_TLS_CA_FILE": "/etc/kafka-ca/ca.crt",
        }
    )
    assert options == {
        "kafka.security.protocol": "SSL",
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/etc/kafka-ca/ca.crt",
    }
    plain = stream_plan.kafka_client_options(
        {
            "FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FEATUREKUBE_KAFKA_SASL_MECHANISM": "PLAIN",
            "FEATUREKUBE_KAFKA_SASL_USERNAME": "u",
            "FEATUREKUBE_KAFKA_SASL_PASSWORD": "p",
        }
    )
    assert plain["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
    )
    with pytest.raises(PlanError, match="FEATUREKUBE_KAFKA_SASL_MECHANISM is needed"):
        stream_plan.kafka_client_options({"FEATUREKUBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


def test_the_streams_state_lives_under_the_versions_offline_table() -> None:
    uri = "s3a://lake/offline/rides/driver-trips/v2/"
    assert stream_plan.checkpoint_uri(uri) == (
        "s3a://lake/offline/rides/driver-trips/v2/_stream/checkpoint"
    )
    assert stream_plan.progress_uri(uri) == (
        "s3://lake/offline/rides/driver-trips/v2/_stream/progress.json"
    )
    assert (
        stream_plan.dead_letter_uri(uri) == "s3://lake/offline/rides/driver-trips/v2/_dead_letters"
    )


def test_a_progress_document_round_trips_and_a_bad_one_is_refused() -> None:
    progress = stream_plan.StreamProgress(batch_id=4, rows=10, consumer_lag=3)
    assert stream_plan.read_progress(stream_plan.render_progress(progress)) == progress
    assert stream_plan.read_progress(b'{"rows": 2, "unknown": 1}').rows == 2
    with pytest.raises(ValueError, match="JSON object"):
        stream_plan.read_progress(b"[]")
    with pytest.raises(ValueError, match="at most"):
        stream_plan.read_progress(b" " * (stream_plan.PROGRESS_MAX_BYTES + 1))


def test_consumer_lag_needs_the_latest_offsets() -> None:
    assert stream_plan.consumer_lag(None) is None
    assert stream_plan.consumer_lag({"sources": [{"endOffset": {"t": {"0": 1}}}]}) is None
    text = {"sources": [{"endOffset": '{"t": {"0": 3}}', "latestOffset": '{"t": {"0": 3}}'}]}
    assert stream_plan.consumer_lag(text) == 0
    assert stream_plan.consumer_lag({"sources": [{"latestOffset": {"t": {"0": 8}}}]}) == 8
